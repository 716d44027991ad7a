"""Three relay processes on one Azurite whose block list holds rows the Tables SDK cannot read, and rows keyed as a SOAR tool may key them.

The rows are written over the Table REST API with their OData types (tests/support/azurite.py, ``insert_raw``)
before any relay starts, so each relay's first read meets them, as a new instance would; one relay is set to
fail open, where a cold start that could not read serves everyone unchecked. Each relay is ``python -m devhost``
on its own port (tests/support/relays.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devhost.azurite import running_azurite
from tests.support import rawhttp
from tests.support.azurite import TABLES, admin, insert_raw
from tests.support.emulator import Emulator
from tests.support.relays import Relays, start_relay
from tests.support.stack import Stack

REFRESH_S = 1.0
# Over the refresh interval: the time a read itself takes on a busy 2-core machine, and the polling step.
SLACK_S = 3.0
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
# Blocked by a row whose ExpiresAt is an Edm.DateTime with an offset (the SDK's parser wants "Z").
OFFSET_OID = "0ff5e700-0000-4000-8000-00000000b001"
# Blocked by a row in partition "OID", as a SOAR tool may write it.
SOAR_OID = "50a70000-0000-4000-8000-00000000b002"
LATER_OID = "1a7e0000-0000-4000-8000-00000000b003"
BAD_ROWS = [
    {"PartitionKey": "tenant", "RowKey": "bad-guid", "Value@odata.type": "Edm.Guid", "Value": "not-a-guid"},
    {"PartitionKey": "ip", "RowKey": "bad-int", "Value": "192.0.2.1", "ExpiresAt@odata.type": "Edm.Int64", "ExpiresAt": "soon"},
]


@pytest.fixture(scope="module")
def relays(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relays]:
    state_dir = tmp_path_factory.mktemp("blocklist-instances")
    with running_azurite(state_dir, TABLES, log_path=state_dir / "azurite.log") as azurite, contextlib.ExitStack() as started:
        tables = azurite.tables
        insert_raw(tables, "relayblocklist", {"PartitionKey": "oid", "RowKey": "offset", "Value": OFFSET_OID, "ExpiresAt@odata.type": "Edm.DateTime", "ExpiresAt": "2999-01-01T00:00:00+02:00"})
        insert_raw(tables, "relayblocklist", {"PartitionKey": "OID", "RowKey": "soar-1", "Value": SOAR_OID.upper(), "AlertId": "alert-soar"})
        for row in BAD_ROWS:
            insert_raw(tables, "relayblocklist", row)
        settings = {"RELAY_BLOCKLIST_ENABLED": "true", "RELAY_BLOCKLIST_REFRESH_S": str(REFRESH_S)}
        stacks = [
            start_relay(started, emulator, azurite, state_dir, {**settings, "RELAY_BLOCKLIST_COLD_START": cold_start})
            for cold_start in ("fail-closed", "fail-closed", "fail-open")
        ]
        yield Relays(stacks, azurite, emulator)


def status(stack: Stack, oid: str) -> int:
    headers = [("Authorization", f"Bearer {stack.token(oid=oid)}"), ("Content-Type", "application/json")]
    return rawhttp.request(stack.port, "POST", "/api/v1/chat/completions", headers, BODY).status


def wait_until(condition: Any, timeout: float) -> float:
    """Poll ``condition`` until it is true; return the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not true within {timeout:.1f}s"
        time.sleep(0.1)
    return time.monotonic() - start


def test_rows_the_sdk_cannot_read_are_named_by_every_instance_and_every_other_row_is_enforced(relays: Relays) -> None:
    # New instances: their first read met the bad rows, and they enforce the rest (the fail-open one too).
    assert [status(stack, OFFSET_OID) for stack in relays.stacks] == [403, 403, 403]
    assert [status(stack, SOAR_OID) for stack in relays.stacks] == [403, 403, 403]
    assert [status(stack, LATER_OID) for stack in relays.stacks] == [200, 200, 200]
    for each in relays.events("blocklist.rows_invalid"):
        assert each, "an instance did not name the rows it skipped"
        assert each[-1]["count"] == 2
        assert each[-1]["rows"] == {"ip/bad-int": "ExpiresAt is not an ISO 8601 date", "tenant/bad-guid": "tenant must be a GUID, got 'not-a-guid'"}
    assert relays.events("blocklist.unavailable") == [[], [], []]

    # Running instances: new blocks and unblocks keep taking effect on every one.
    state_dir = relays.azurite.state_dir
    assert admin(state_dir, "block", "--oid", LATER_OID, "--reason", "test", "--ttl", "1h").returncode == 0
    took = [wait_until(lambda s=stack: status(s, LATER_OID) == 403, REFRESH_S + SLACK_S) for stack in relays.stacks]
    lifted = admin(state_dir, "unblock", "--oid", SOAR_OID)
    assert (lifted.returncode, lifted.stdout.strip()) == (0, "unblocked: 1 row(s) removed")
    took += [wait_until(lambda s=stack: status(s, SOAR_OID) == 200, REFRESH_S + SLACK_S) for stack in relays.stacks]
    print(f"with bad rows in the table, a block then an unblock took effect after {[round(t, 2) for t in took]} s (refresh {REFRESH_S} s)")
    listed = admin(state_dir, "list")
    assert listed.returncode == 0 and "invalid 'tenant'/'bad-guid'" in listed.stdout and OFFSET_OID in listed.stdout
