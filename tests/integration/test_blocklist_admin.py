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
from pathlib import Path

import pytest

from devhost.azurite import AzuriteTables, running_azurite
from tests.support.azurite import TABLES, admin, rows
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
        for row in list(client.list_entities()):
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
    assert admin(state_dir, "block", "--cidr", "198.51.100.7/24", "--reason", "scanner", "--ttl", "30m").returncode == 0
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
    ],
)
def test_bad_input_is_refused_naming_the_problem_and_writes_nothing(blocklist: tuple[Path, AzuriteTables], args: list[str], message: str) -> None:
    state_dir, azurite = blocklist
    refused = admin(state_dir, *args)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert rows(azurite, "relayblocklist") == []


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
