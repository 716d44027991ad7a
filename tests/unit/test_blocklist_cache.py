"""shared.blocklist_cache: the first request waits for one read, later ones never touch storage; outages and cold starts."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from azure.core.exceptions import DecodeError, DeserializationError, ServiceRequestError

from shared.blocklist_cache import BlocklistCache
from shared.errors import RelayError
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.tables import RowsTable

UNLISTED_IP = "192.0.2.1"  # in no blocked range
BLOCK_OID = {"PartitionKey": "oid", "RowKey": OID, "Value": OID, "Reason": "exfiltration", "AlertId": "alert-7"}


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    # Without the time each line carries (tests/unit/test_logs.py checks it).
    return [{k: v for k, v in json.loads(r.getMessage()).items() if k != "time"} for r in caplog.records if r.name == "relay.blocklist"]


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


# What a read meets in an outage, as the Tables SDK raises it (the same answers from real servers: tests/integration/test_blocklist_outages.py).
OUTAGES = {
    "refused": ServiceRequestError("Cannot connect to host 127.0.0.1:10002"),
    "silent": "hang",
    "garbage": DecodeError("JSON is invalid: Expecting value: line 1 column 1 (char 0)"),
    "not a page of rows": DeserializationError("Unable to deserialize response data. Data: 1, {object}"),
    "a row the SDK cannot convert": ValueError("badly formed hexadecimal UUID string"),
}
ERRORS = {"refused": "ServiceRequestError", "silent": "TimeoutError", "garbage": "DecodeError", "not a page of rows": "DeserializationError", "a row the SDK cannot convert": "ValueError"}


@pytest.mark.parametrize("outage", list(OUTAGES))
async def test_during_an_outage_the_last_good_copy_is_kept_and_the_log_says_so(outage: str, caplog: pytest.LogCaptureFixture) -> None:
    table = RowsTable([BLOCK_OID])
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False, read_deadline_s=0.2)
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        await cache.refresh()
        table.down, table.failure = True, OUTAGES[outage]
        table.rows.clear()  # what storage would say if it answered
        assert await cache.refresh() is False
        assert await cache.refresh() is False
    assert await cache.lookup(OID, TID, UNLISTED_IP) is not None
    failed = [e for e in events(caplog) if e["event"] == "blocklist.refresh_failed"]
    assert [e["failed_reads"] for e in failed] == [1, 2]
    assert failed[0]["kept_entries"] == 1 and failed[0]["error"] == ERRORS[outage]
    table.down = False
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        assert await cache.refresh() is True
    assert events(caplog)[-1] == {"event": "blocklist.loaded", "entries": 0, "failed_reads_before": 2}
    assert await cache.lookup(OID, TID, UNLISTED_IP) is None


@pytest.mark.parametrize("outage", list(OUTAGES))
async def test_a_cold_start_that_cannot_read_fails_closed_then_recovers(outage: str, caplog: pytest.LogCaptureFixture) -> None:
    table = RowsTable([BLOCK_OID])
    table.down, table.failure = True, OUTAGES[outage]
    cache = BlocklistCache(table, refresh_s=0.05, fail_open=False, read_deadline_s=0.2, first_read_wait_s=0.5)
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


async def test_invalid_rows_are_skipped_and_named_on_every_refresh_in_one_bounded_line(caplog: pytest.LogCaptureFixture) -> None:
    typos = [{"PartitionKey": "oid", "RowKey": f"typo-{n:02}", "Value": f"user{n}@contoso.com"} for n in range(12)]
    table = RowsTable([BLOCK_OID, *typos])
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False)
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        await cache.refresh()
        await cache.refresh()
    invalid = [e for e in events(caplog) if e["event"] == "blocklist.rows_invalid"]
    assert [e["count"] for e in invalid] == [12, 12]
    assert invalid[0]["rows"] == {f"oid/typo-{n:02}": f"oid must be a GUID, got 'user{n}@contoso.com'" for n in range(10)}
    assert await cache.lookup(OID, TID, UNLISTED_IP) is not None


async def test_each_change_the_next_read_finds_is_one_audit_record_with_the_rows_own_fields(caplog: pytest.LogCaptureFixture) -> None:
    ip_row = {"PartitionKey": "ip", "RowKey": "203.0.113.0_24", "Value": "203.0.113.0/24", "Reason": "scanner", "AddedBy": "soc@contoso.com"}
    expired = {"PartitionKey": "tenant", "RowKey": TID, "Value": TID, "ExpiresAt": "2020-01-01T00:00:00Z"}
    table = RowsTable([BLOCK_OID, ip_row, expired])
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False)
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        assert await cache.refresh()
        assert [e for e in events(caplog) if e["event"] == "relay.audit"] == []  # a first read is no change
        table.rows[:] = [{**BLOCK_OID, "AlertId": "alert-9", "Reason": "again"}, {"PartitionKey": "oid", "RowKey": TID, "Value": TID}]
        assert await cache.refresh()
        assert await cache.refresh()  # nothing changed since: nothing more
    audits = sorted((e for e in events(caplog) if e["event"] == "relay.audit"), key=lambda e: (e["action"], e["target"]))
    assert [(e["action"], e["kind"], e["target"]) for e in audits] == [
        ("block", "oid", OID),
        ("block", "oid", TID),
        ("prune", "tenant", TID),
        ("unblock", "ip", "203.0.113.0/24"),
    ]
    assert audits[0] | {"added_at": None} == {
        "event": "relay.audit", "schema": "relay.audit/1", "action": "block", "kind": "oid", "target": OID, "row": OID,
        "reason": "again", "alert_id": "alert-9", "added_by": "", "added_at": None, "expires_at": None,
    }  # fmt: skip
    assert audits[3]["added_by"] == "soc@contoso.com" and audits[3]["reason"] == "scanner"


async def test_a_change_of_more_rows_than_are_audited_one_by_one_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    table = RowsTable([])
    cache = BlocklistCache(table, refresh_s=3600, fail_open=False)
    with caplog.at_level(logging.INFO, logger="relay.blocklist"):
        assert await cache.refresh()
        table.rows[:] = [{"PartitionKey": "ip", "RowKey": f"198.51.100.{i}_32", "Value": f"198.51.100.{i}/32"} for i in range(130)]
        assert await cache.refresh()
    logged = events(caplog)
    assert sum(e["event"] == "relay.audit" for e in logged) == 100
    assert [e["count"] for e in logged if e["event"] == "blocklist.changes_not_audited"] == [30]
