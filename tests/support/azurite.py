"""Azurite for the tests (devhost/azurite.py), and the block list admin command run as an analyst would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devhost.azurite import AzuriteTables
from shared.config import DEFAULT_BLOCKLIST_TABLE, DEFAULT_BUDGET_TABLE
from tests.support.servers import ROOT

TABLES = (DEFAULT_BLOCKLIST_TABLE, DEFAULT_BUDGET_TABLE)


def admin(state_dir: Path, *args: str, env: Mapping[str, str] | None = None, where: Sequence[str] = ("--azurite",)) -> subprocess.CompletedProcess[str]:
    """``python -m ops.blocklist_admin <where> <args>`` against the Azurite whose data is in ``state_dir``."""
    full_env = {**os.environ, "AZURITE_DIR": str(state_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ops.blocklist_admin", *where, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rows(azurite: AzuriteTables, name: str) -> list[dict[str, Any]]:
    with azurite.table_client(name) as client:
        return [dict(row) for row in client.list_entities()]
