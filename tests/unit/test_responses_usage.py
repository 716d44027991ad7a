"""shared.responses_usage: a response's usage under chat's names, and what a chain is known to hold."""

from __future__ import annotations

import pytest

from shared.responses_usage import ContextSizes, NotAResponse, chat_usage, response_of


def test_the_responses_usage_is_read_under_chats_names() -> None:
    usage = {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17, "input_tokens_details": {"cached_tokens": 0}}
    assert chat_usage(usage) == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    assert chat_usage(None) is None
    assert chat_usage({"input_tokens": -1, "output_tokens": True}) is None


def test_a_response_object_is_read_and_anything_else_refused() -> None:
    assert response_of(b'{"id":"resp_1","object":"response"}')["id"] == "resp_1"
    for content in (b"<html>", b"[]", b'{"object":"response"}'):
        with pytest.raises(NotAResponse):
            response_of(content)


def test_the_size_of_a_chain_is_remembered_up_to_the_limit_the_oldest_forgotten_first() -> None:
    sizes = ContextSizes(limit=2)
    sizes.remember("resp_1", {"total_tokens": 10})
    sizes.remember("resp_2", {"total_tokens": 20})
    sizes.remember("resp_3", {"total_tokens": 30})
    sizes.remember("resp_4", None)
    assert [sizes.get(name) for name in ("resp_1", "resp_2", "resp_3", "resp_4")] == [None, 20, 30, None]
