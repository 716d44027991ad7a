"""Deterministic answers: the same request always gives the same words, streamed or not.

The answer is a fixed sentence naming the deployment followed by the words of
the last user message (directives removed), repeated until the wanted length.
Usage counts words as tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devhost.emulator.directives import strip_directives

DEFAULT_WORDS = 20
_WORD = re.compile(r"[\w'-]+")


def content_text(content: Any) -> str:
    """Text of a message's ``content``: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


@dataclass(frozen=True)
class Answer:
    words: tuple[str, ...]
    finish_reason: str
    prompt_tokens: int

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def pieces(self) -> list[str]:
        """One streamed piece per word; their concatenation is :attr:`text`."""
        return [word if i == 0 else f" {word}" for i, word in enumerate(self.words)]

    def usage(self) -> dict[str, int]:
        completion = len(self.words)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def plan_answer(
    deployment: str,
    messages: Sequence[dict[str, Any]],
    wanted: int | None,
    cap: int | None,
) -> Answer:
    source = _WORD.findall(strip_directives(last_user_text(messages))) or ["hello"]
    words = ["Emulated", deployment, "answer", "to:"]
    count = wanted or DEFAULT_WORDS
    while len(words) < count:
        words.extend(source)
    finish = "stop"
    if cap is not None and cap < count:
        count, finish = cap, "length"
    prompt = sum(len(_WORD.findall(content_text(m.get("content")))) for m in messages)
    return Answer(words=tuple(words[:count]), finish_reason=finish, prompt_tokens=prompt)
