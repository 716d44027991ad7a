"""``python -m ops.blocklist_admin`` against Azurite: block, list, unblock, prune; bad input refused; the Azure CLI identity path.

The identity path runs the real ``AzureCliCredential`` against Azurite in OAuth mode: a stand-in
``az`` on PATH hands out a token from the managed identity emulator for the storage audience,
as ``az account get-access-token --resource https://storage.azure.com`` would.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from devhost.azurite import AzuriteTables, running_azurite
from shared.blocklist import UNTYPED_ROWS
from tests.support.azurite import TABLES, admin, insert_raw, rows
from tests.support.emulator import Emulator
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.tokens import claims_of


@pytest.fixture(scope="module")
def azurite_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, AzuriteTables]]:
    state_dir = tmp_path_factory.mktemp("azurite")
    with running_azurite(state_dir, TABLES, log_path=state_dir / "azurite.log") as azurite:
        yield state_dir, azurite.tables


@pytest.fixture
def blocklist(azurite_dir: tuple[Path, AzuriteTables]) -> Iterator[tuple[Path, AzuriteTables]]:
    yield azurite_dir
    with azurite_dir[1].table_client("relayblocklist") as client:
        for row in list(client.list_entities(format=UNTYPED_ROWS)):
            client.delete_entity(row["PartitionKey"], row["RowKey"])


def test_block_list_and_unblock_an_end_user(blocklist: tuple[Path, AzuriteTables]) -> None:
    state_dir, azurite = blocklist
    before = time.time()
    done = admin(state_dir, "block", "--oid", OID.upper(), "--reason", "jailbreak attempts", "--ttl", "24h", "--alert-id", "2517_abc")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("blocked: oid") and OID in done.stdout
    [row] = rows(azurite, "relayblocklist")
    assert (row["PartitionKey"], row["RowKey"], row["Value"], row["AlertId"]) == ("oid", OID, OID, "2517_abc")
    assert row["Reason"] == "jailbreak attempts" and row["AddedBy"].endswith("@local")
    assert 24 * 3600 - 5 <= row["ExpiresAt"].timestamp() - before <= 24 * 3600 + 5

    listed = admin(state_dir, "list")
    assert listed.returncode == 0 and OID in listed.stdout and "alert=2517_abc" in listed.stdout

    removed = admin(state_dir, "unblock", "--oid", OID)
    assert (removed.returncode, removed.stdout.strip()) == (0, "unblocked: 1 row(s) removed")
    assert rows(azurite, "relayblocklist") == []
    again = admin(state_dir, "unblock", "--oid", OID)
    assert (again.returncode, again.stdout.strip()) == (1, "unblocked: 0 row(s) removed")


def test_tenants_ranges_and_pruning_expired_rows(blocklist: tuple[Path, AzuriteTables]) -> None:
    state_dir, azurite = blocklist
    assert admin(state_dir, "block", "--tenant", TID, "--reason", "compromised tenant", "--ttl", "7d").returncode == 0
    assert admin(state_dir, "block", "--cidr", "198.51.100.0/24", "--reason", "scanner", "--ttl", "30m").returncode == 0
    with azurite.table_client("relayblocklist") as client:
        client.upsert_entity({"PartitionKey": "ip", "RowKey": "old", "Value": "192.0.2.1", "ExpiresAt": "2020-01-01T00:00:00Z"})
    stored = {(r["PartitionKey"], r["RowKey"], r["Value"]) for r in rows(azurite, "relayblocklist")}
    assert stored == {("tenant", TID, TID), ("ip", "198.51.100.0_24", "198.51.100.0/24"), ("ip", "old", "192.0.2.1")}
    listed = admin(state_dir, "list").stdout
    assert "198.51.100.0/24" in listed and "192.0.2.1" not in listed
    assert "192.0.2.1" in admin(state_dir, "list", "--all").stdout
    pruned = admin(state_dir, "prune")
    assert (pruned.returncode, pruned.stdout.strip()) == (0, "pruned: 1 expired row(s) removed")
    assert len(rows(azurite, "relayblocklist")) == 2
    assert admin(state_dir, "unblock", "--cidr", "198.51.100.0/24").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["block", "--oid", "alice@contoso.com", "--reason", "r", "--ttl", "1h"], "oid must be a GUID"),
        (["block", "--ip", "10.1.0.0/16", "--reason", "r", "--ttl", "1h"], "use --cidr for the range"),
        (["block", "--cidr", "10.1.0.0/33", "--reason", "r", "--ttl", "1h"], "ip must be an IP address or CIDR range"),
        (["block", "--oid", OID, "--reason", "r", "--ttl", "soon"], "--ttl must be a number and a unit"),
        (["block", "--oid", OID, "--reason", "r", "--ttl", "400d"], "--ttl must be at most 366 days"),
        (["block", "--oid", OID, "--reason", "r", "--ttl", "0h"], "--ttl must be a number and a unit"),
        (["block", "--oid", OID, "--ttl", "1h"], "the following arguments are required: --reason"),
        (["block", "--oid", OID, "--tenant", TID, "--reason", "r", "--ttl", "1h"], "not allowed with argument"),
        (["block", "--cidr", "203.0.113.7/0", "--reason", "r", "--ttl", "1h"], "has bits set after the prefix: the range it starts is 0.0.0.0/0"),
        (["block", "--cidr", "203.0.113.7/24", "--reason", "r", "--ttl", "1h"], "the range it starts is 203.0.113.0/24; write that"),
        (["block", "--cidr", "0.0.0.0/0", "--reason", "r", "--ttl", "1h"], "is every IPv4 address; the command refuses it"),
        (["block", "--cidr", "::/0", "--reason", "r", "--ttl", "1h"], "is every IPv6 address"),
        (["block", "--cidr", "::ffff:0:0/96", "--reason", "r", "--ttl", "1h"], "is every IPv4 address"),
        (["block", "--oid", OID, "--reason", "r", "--ttl", "99999999999999999999d"], "--ttl must be at most 366 days"),
    ],
)
def test_bad_input_is_refused_naming_the_problem_and_writes_nothing(blocklist: tuple[Path, AzuriteTables], args: list[str], message: str) -> None:
    state_dir, azurite = blocklist
    refused = admin(state_dir, *args)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert rows(azurite, "relayblocklist") == []


def test_an_ipv4_mapped_range_is_blocked_listed_and_lifted_as_the_ipv4_range_the_relay_matches(blocklist: tuple[Path, AzuriteTables]) -> None:
    state_dir, azurite = blocklist
    done = admin(state_dir, "block", "--cidr", "::ffff:127.0.0.64/126", "--reason", "r", "--ttl", "1h")
    assert done.returncode == 0, done.stderr
    assert [(r["PartitionKey"], r["Value"]) for r in rows(azurite, "relayblocklist")] == [("ip", "127.0.0.64/30")]
    assert "127.0.0.64/30" in admin(state_dir, "list").stdout
    lifted = admin(state_dir, "unblock", "--cidr", "::ffff:127.0.0.64/126")
    assert (lifted.returncode, lifted.stdout.strip()) == (0, "unblocked: 1 row(s) removed")


def test_blocking_again_replaces_the_row_in_the_documented_form(blocklist: tuple[Path, AzuriteTables]) -> None:
    state_dir, azurite = blocklist
    first = admin(state_dir, "block", "--oid", OID, "--reason", "jailbreak", "--ttl", "1h", "--alert-id", "alert-1", "--added-by", "ada@contoso.com")
    assert first.returncode == 0, first.stderr
    again = admin(state_dir, "block", "--oid", OID, "--reason", "reported by the app owner", "--ttl", "7d", "--added-by", "bo@contoso.com")
    assert again.returncode == 0, again.stderr
    [row] = rows(azurite, "relayblocklist")
    # docs/blocklist.md, the row schema: who, why, for which alert (none: empty) and until when, dates as Edm.DateTime.
    assert set(row) == {"PartitionKey", "RowKey", "Value", "Reason", "AddedBy", "AddedAt", "ExpiresAt", "AlertId"}
    assert (row["Reason"], row["AddedBy"], row["AlertId"]) == ("reported by the app owner", "bo@contoso.com", "")
    assert isinstance(row["AddedAt"], datetime) and isinstance(row["ExpiresAt"], datetime)
    assert 7 * 86400 - 60 <= (row["ExpiresAt"] - row["AddedAt"]).total_seconds() <= 7 * 86400
    assert "alert=- by=bo@contoso.com" in admin(state_dir, "list").stdout


def test_rows_a_soar_tool_keyed_in_another_case_or_with_spaces_are_listed_lifted_and_pruned(blocklist: tuple[Path, AzuriteTables]) -> None:
    state_dir, azurite = blocklist
    insert_raw(azurite, "relayblocklist", {"PartitionKey": "OID", "RowKey": "soar-1", "Value": OID.upper(), "Reason": "soar"})
    insert_raw(azurite, "relayblocklist", {"PartitionKey": " ip ", "RowKey": "soar-2", "Value": "198.51.100.7"})
    insert_raw(
        azurite,
        "relayblocklist",
        {"PartitionKey": "Tenant", "RowKey": "soar-3", "Value": TID, "ExpiresAt@odata.type": "Edm.DateTime", "ExpiresAt": "2020-01-01T00:00:00Z"},
    )
    listed = admin(state_dir, "list").stdout
    assert OID in listed and "198.51.100.7/32" in listed and TID not in listed

    lifted = admin(state_dir, "unblock", "--oid", OID)
    assert (lifted.returncode, lifted.stdout.strip()) == (0, "unblocked: 1 row(s) removed")
    lifted = admin(state_dir, "unblock", "--ip", "198.51.100.7")
    assert (lifted.returncode, lifted.stdout.strip()) == (0, "unblocked: 1 row(s) removed")
    pruned = admin(state_dir, "prune")
    assert (pruned.returncode, pruned.stdout.strip()) == (0, "pruned: 1 expired row(s) removed")
    assert rows(azurite, "relayblocklist") == []


def test_a_row_the_tables_sdk_cannot_read_is_named_and_every_other_row_is_listed_and_pruned(blocklist: tuple[Path, AzuriteTables]) -> None:
    state_dir, azurite = blocklist
    raw = [
        # ExpiresAt typed Edm.DateTime with an offset: the SDK's parser wants a "Z"; the block ends at 22:00 UTC.
        {"PartitionKey": "oid", "RowKey": "offset", "Value": OID, "ExpiresAt@odata.type": "Edm.DateTime", "ExpiresAt": "2999-12-01T00:00:00+02:00"},
        # A Value typed Edm.Guid that is not one: the SDK raises; the relay names the row.
        {"PartitionKey": "tenant", "RowKey": "bad-guid", "Value@odata.type": "Edm.Guid", "Value": "not-a-guid"},
        # An expired row with an Edm.Int64 that is not a number: prune still removes it.
        {"PartitionKey": "ip", "RowKey": "bad-int", "Value": "192.0.2.1", "ExpiresAt": "2020-01-01T00:00:00Z", "Hits@odata.type": "Edm.Int64", "Hits": "many"},
    ]
    for entity in raw:
        insert_raw(azurite, "relayblocklist", entity)
    with pytest.raises(ValueError):  # what every read did before: one row stopped them all
        rows(azurite, "relayblocklist")

    listed = admin(state_dir, "list")
    assert listed.returncode == 0, listed.stderr
    assert f"oid    {OID:<43} until 2999-11-30T22:00:00+00:00" in listed.stdout
    assert "invalid 'tenant'/'bad-guid': tenant must be a GUID, got 'not-a-guid' (the relay ignores it)" in listed.stdout
    pruned = admin(state_dir, "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[0] == "pruned: 1 expired row(s) removed"
    assert "invalid 'tenant'/'bad-guid'" in pruned.stdout
    assert {r["RowKey"] for r in rows(azurite, "relayblocklist", untyped=True)} == {"offset", "bad-guid"}


def test_without_a_running_azurite_the_command_says_what_to_start(tmp_path: Path) -> None:
    refused = admin(tmp_path, "list")
    assert refused.returncode == 2 and "start `make run` first" in refused.stderr


def fake_az(bin_dir: Path, output: str, status: int = 0) -> dict[str, str]:
    """An ``az`` that prints ``output`` (and exits ``status``): PATH and CA settings for the admin command."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "az"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n" + (f"echo 'ERROR: Please run az login to setup account.' >&2\nexit {status}\n" if status else ""))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_the_azure_cli_identity_writes_the_table_and_is_recorded_as_the_author(
    blocklist: tuple[Path, AzuriteTables], emulator: Emulator, tmp_path: Path
) -> None:
    state_dir, azurite = blocklist
    token = emulator.token("https://storage.azure.com/.default")
    env = fake_az(tmp_path / "bin", json.dumps({"accessToken": token, "expires_on": int(time.time()) + 3600, "tokenType": "Bearer"}))
    env["REQUESTS_CA_BUNDLE"] = azurite.ca_file
    done = admin(state_dir, "block", "--ip", "203.0.113.9", "--reason", "r", "--ttl", "1h", env=env, where=("--account-url", azurite.endpoint))
    assert done.returncode == 0, done.stderr
    [row] = rows(azurite, "relayblocklist")
    assert (row["Value"], row["AddedBy"]) == ("203.0.113.9/32", claims_of(token)["oid"])


def test_without_an_azure_cli_login_the_command_says_to_sign_in(blocklist: tuple[Path, AzuriteTables], tmp_path: Path) -> None:
    state_dir, azurite = blocklist
    env = fake_az(tmp_path / "bin", "", status=1)
    refused = admin(state_dir, "list", env=env, where=("--account-url", azurite.endpoint))
    assert refused.returncode == 1 and "az login" in refused.stderr, refused.stderr
