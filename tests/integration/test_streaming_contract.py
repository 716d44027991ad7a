"""Streams, callers that hang up and callers the policy refuses, over real sockets, on each runtime (``stack``).

raw socket -> local App Service front end + Easy Auth -> relay (in-process, or through the Functions host
stand-in and the Python worker) -> Azure OpenAI emulator.
"""

from __future__ import annotations

import json
from typing import Any

from tests.reliability.common import assert_healthy, new_id, open_chat_stream, sse_events, wait_for_outcomes, wait_until_upstream_has
from tests.support import rawhttp
from tests.support.chat import user
from tests.support.stack import Stack


def content_of(events: list[tuple[str | None, str]]) -> list[str]:
    texts = []
    for _, data in events:
        if data == "[DONE]":
            continue
        for choice in json.loads(data)["choices"]:
            if (choice.get("delta") or {}).get("content"):
                texts.append(choice["delta"]["content"])
    return texts


def test_each_streamed_chunk_reaches_the_caller_on_its_own(stack: Stack) -> None:
    """Azure sends a word, then is quiet for 400 ms: each word must arrive before the next is sent, whole."""
    sock, reader = open_chat_stream(stack, "count [emulate:words=4] [emulate:chunk_delay_ms=400]", new_id("chunks"))
    with sock:
        status, _ = reader.head()
        pieces = list(reader.body_pieces())
    assert status == 200 and reader.complete
    assert all(piece.endswith(b"\n\n") for piece in pieces), "an SSE event was split across writes"
    per_piece = [content_of(sse_events(piece)) for piece in pieces]
    words = [texts for texts in per_piece if texts]
    assert len(words) >= 4
    assert all(len(texts) == 1 for texts in words), f"words sent 400 ms apart arrived together: {words}"


def test_a_caller_hanging_up_mid_stream_cancels_the_upstream_request(stack: Stack) -> None:
    cancelled_before = stack.stats()["cancelled_streams"]
    request_id = new_id("hangup")
    sock, reader = open_chat_stream(stack, "[emulate:words=400] [emulate:chunk_delay_ms=20] go on", request_id)
    status, _ = reader.head()
    assert status == 200
    next(reader.body_pieces())
    sock.close()
    records = wait_for_outcomes(stack, request_id, timeout=10)
    assert [r["outcome"] for r in records] == ["cancelled"]
    assert stack.stats()["cancelled_streams"] == cancelled_before + 1
    assert_healthy(stack)


def test_a_caller_hanging_up_before_the_response_started_cancels_the_upstream_request(stack: Stack) -> None:
    request_id = new_id("early-hangup")
    sock, _ = open_chat_stream(stack, f"[emulate:slow=2] hello {request_id}", request_id)
    wait_until_upstream_has(stack, request_id)
    sock.close()
    records = wait_for_outcomes(stack, request_id, timeout=10)
    assert [r["outcome"] for r in records] == ["cancelled"]


def test_an_app_only_caller_is_403_and_nothing_reaches_azure(stack: Stack) -> None:
    before = stack.stats()["chat_requests"]
    token = stack.token(app="true")
    response = rawhttp.request(
        stack.port,
        "POST",
        "/api/v1/chat/completions",
        [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")],
        json.dumps({"messages": user("hi")}).encode(),
    )
    error: dict[str, Any] = json.loads(response.body)["error"]
    assert (response.status, error["code"]) == (403, "forbidden")
    assert stack.stats()["chat_requests"] == before
