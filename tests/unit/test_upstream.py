"""The upstream client against a raw socket server that answers exactly as each test scripts it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from shared.config import load_settings
from shared.errors import RelayError
from shared.logs import UpstreamNotes
from shared.upstream import Upstream
from tests.support.app_settings import REQUIRED_SETTINGS

EVENTS = [b'data: {"choices":[{"delta":{"content":"Once"}}]}\n\n', b'data: {"choices":[{"delta":{"content":" upon"}}]}\n\n']
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


class NoAuth:
    rejection_hint = "check the test's credentials"

    async def headers(self) -> dict[str, str]:
        return {}

    async def after_rejection(self, sent: Mapping[str, str]) -> dict[str, str] | None:
        return None

    async def aclose(self) -> None:
        pass


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _answer(status_line: bytes, body: bytes) -> Script:
    """A script that answers with ``status_line`` and a JSON ``body``."""

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status_line, len(body), body))
        await writer.drain()

    return answer


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    """Start a server that reads one request and runs the test's script; return an Upstream pointed at it."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []
    clients: list[Upstream] = []

    async def start(script: Script, **settings: str) -> Upstream:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await reader.readuntil(b"\r\n\r\n")
            await script(writer)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        env = {**REQUIRED_SETTINGS, "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", **settings}
        client = Upstream(load_settings(env), NoAuth())
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.aclose()
    for writer in writers:  # scripts that stream forever end with their connection
        writer.transport.abort()
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_events_that_arrived_with_the_broken_connection_are_forwarded_before_the_error(
    serve: Callable[[Script], Awaitable[Upstream]],
) -> None:
    async def break_after_events(writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        # The events and the end of the connection leave in one write, so they arrive together.
        writer.write(head + b"".join(_chunked(event) for event in EVENTS))
        writer.transport.abort()

    upstream = await serve(break_after_events)
    response = await upstream.open(json.dumps({**BODY, "stream": True}).encode(), "gpt-4o-mini", "req-1")
    await asyncio.sleep(0.2)  # a slow caller: the events and the break are both in before the relay reads
    received = b""
    with pytest.raises(RelayError) as caught:
        async for data in response.iter_bytes():
            received += data
    assert received == b"".join(EVENTS)
    assert (caught.value.status, caught.value.code) == (502, "upstream_error")


async def test_a_rejected_request_passes_on_azures_reason_without_hosts_urls_or_tokens(
    serve: Callable[[Script], Awaitable[Upstream]],
) -> None:
    message = (
        "Invalid 'messages[0]': see https://contoso-aoai.openai.azure.com/openai/v1/chat/completions?x=1 "
        "(resource contoso-aoai.openai.azure.com, vault kv-relay.vault.azure.net, "
        "token eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJjb2cifQ.c2lnbmF0dXJl)"
    )
    body = json.dumps({"error": {"code": "invalid_value", "message": message, "param": "messages"}}).encode()
    upstream = await serve(_answer(b"400 Bad Request", body))
    with pytest.raises(RelayError) as caught:
        await upstream.open(json.dumps(BODY).encode(), "gpt-4o-mini", "req-2")
    error = caught.value
    assert (error.status, error.code, error.param) == (400, "invalid_request", "messages")
    assert error.message == ("Invalid 'messages[0]': see <redacted> (resource <redacted>, vault <redacted>, token <redacted>)")


async def test_refused_credentials_are_a_502_for_the_caller_and_a_hint_for_the_operator(
    serve: Callable[[Script], Awaitable[Upstream]], caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"error":{"code":"PermissionDenied","message":"Principal does not have access to API/Operation."}}'
    upstream = await serve(_answer(b"403 Forbidden", body))
    with caplog.at_level(logging.ERROR, logger="relay"), pytest.raises(RelayError) as caught:
        await upstream.open(json.dumps(BODY).encode(), "gpt-4o-mini", "req-3")
    assert (caught.value.status, caught.value.code) == (502, "upstream_error")
    assert "Principal" not in caught.value.message
    [line] = [json.loads(r.getMessage()) for r in caplog.records if "relay.upstream_auth_rejected" in r.getMessage()]
    del line["time"]
    assert line == {"event": "relay.upstream_auth_rejected", "status": 403, "request_id": "req-3", "detail": NoAuth.rejection_hint}


async def test_a_saturated_instance_answers_503_with_retry_after_instead_of_queueing(
    serve: Callable[..., Awaitable[Upstream]],
) -> None:
    async def stream_forever(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(EVENTS[0]))
        await writer.drain()
        await asyncio.Event().wait()

    upstream = await serve(stream_forever, RELAY_UPSTREAM_CONNECTIONS="1", RELAY_BUSY_TIMEOUT_S="0.2")
    payload = json.dumps({**BODY, "stream": True}).encode()
    first = await upstream.open(payload, "gpt-4o-mini", "req-4")
    started = time.monotonic()
    with pytest.raises(RelayError) as caught:
        await upstream.open(payload, "gpt-4o-mini", "req-5")
    assert 0.2 <= time.monotonic() - started < 5
    assert (caught.value.status, caught.value.code, caught.value.headers) == (503, "server_busy", {"Retry-After": "1"})
    first.close()  # the slot comes back with the answer
    (await upstream.open(payload, "gpt-4o-mini", "req-6")).close()


async def test_the_notes_keep_the_retries_azures_ids_of_the_answer_and_the_traceparent_was_sent(
    serve: Callable[[Script], Awaitable[Upstream]],
) -> None:
    heads: list[bytes] = []
    answers = [
        b"HTTP/1.1 503 Service Unavailable\r\napim-request-id: apim-1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\napim-request-id: apim-2\r\nx-request-id: x-2\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    ]

    async def answer_in_turn(writer: asyncio.StreamWriter) -> None:
        writer.write(answers[len(heads) - 1])
        await writer.drain()
        if len(heads) == 1:
            writer.close()

    upstream = await serve(answer_in_turn)
    original = upstream._session.request

    async def recording_request(method: str, url: str, **kwargs: Any) -> Any:
        heads.append(json.dumps(kwargs["headers"]).encode())
        return await original(method, url, **kwargs)

    upstream._session.request = recording_request  # type: ignore[method-assign]
    traceparent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    notes = UpstreamNotes(traceparent=traceparent)
    response = await upstream.open(json.dumps(BODY).encode(), "gpt-4o-mini", "req-9", notes)
    assert await response.read() == b"{}"
    response.close()
    assert (notes.retries, notes.status, notes.azure_request_id, notes.azure_x_request_id) == (1, 200, "apim-2", "x-2")
    assert all(json.loads(head)["traceparent"] == traceparent for head in heads) and len(heads) == 2
