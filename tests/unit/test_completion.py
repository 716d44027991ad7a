"""shared.completion: a non-streamed answer is checked and its usage read without parsing a large one whole."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest

from shared.completion import MAX_PARSED_ANSWER_BYTES, NotACompletion, completion_usage, hide_cached_tokens

USAGE = {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46, "prompt_tokens_details": {"cached_tokens": 8}}


def answer(text: str, *, logprobs: int = 0, usage: dict[str, Any] | None = USAGE) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
    if logprobs:
        token = {"token": "usage", "logprob": -0.1, "bytes": [117], "top_logprobs": [{"token": "x", "logprob": -2.0, "bytes": [120]}] * 5}
        choice["logprobs"] = {"content": [token] * logprobs}
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [choice]}
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body).encode()


@pytest.mark.parametrize("logprobs", [0, 50_000], ids=["small", "large"])
def test_usage_is_read_from_small_and_large_answers_alike(logprobs: int) -> None:
    content = answer('He said "usage": 3', logprobs=logprobs)
    assert (len(content) > MAX_PARSED_ANSWER_BYTES) == (logprobs > 0)
    assert completion_usage(content) == USAGE


def test_a_large_answer_is_checked_without_building_its_object_tree() -> None:
    content = answer("x", logprobs=50_000)  # ~10 MB of JSON, ~100 MB as Python objects
    tracemalloc.start()
    try:
        completion_usage(content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(content) // 4


@pytest.mark.parametrize("logprobs", [0, 50_000], ids=["small", "large"])
def test_an_answer_without_usage_has_none(logprobs: int) -> None:
    assert completion_usage(answer("hi", logprobs=logprobs, usage=None)) is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b'{"id": "x"}',
        answer("truncated")[:-10],
        answer("x", logprobs=50_000)[:-10],
        json.dumps({"error": {"code": "x"}, "padding": "x" * (MAX_PARSED_ANSWER_BYTES + 1)}).encode(),
    ],
    ids=["empty", "text", "array", "no-choices", "truncated", "large-truncated", "large-not-a-completion"],
)
def test_anything_but_a_chat_completion_is_refused(content: bytes) -> None:
    with pytest.raises(NotACompletion):
        completion_usage(content)


def test_cached_tokens_are_zeroed_and_nothing_else_changes() -> None:
    content = answer('the text "cached_tokens": 99 stays') + b" "
    hidden = hide_cached_tokens(content)
    assert json.loads(hidden)["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert json.loads(hidden)["choices"] == json.loads(content)["choices"]
    assert hidden == content.replace(b'"cached_tokens": 8', b'"cached_tokens":0')
    assert hide_cached_tokens(b'{"usage": {"prompt_tokens": 1}}') == b'{"usage": {"prompt_tokens": 1}}'
