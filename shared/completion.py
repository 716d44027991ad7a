"""What the relay reads of Azure OpenAI's non-streamed answers, and what it hides in any answer.

An answer is forwarded as the bytes Azure sent. The relay checks that it is a
chat completion and takes its ``usage`` for the log line. A small answer is
parsed whole; a large one (long outputs with ``logprobs`` reach tens of MiB)
is checked by its shape and only its trailing ``usage`` object is parsed, so
its size never turns into an object tree in memory or a stall of the event loop.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Answers up to this size are parsed whole (a few milliseconds at most).
MAX_PARSED_ANSWER_BYTES = 256 * 1024
# A key can only appear unescaped outside strings: inside a JSON string its quotes are escaped.
_USAGE_KEY = b'"usage":'
_CHOICES_KEY = re.compile(rb'"choices"\s*:\s*\[')
_CACHED_TOKENS = re.compile(rb'"cached_tokens"\s*:\s*\d+')
# Azure names the model near the start of a completion; only that head is searched.
_MODEL = re.compile(rb'"model"\s*:\s*"([A-Za-z0-9._:-]{1,100})"')
_MODEL_HEAD_BYTES = 4096


class NotACompletion(ValueError):
    """Azure OpenAI's answer is not a chat completion."""


def completion_usage(content: bytes) -> dict[str, Any] | None:
    """The answer's ``usage`` (None when it has none); raises :class:`NotACompletion` for anything else."""
    if len(content) <= MAX_PARSED_ANSWER_BYTES:
        try:
            answer = json.loads(content)
        except ValueError:
            raise NotACompletion("not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise NotACompletion("no choices")
        usage = answer.get("usage")
        return usage if isinstance(usage, dict) else None
    body = content.strip()
    if not (body.startswith(b"{") and body.endswith(b"}")) or _CHOICES_KEY.search(body) is None:
        raise NotACompletion("not a chat completion object")
    return _trailing_usage(body)


def answer_model(content: bytes) -> str | None:
    """The ``model`` a completion names (for the request's record), when it does so near its start."""
    match = _MODEL.search(content, 0, _MODEL_HEAD_BYTES)
    return match.group(1).decode() if match else None


def hide_cached_tokens(data: bytes) -> bytes:
    """``cached_tokens`` set to 0: whether a prompt prefix was cached tells a caller what other users sent."""
    if b'"cached_tokens"' not in data:
        return data
    return _CACHED_TOKENS.sub(b'"cached_tokens":0', data)


def _trailing_usage(body: bytes) -> dict[str, Any] | None:
    at = body.rfind(_USAGE_KEY)
    if at < 0:
        return None
    try:
        usage, _ = json.JSONDecoder().raw_decode(body[at + len(_USAGE_KEY) :].decode().lstrip())
    except ValueError:
        return None
    return usage if isinstance(usage, dict) else None
