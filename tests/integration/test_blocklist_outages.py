"""The block list's copy through what a storage outage really looks like, read with the relay's own table client.

Each case drives one instance's :class:`BlocklistCache` over the Tables SDK (``shared.table_store.table_service``,
the relay's retry and time-out settings) against: a real Azurite, then the same Azurite stopped (connection
refused); a server that accepts the connection and never answers; a server that answers 200 with something that
is not a page of rows (a proxy's HTML page, cut-off JSON, JSON of another shape, a row the SDK cannot convert).
A running instance keeps its last good copy and says why in ``blocklist.refresh_failed``; a cold start fails
closed within ``FIRST_READ_WAIT_S`` (or serves unchecked when set to fail open); both recover when storage does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential

from devhost.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, running_azurite
from shared.blocklist_cache import FIRST_READ_WAIT_S, BlocklistCache
from shared.errors import RelayError
from shared.table_store import table_service
from tests.support.azurite import TABLES

OID = "1b2c3d4e-0000-4000-8000-000000000003"
TID = "72f988bf-0000-4000-8000-000000000002"
UNLISTED_IP = "192.0.2.1"
BLOCK_OID = {"PartitionKey": "oid", "RowKey": OID, "Value": OID, "Reason": "exfiltration", "AlertId": "alert-7"}
CREDENTIAL = AzureNamedKeyCredential(ACCOUNT, ACCOUNT_KEY)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(r.getMessage()) for r in caplog.records if r.name == "relay.blocklist") if e["event"] == name]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    state_dir = tmp_path_factory.mktemp("azurite-outages")
    with running_azurite(state_dir, TABLES, log_path=state_dir / "azurite.log") as running:
        with running.tables.table_client("relayblocklist") as client:
            client.upsert_entity(BLOCK_OID)
        yield running


class Trusting:
    """A table client whose reads trust ``ca_file``, as the relay's do through SSL_CERT_FILE (set before it imports aiohttp)."""

    def __init__(self, table: Any, ca_file: str) -> None:
        self._table = table
        self._ca_file = ca_file

    def list_entities(self, **kwargs: Any) -> Any:
        return self._table.list_entities(connection_verify=self._ca_file, **kwargs)


@contextlib.asynccontextmanager
async def table_at(endpoint: str, ca_file: str | None = None) -> AsyncIterator[Any]:
    """The block list table at ``endpoint`` through the relay's table client (shared key: the fake servers speak plain HTTP)."""
    async with table_service(endpoint, CREDENTIAL) as service:
        table = service.get_table_client("relayblocklist")
        yield table if ca_file is None else Trusting(table, ca_file)


@contextlib.asynccontextmanager
async def fake_table_service(answer: bytes | None) -> AsyncIterator[str]:
    """A table service on 127.0.0.1 that answers every request with ``answer`` (raw HTTP), or never answers (None)."""
    connections: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/{ACCOUNT}"
    finally:
        for writer in connections:
            writer.close()
        server.close()


def http_200(body: bytes, content_type: str = "application/json;odata=nometadata;streaming=true;charset=utf-8") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nx-ms-version: 2019-02-02\r\n\r\n"
    return head.encode() + body


GARBAGE = {
    "a proxy's login page": http_200(b"<html><body>Sign in to continue</body></html>", "text/html"),
    "cut-off JSON": http_200(b'{"value":[{"PartitionKey":"oid","RowKey":"x","Va'),
    "JSON of another shape": http_200(b'{"value":[1,2,3]}'),
    "a row the SDK cannot convert": http_200(b'{"value":[{"PartitionKey":"oid","RowKey":"x","Timestamp":"yesterday"}]}'),
}


async def loaded_cache(azurite: Azurite, **kwargs: Any) -> tuple[BlocklistCache, contextlib.AsyncExitStack]:
    stack = contextlib.AsyncExitStack()
    table = await stack.enter_async_context(table_at(azurite.tables.endpoint, azurite.tables.ca_file))
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False, **kwargs)
    stack.push_async_callback(cache.aclose)
    assert await cache.refresh() is True
    return cache, stack


async def test_with_azurite_stopped_a_running_instance_keeps_its_copy_and_a_cold_one_fails_closed_until_it_is_back(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    running, stack = await loaded_cache(azurite)
    async with stack, table_at(azurite.tables.endpoint, azurite.tables.ca_file) as cold_table:
        cold = BlocklistCache(cold_table, refresh_s=0.2, fail_open=False)
        stack.push_async_callback(cold.aclose)
        azurite.stop()
        try:
            with caplog.at_level(logging.INFO, logger="relay.blocklist"):
                assert await running.refresh() is False
                assert (await running.lookup(OID, TID, UNLISTED_IP)) is not None
                started = time.monotonic()
                with pytest.raises(RelayError) as refused:
                    await cold.lookup("99999999-0000-4000-8000-000000000009", TID, UNLISTED_IP)
            assert (refused.value.status, refused.value.code) == (503, "blocklist_unavailable")
            waited = time.monotonic() - started
            print(f"Azurite stopped: a cold start answered 503 after {waited:.2f} s")
            assert waited < FIRST_READ_WAIT_S + 1
            [failed] = events(caplog, "blocklist.refresh_failed")
            assert (failed["error"], failed["kept_entries"]) == ("ServiceRequestError", 1)
            assert "refused" in failed["detail"].lower() or "connect" in failed["detail"].lower(), failed
            assert events(caplog, "blocklist.unavailable")[0]["policy"] == "refusing requests with 503 (fail-closed)"
        finally:
            azurite.start()
        assert await running.refresh() is True
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(RelayError):
                    if await cold.lookup(OID, TID, UNLISTED_IP) is not None:
                        break
                await asyncio.sleep(0.1)


async def test_with_storage_silent_a_cold_start_fails_closed_within_the_wait_and_a_running_instance_within_its_deadline(
    azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    running, stack = await loaded_cache(azurite, read_deadline_s=1.0)
    async with stack, fake_table_service(None) as silent, table_at(silent) as silent_table:
        running._table = silent_table  # the same instance, its storage gone quiet
        cold = BlocklistCache(silent_table, refresh_s=3600, fail_open=False)
        stack.push_async_callback(cold.aclose)
        cold_open = BlocklistCache(silent_table, refresh_s=3600, fail_open=True)
        stack.push_async_callback(cold_open.aclose)
        with caplog.at_level(logging.INFO, logger="relay.blocklist"):
            started = time.monotonic()
            assert await running.refresh() is False
            read_for = time.monotonic() - started
            assert read_for < 3
            assert (await running.lookup(OID, TID, UNLISTED_IP)) is not None
            started = time.monotonic()
            with pytest.raises(RelayError) as refused:
                await cold.lookup(OID, TID, UNLISTED_IP)
            assert refused.value.code == "blocklist_unavailable"
            assert await cold_open.lookup(OID, TID, UNLISTED_IP) is None  # unchecked, as fail-open says
            waited = time.monotonic() - started
            print(f"storage silent: a read gave up after {read_for:.2f} s (deadline 1 s); two cold starts answered after {waited:.2f} s")
            assert waited < 2 * FIRST_READ_WAIT_S + 2
        [failed] = events(caplog, "blocklist.refresh_failed")
        assert (failed["error"], failed["kept_entries"]) == ("TimeoutError", 1)


@pytest.mark.parametrize("answer", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_a_garbage_answer_keeps_the_last_copy_and_is_logged_as_a_failed_read(
    azurite: Azurite, answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    running, stack = await loaded_cache(azurite)
    async with stack, fake_table_service(answer) as garbage, table_at(garbage) as garbage_table:
        running._table = garbage_table
        cold = BlocklistCache(garbage_table, refresh_s=3600, fail_open=False)
        stack.push_async_callback(cold.aclose)
        with caplog.at_level(logging.INFO, logger="relay.blocklist"):
            assert await running.refresh() is False
            assert await running.refresh() is False
            with pytest.raises(RelayError) as refused:
                await cold.lookup("99999999-0000-4000-8000-000000000009", TID, UNLISTED_IP)
        assert refused.value.code == "blocklist_unavailable"
        assert (await running.lookup(OID, TID, UNLISTED_IP)) is not None
        failed = events(caplog, "blocklist.refresh_failed")
        assert [(e["failed_reads"], e["kept_entries"]) for e in failed] == [(1, 1), (2, 1)]
        assert not [r for r in caplog.records if r.name == "relay.blocklist" and r.exc_info], "a failed read is not a crash"
