"""Deterministic answers: the same request always gives the same pieces, streamed or not.

A text answer is a fixed lead naming the deployment followed by the words of a source
text (the last user message with directives removed, or the results of the tools just
called), repeated until the wanted length; it streams one word per piece. A JSON
answer (structured outputs, tool-call arguments) streams in pieces cut at the edges of
words and punctuation, like ``{"`` ``city`` ``":"`` ``New`` `` York`` ``"}``. Usage
counts pieces as tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devhost.emulator.directives import strip_directives

DEFAULT_WORDS = 20
_WORD = re.compile(r"[\w'-]+")
_JSON_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")


def content_text(content: Any) -> str:
    """Text of a message's ``content``: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


@dataclass(frozen=True)
class ToolResult:
    name: str
    content: str


def tool_results(messages: Sequence[Mapping[str, Any]]) -> list[ToolResult]:
    """The tool results the conversation ends with, named after the calls they answer (empty: it ends otherwise)."""
    start = len(messages)
    while start > 0 and messages[start - 1].get("role") == "tool":
        start -= 1
    if start in (0, len(messages)):
        return []
    calls = messages[start - 1].get("tool_calls") or []
    names = {
        call.get("id"): call["function"].get("name") for call in calls if isinstance(call, dict) and isinstance(call.get("function"), dict)
    }
    return [ToolResult(str(names.get(m.get("tool_call_id"))), content_text(m.get("content"))) for m in messages[start:]]


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(_WORD.findall(content_text(m.get("content")))) for m in messages)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    pieces: tuple[str, ...]

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class Answer:
    pieces: tuple[str, ...]
    finish_reason: str
    prompt_tokens: int
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def text(self) -> str:
        """The content: the concatenation of :attr:`pieces`."""
        return "".join(self.pieces)

    def usage(self) -> dict[str, int]:
        completion = len(self.pieces) + sum(len(call.pieces) for call in self.tool_calls)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def text_pieces(lead: Sequence[str], source: str, wanted: int | None) -> list[str]:
    """``lead`` then the words of ``source`` (or "hello") repeated, ``wanted`` words in all (default 20)."""
    words = list(lead)
    count = wanted or DEFAULT_WORDS
    source_words = _WORD.findall(source) or ["hello"]
    while len(words) < count:
        words.extend(source_words)
    return [word if i == 0 else f" {word}" for i, word in enumerate(words[:count])]


def plan_answer(deployment: str, messages: Sequence[Mapping[str, Any]], wanted: int | None, cap: int | None) -> Answer:
    """The text answer to the tool results the conversation ends with, or else to the last user message."""
    results = tool_results(messages)
    if results:
        names = ",".join(dict.fromkeys(result.name for result in results))
        lead = ["Emulated", deployment, "answer", "from", f"{names}:"]
        source = " ".join(result.content for result in results)
    else:
        lead = ["Emulated", deployment, "answer", "to:"]
        source = strip_directives(last_user_text(messages))
    return content_answer(text_pieces(lead, source, wanted), cap, prompt_tokens(messages))


def json_pieces(value: Any) -> list[str]:
    """``value`` as compact JSON, cut at the edges of words and punctuation."""
    return _JSON_PIECE.findall(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def content_answer(pieces: Sequence[str], cap: int | None, prompt: int) -> Answer:
    """An answer with content; ``cap`` (max tokens) below its length cuts it with ``finish_reason: length``."""
    if cap is not None and cap < len(pieces):
        return Answer(tuple(pieces[:cap]), "length", prompt)
    return Answer(tuple(pieces), "stop", prompt)


def tool_call_answer(calls: Sequence[ToolCall], cap: int | None, prompt: int) -> Answer:
    """An answer that calls tools; ``cap`` below the argument pieces cuts the arguments with ``finish_reason: length``."""
    if cap is None or cap >= sum(len(call.pieces) for call in calls):
        return Answer((), "tool_calls", prompt, tuple(calls))
    kept: list[ToolCall] = []
    budget = cap
    for call in calls:
        kept.append(ToolCall(call.id, call.name, call.pieces[:budget]))
        budget -= min(budget, len(call.pieces))
        if budget == 0:
            break
    return Answer((), "length", prompt, tuple(kept))
