"""Azurite for the tests (devhost/azurite.py), and the block list admin command run as an analyst would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from azure.data.tables import TableClient

from devhost.azurite import AzuriteTables
from tests.support.servers import ROOT

TABLES = ("relayblocklist", "relaybudget")


def admin(state_dir: Path, *args: str, env: Mapping[str, str] | None = None, where: Sequence[str] = ("--azurite",)) -> subprocess.CompletedProcess[str]:
    """``python -m shared.blocklist_admin <where> <args>`` against the Azurite whose data is in ``state_dir``."""
    full_env = {**os.environ, "AZURITE_DIR": str(state_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "shared.blocklist_admin", *where, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def table(azurite: AzuriteTables, name: str) -> TableClient:
    return TableClient.from_connection_string(azurite.connection_string, name, connection_verify=azurite.ca_file)


def rows(azurite: AzuriteTables, name: str) -> list[dict[str, Any]]:
    with table(azurite, name) as client:
        return [dict(row) for row in client.list_entities()]
