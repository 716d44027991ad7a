"""shared.sse: Azure's event stream forwarded byte for byte, or cut short with one ``error`` event.

``SseForwarder`` passes a well-formed stream through byte for byte however it
is split, and for arbitrary bytes forwards only whole, checked events (a prefix
of the input) or raises ``MalformedStream``; ``forward_events`` turns that, or
an upstream that fails half-way, into one closing ``error`` event and never raises.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from hypothesis import example, given
from hypothesis import strategies as st

from shared.errors import RelayError
from shared.sse import MalformedStream, SseForwarder, error_event, forward_events
from tests.support.strategies import FAST, any_stream, split, sse_noise, upstream_endings, well_formed_events


@FAST
@given(stream=well_formed_events, cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_a_well_formed_stream_passes_byte_for_byte_however_it_is_split(stream: bytes, cuts: list[int]) -> None:
    forwarder = SseForwarder()
    out = b"".join(forwarder.feed(piece) for piece in split(stream, cuts))
    forwarder.finish()
    assert out == stream


@FAST
@given(stream=well_formed_events, cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_a_usage_chunk_the_caller_did_not_ask_for_is_logged_but_not_forwarded(stream: bytes, cuts: list[int]) -> None:
    forwarder = SseForwarder(hide_usage=True)
    out = b"".join(forwarder.feed(piece) for piece in split(stream, cuts))
    forwarder.finish()
    events = [event + b"\n\n" for event in stream.split(b"\n\n")[:-1]]
    chunks = [(event, json.loads(event[6:])) for event in events if event.startswith(b"data: {")]
    usage_only = [(event, chunk) for event, chunk in chunks if chunk.get("choices") == [] and "usage" in chunk]
    assert out == b"".join(event for event in events if event not in {e for e, _ in usage_only})
    assert forwarder.usage == (usage_only[-1][1]["usage"] if usage_only else None)


@FAST
@given(stream=sse_noise, cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_arbitrary_bytes_give_whole_checked_events_or_malformed_stream(stream: bytes, cuts: list[int]) -> None:
    forwarder = SseForwarder()
    out = b""
    try:
        for piece in split(stream, cuts):
            out += forwarder.feed(piece)
        forwarder.finish()
    except MalformedStream:
        pass
    assert stream.startswith(out)
    assert out == b"" or out.endswith(b"\n\n")
    for event in out.split(b"\n\n")[:-1]:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                assert payload == b"[DONE]" or (payload.startswith(b"{") and payload.endswith(b"}"))


async def upstream_bytes(pieces: list[bytes], error: BaseException | None) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
    if error is not None:
        raise error


@FAST
@given(
    stream=any_stream,
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    error=upstream_endings,
)
@example(stream=b"data:[DONE]\n\n", cuts=[], error=None)
@example(stream=b"data: [DONE]\n\n\t", cuts=[], error=None)
@example(stream=b"data: [DONE]\n\nevent: x\n", cuts=[], error=None)
def test_forward_events_never_raises_and_ends_with_done_or_one_error_event(stream: bytes, cuts: list[int], error: BaseException | None) -> None:
    forwarder = SseForwarder()

    async def run() -> bytes:
        return b"".join([piece async for piece in forward_events(upstream_bytes(split(stream, cuts), error), forwarder)])

    out = asyncio.run(run())
    if forwarder.error is None:
        # Ended by [DONE] (with or without the space after "data:"): every byte up to it, and after it only blank space.
        assert error is None and forwarder.done
        assert stream.startswith(out) and not stream[len(out) :].strip()
        return
    head, sep, last = out.rpartition(b"event: error\n")
    assert sep, out[-200:]
    assert stream.startswith(head)
    assert json.loads(last.removeprefix(b"data: "))["error"]["code"] in {"upstream_error", "upstream_timeout"}
    assert forwarder.error is not None and forwarder.error.status in {502, 504}


def test_the_error_event_carries_the_openai_error_object() -> None:
    error = RelayError(504, "upstream_timeout", "Azure OpenAI stopped sending in time.", error_type="api_error")
    event = error_event(error)
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    assert json.loads(event.split(b"data: ", 1)[1]) == {
        "error": {"message": "Azure OpenAI stopped sending in time.", "type": "api_error", "param": None, "code": "upstream_timeout"}
    }


def test_cached_tokens_are_zeroed_in_the_usage_chunk_unless_exposed() -> None:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":1024}}}\n\n'
    stream = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' + usage + b"data: [DONE]\n\n"
    hidden = SseForwarder(hide_cached_tokens=True)
    assert hidden.feed(stream) == stream.replace(b'"cached_tokens":1024', b'"cached_tokens":0')
    assert SseForwarder().feed(stream) == stream
