"""On-demand behaviours requested inside the last user message: ``[emulate:NAME]`` or ``[emulate:NAME=VALUE]``.

| directive | effect |
|---|---|
| ``content_filter`` | 400 prompt block, ``hate`` filtered at severity ``high`` |
| ``jailbreak`` | 400 prompt block, Prompt Shields ``jailbreak`` filtered and detected |
| ``output_filter`` | 200, ``finish_reason: content_filter``, ``violence`` filtered in the choice |
| ``rate_limit[=SECONDS]`` | 429 with ``Retry-After`` (default 7) and ``retry-after-ms`` |
| ``status=NNN`` | that status (400-599) with an Azure-shaped error body |
| ``slow=SECONDS`` | wait before sending the response headers |
| ``chunk_delay_ms=N`` | wait between streamed chunks |
| ``think=SECONDS`` | a reasoning model thinking: a stream sends headers and the prompt-filter event, then waits |
| ``words=N`` | answer length in words (default 20) |
| ``prompt_tokens=N`` | bill N prompt tokens whatever the prompt (Azure bills images, tools, non-Latin text higher) |
| ``midstream_fail`` | stream a few chunks, then drop the connection mid-body |
| ``bad_json`` | 200 whose body (or an SSE data line) is not JSON |
| ``disconnect`` | close the connection before sending any response |
| ``tool_call[=NAME,...]`` | call tools (the named functions, in order; without names, as docs/emulators.md says) |

An unknown name or a bad value is a 400, so a typo in a test cannot pass silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devhost.emulator.tool_names import is_function_name

_DIRECTIVE = re.compile(r"\[emulate:([a-z_]+)(?:=([^\]\s]*))?\]")
_FLAGS = frozenset(
    {
        "content_filter",
        "jailbreak",
        "output_filter",
        "midstream_fail",
        "bad_json",
        "disconnect",
    }
)
DEFAULT_RETRY_AFTER_S = 7


class DirectiveError(ValueError):
    """The message asks for an unknown directive or gives a bad value."""


@dataclass(frozen=True)
class Directives:
    content_filter: bool = False
    jailbreak: bool = False
    output_filter: bool = False
    midstream_fail: bool = False
    bad_json: bool = False
    disconnect: bool = False
    rate_limit_s: int | None = None
    status: int | None = None
    slow_s: float = 0.0
    think_s: float = 0.0
    chunk_delay_ms: int = 0
    words: int | None = None
    prompt_tokens: int | None = None
    tool_call: tuple[str, ...] | None = None


def strip_directives(text: str) -> str:
    return _DIRECTIVE.sub(" ", text)


def parse_directives(text: str) -> Directives:
    values: dict[str, object] = {}
    for match in _DIRECTIVE.finditer(text):
        name, raw = match.group(1), match.group(2)
        if name in _FLAGS:
            if raw is not None:
                raise DirectiveError(f"emulator directive {name!r} takes no value")
            values[name] = True
        elif name == "rate_limit":
            values["rate_limit_s"] = DEFAULT_RETRY_AFTER_S if raw is None else _number(name, raw, int, 0, 3600)
        elif name == "status":
            values["status"] = _number(name, raw, int, 400, 599)
        elif name in ("slow", "think"):
            values[f"{name}_s"] = _number(name, raw, float, 0, 600)
        elif name in ("chunk_delay_ms", "words"):
            values[name] = _number(name, raw, int, 0 if name == "chunk_delay_ms" else 1, 100_000)
        elif name == "prompt_tokens":
            values[name] = _number(name, raw, int, 0, 10_000_000)
        elif name == "tool_call":
            values["tool_call"] = _function_names(raw)
        else:
            raise DirectiveError(f"unknown emulator directive {name!r}")
    return Directives(**values)  # type: ignore[arg-type]


def _function_names(raw: str | None) -> tuple[str, ...]:
    names = tuple(raw.split(",")) if raw else ()
    if not all(is_function_name(name) for name in names):
        raise DirectiveError("emulator directive 'tool_call' takes function names separated by commas")
    return names


def _number(name: str, raw: str | None, kind: type[int | float], low: float, high: float) -> int | float:
    try:
        value = kind(raw) if raw is not None else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise DirectiveError(f"emulator directive {name!r} needs a value between {low:g} and {high:g}")
    return value
