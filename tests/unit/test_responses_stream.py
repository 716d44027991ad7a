"""shared.responses_stream: named events forwarded whole with their ids sealed, usage from the terminal event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from shared.errors import RelayError, upstream_error, user_blocked
from shared.responses_ids import IdSeal, Owner
from shared.responses_stream import ResponsesForwarder
from shared.responses_usage import ContextSizes
from shared.sse import MalformedStream, forward_events

SEAL = IdSeal(b"q" * 32)
OWNER = Owner("a11ce000-0000-4000-8000-000000000001", "7e5a0000-0000-4000-8000-000000000001")
USAGE = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10, "input_tokens_details": {"cached_tokens": 4}}


def event(kind: str, **data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data}, separators=(',', ':'))}\n\n".encode()


STREAM = [
    event("response.created", response={"id": "resp_1", "status": "in_progress", "usage": None}, sequence_number=0),
    event("response.output_text.delta", item_id="msg_1", output_index=0, delta="Hel", sequence_number=1),
    event("response.output_text.delta", item_id="msg_1", output_index=0, delta="lo", sequence_number=2),
    event("response.completed", response={"id": "resp_1", "status": "completed", "usage": USAGE}, sequence_number=3),
]


def forwarder(sizes: ContextSizes | None = None) -> ResponsesForwarder:
    return ResponsesForwarder(SEAL.for_owner(OWNER), sizes or ContextSizes(), hide_cached_tokens=True)


def test_every_event_reaches_the_caller_with_its_ids_sealed_and_the_usage_is_kept() -> None:
    sizes = ContextSizes()
    forward = forwarder(sizes)
    raw = b"".join(STREAM)
    out = forward.feed(raw[:50]) + forward.feed(raw[50:])
    forward.finish()
    events = [json.loads(chunk.split(b"data: ", 1)[1]) for chunk in out.split(b"\n\n") if chunk]
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ]
    assert SEAL.unseal(OWNER, events[0]["response"]["id"]) == "resp_1"
    assert SEAL.unseal(OWNER, events[1]["item_id"]) == "msg_1"
    assert "".join(e["delta"] for e in events[1:3]) == "Hello"
    assert events[3]["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 0
    assert forward.usage == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert sizes.get("resp_1") == 10


def test_a_stream_that_ends_before_its_terminal_event_is_malformed() -> None:
    forward = forwarder()
    forward.feed(b"".join(STREAM[:3]))
    with pytest.raises(MalformedStream):
        forward.finish()


@pytest.mark.parametrize(
    "bad",
    [b"event: response.created\ndata: not json\n\n", b"garbage\n\n", STREAM[3] + STREAM[1], b'event: response.completed\ndata: {"x"}\n\n'],
)
def test_malformed_events_are_refused(bad: bytes) -> None:
    with pytest.raises(MalformedStream):
        forwarder().feed(bad)


def test_an_error_event_ends_the_stream_without_usage() -> None:
    forward = forwarder()
    forward.feed(STREAM[0] + event("error", code="server_error", message="boom"))
    forward.finish()
    assert forward.usage is None


@pytest.mark.parametrize("kind", ["error", "response.failed"])
def test_a_failures_message_never_names_an_id_of_the_services(kind: str) -> None:
    raw_id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    message = f"Response '{raw_id}' could not be continued."
    ending = (
        event(kind, code="server_error", message=message, sequence_number=1)
        if kind == "error"
        else event(kind, response={"id": "resp_1", "status": "failed", "error": {"code": "server_error", "message": message}}, sequence_number=1)
    )
    out = forwarder().feed(STREAM[0] + ending)
    assert raw_id not in out.decode()
    assert b"Response '<id>' could not be continued." in out  # an id the request did not name is never sealed for it
    events = [json.loads(chunk.split(b"data: ", 1)[1]) for chunk in out.split(b"\n\n") if chunk]
    assert SEAL.unseal(OWNER, events[0]["response"]["id"]) == "resp_1"


def test_a_models_text_that_looks_like_an_id_is_forwarded_as_written() -> None:
    """Even in the batch whose failure message is sealed: only a ``message`` member is read as the service's words."""
    text = "msg_0123456789abcdef0123456789abcdef is what you asked for"
    failed = event("response.failed", response={"id": "resp_1", "status": "failed", "error": {"code": "server_error", "message": "x"}})
    out = forwarder().feed(STREAM[0] + event("response.output_text.delta", item_id="msg_1", delta=text, sequence_number=1) + failed)
    assert text.encode() in out


def test_a_failures_message_reads_escapes_before_it_looks_for_ids() -> None:
    """JSON may write the quote before an id as an escape (``\\u0027``, as .NET's encoder does)."""
    raw_id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    data = f'{{"type":"error","code":"server_error","message":"Response \\u0027{raw_id}\\u0027 failed.\\n{raw_id}","sequence_number":1}}'
    out = forwarder().feed(STREAM[0] + b"event: error\ndata: " + data.encode() + b"\n\n")
    assert raw_id not in out.decode()
    sent = json.loads(out.split(b"\n\n")[1].split(b"data: ", 1)[1])
    assert sent["message"] == "Response '<id>' failed.\n<id>"


def test_a_failures_message_names_the_failed_responses_own_id_as_the_caller_got_it() -> None:
    raw_id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    failed = {"id": raw_id, "status": "failed", "error": {"code": "server_error", "message": f"Response {raw_id} failed."}}
    out = forwarder().feed(STREAM[0] + event("response.failed", response=failed, sequence_number=1))
    sent = json.loads(out.split(b"\n\n")[1].split(b"data: ", 1)[1])["response"]
    assert SEAL.unseal(OWNER, sent["id"]) == raw_id
    assert sent["error"]["message"] == f"Response {sent['id']} failed."


async def _upstream(pieces: list[bytes], error: RelayError | None) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece
    if error is not None:
        raise error


@pytest.mark.parametrize(
    ("ending", "error"),
    [([], upstream_error("The stream from Azure OpenAI broke off.")), ([b"event: response.output_text.delta\ndata: {\n\n"], None)],
    ids=["broke-off", "malformed"],
)
def test_a_stream_that_fails_ends_with_the_responses_api_error_event_numbered_after_the_last(ending: list[bytes], error: RelayError | None) -> None:
    forward = forwarder()

    async def run() -> bytes:
        return b"".join([piece async for piece in forward_events(_upstream(STREAM[:3] + ending, error), forward)])

    *events, last = asyncio.run(run()).removesuffix(b"\n\n").split(b"\n\n")
    assert [json.loads(e.split(b"data: ", 1)[1])["sequence_number"] for e in events] == [0, 1, 2]
    name, data = last.split(b"\n", 1)
    sent = json.loads(data.removeprefix(b"data: "))
    assert name == b"event: error" and forward.error is not None
    # OpenAI's ResponseErrorEvent, which the Vercel AI SDK checks every event against ...
    assert {k: sent[k] for k in ("type", "code", "message", "param")} == {
        "type": "error",
        "code": "upstream_error",
        "message": forward.error.message,
        "param": None,
    }
    assert sent["sequence_number"] == 3  # after the last event the caller got, whatever came after it
    # ... and the relay's error object, which the official SDKs raise, as on chat.
    assert sent["error"] == forward.error.body()["error"]


def test_an_error_event_the_relay_writes_into_an_open_stream_is_the_responses_apis() -> None:
    forward = forwarder()
    forward.feed(b"".join(STREAM[:2]))
    sent = json.loads(forward.error_event(user_blocked()).split(b"data: ", 1)[1])
    assert (sent["type"], sent["code"], sent["sequence_number"], sent["error"]["code"]) == ("error", "user_blocked", 2, "user_blocked")
