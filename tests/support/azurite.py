"""Azurite for the tests (devhost/azurite.py), and the block list admin command run as an analyst would run it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from email.utils import formatdate
from pathlib import Path
from typing import Any

from devhost.azurite import ACCOUNT, ACCOUNT_KEY, AzuriteTables
from shared.blocklist import UNTYPED_ROWS
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


def rows(azurite: AzuriteTables, name: str, *, untyped: bool = False) -> list[dict[str, Any]]:
    """The table's rows, typed by the SDK, or ``untyped`` as JSON (what survives a value the SDK cannot convert)."""
    with azurite.table_client(name) as client:
        found = client.list_entities(format=UNTYPED_ROWS) if untyped else client.list_entities()
        return [dict(row) for row in found]


def insert_raw(azurite: AzuriteTables, table: str, entity: Mapping[str, Any]) -> None:
    """Insert ``entity`` as the JSON body of an Insert Entity request, OData type annotations and all, as any REST client may.

    Not through the SDK, which checks values against their types before sending: the row is exactly what a SOAR
    tool wrote. Signed with Shared Key Lite (https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key).
    """
    url = f"{azurite.endpoint}/{table}"
    date = formatdate(usegmt=True)
    # Shared Key Lite for the Table service: the date and the account's canonicalized resource (path-style: /account/account/table).
    signed = f"{date}\n/{ACCOUNT}{urllib.parse.urlparse(url).path}"
    signature = base64.b64encode(hmac.new(base64.b64decode(ACCOUNT_KEY), signed.encode(), hashlib.sha256).digest()).decode()
    request = urllib.request.Request(
        url,
        data=json.dumps(entity).encode(),
        method="POST",
        headers={
            "x-ms-date": date,
            "x-ms-version": "2019-02-02",
            "DataServiceVersion": "3.0",
            "Content-Type": "application/json",
            "Accept": "application/json;odata=nometadata",
            "Prefer": "return-no-content",
            "Authorization": f"SharedKeyLite {ACCOUNT}:{signature}",
        },
    )
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=azurite.ca_file), timeout=30) as response:
        assert response.status == 204, response.status
