"""The upstream client against a raw socket server that breaks a stream off on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from shared.config import load_settings
from shared.errors import RelayError
from shared.upstream import Upstream

EVENTS = [b'data: {"choices":[{"delta":{"content":"Once"}}]}\n\n', b'data: {"choices":[{"delta":{"content":" upon"}}]}\n\n']


class NoAuth:
    async def headers(self) -> dict[str, str]:
        return {}

    async def after_rejection(self, sent: Mapping[str, str]) -> dict[str, str] | None:
        return None


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _break_after_events(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    # The events and the end of the connection leave in one write, so they arrive together.
    writer.write(head + b"".join(_chunked(event) for event in EVENTS))
    writer.transport.abort()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = await asyncio.start_server(_break_after_events, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = load_settings(
        {
            "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{port}",
            "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini",
            "APPLICATION_NAME": "contoso-chat-spa",
        }
    )
    client = Upstream(settings, NoAuth())
    yield client
    await client.aclose()
    server.close()
    await server.wait_closed()


async def test_events_that_arrived_with_the_broken_connection_are_forwarded_before_the_error(upstream: Upstream) -> None:
    response = await upstream.open({"model": "gpt-4o-mini", "messages": [], "stream": True}, "req-1")
    await asyncio.sleep(0.2)  # a slow caller: the events and the break are both in before the relay reads
    received = b""
    with pytest.raises(RelayError) as caught:
        async for data in response.iter_bytes():
            received += data
    assert received == b"".join(EVENTS)
    assert (caught.value.status, caught.value.code) == (502, "upstream_error")
