"""shared.blocklist_cache: the first request waits for one read, later ones never touch storage; outages and cold starts."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from shared.blocklist_cache import BlocklistCache
from shared.errors import RelayError
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.tables import RowsTable

UNLISTED_IP = "192.0.2.1"  # in no blocked range
BLOCK_OID = {"PartitionKey": "oid", "RowKey": OID, "Value": OID, "Reason": "exfiltration", "AlertId": "alert-7"}


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay.blocklist"]


async def test_requests_are_checked_against_memory_only_after_the_first_read() -> None:
    table = RowsTable([BLOCK_OID])
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False)
    try:
        found = await cache.lookup(OID, TID, "203.0.113.7")
        assert found is not None and found.alert_id == "alert-7"
        for _ in range(1000):
            await cache.lookup("99999999-0000-4000-8000-000000000009", TID, "203.0.113.7")
        assert table.reads == 1
    finally:
        await cache.aclose()


async def test_a_new_row_is_enforced_after_the_next_refresh() -> None:
    table = RowsTable([])
    cache = BlocklistCache(table, refresh_s=0.05, fail_open=False)
    try:
        assert await cache.lookup(OID, TID, UNLISTED_IP) is None
        table.rows.append(BLOCK_OID)
        async with asyncio.timeout(5):
            while await cache.lookup(OID, TID, UNLISTED_IP) is None:
                await asyncio.sleep(0.01)
    finally:
        await cache.aclose()


async def test_during_an_outage_the_last_good_copy_is_kept_and_the_log_says_so(caplog: pytest.LogCaptureFixture) -> None:
    table = RowsTable([BLOCK_OID])
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False)
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        await cache.refresh()
        table.down = True
        table.rows.clear()  # what storage would say if it answered
        assert await cache.refresh() is False
        assert await cache.refresh() is False
    assert await cache.lookup(OID, TID, UNLISTED_IP) is not None
    failed = [e for e in events(caplog) if e["event"] == "blocklist.refresh_failed"]
    assert [e["failed_reads"] for e in failed] == [1, 2]
    assert failed[0]["kept_entries"] == 1 and failed[0]["error"] == "ServiceRequestError"
    table.down = False
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        assert await cache.refresh() is True
    assert events(caplog)[-1] == {"event": "blocklist.loaded", "entries": 0, "failed_reads_before": 2}
    assert await cache.lookup(OID, TID, UNLISTED_IP) is None


async def test_a_cold_start_that_cannot_read_fails_closed_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    table = RowsTable([BLOCK_OID])
    table.down = True
    cache = BlocklistCache(table, refresh_s=0.05, fail_open=False)
    try:
        with caplog.at_level(logging.INFO, logger="relay.blocklist"), pytest.raises(RelayError) as refused:
            await cache.lookup("99999999-0000-4000-8000-000000000009", TID, UNLISTED_IP)
        assert (refused.value.status, refused.value.code) == (503, "blocklist_unavailable")
        assert refused.value.headers["Retry-After"] == "2"
        [unavailable] = [e for e in events(caplog) if e["event"] == "blocklist.unavailable"][:1]
        assert "fail-closed" in unavailable["policy"]
        table.down = False
        async with asyncio.timeout(5):
            while True:
                try:
                    assert await cache.lookup(OID, TID, UNLISTED_IP) is not None
                    break
                except RelayError:
                    await asyncio.sleep(0.01)
    finally:
        await cache.aclose()


async def test_a_cold_start_that_cannot_read_serves_unchecked_when_set_to_fail_open() -> None:
    table = RowsTable([BLOCK_OID])
    table.down = True
    cache = BlocklistCache(table, refresh_s=3600, fail_open=True)
    try:
        assert await cache.lookup(OID, TID, UNLISTED_IP) is None
    finally:
        await cache.aclose()


async def test_invalid_rows_are_skipped_and_named_once(caplog: pytest.LogCaptureFixture) -> None:
    table = RowsTable([BLOCK_OID, {"PartitionKey": "oid", "RowKey": "typo", "Value": "alice@contoso.com"}])
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False)
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        await cache.refresh()
        await cache.refresh()
    invalid = [e for e in events(caplog) if e["event"] == "blocklist.rows_invalid"]
    assert invalid == [{"event": "blocklist.rows_invalid", "count": 1, "rows": {"oid/typo": "oid must be a GUID, got 'alice@contoso.com'"}}]
    assert await cache.lookup(OID, TID, UNLISTED_IP) is not None
