"""The relay's KQL and Microsoft's Kusto language service that checks it.

``infra/kql`` holds every query the templates deploy: the saved functions (``functions/<alias>.kql``,
the body of the function the workspace calls ``<alias>``), the alert rules' queries (``alerts/``), the
Sentinel rule's (``sentinel/``) and the workbook (``workbook/``, its query items). :func:`check` runs
``tests/infra/kusto/check.js`` in Node, which analyses each query with ``@kusto/language-service-next``
against the columns of the tables in ``tests/infra/kusto/tables.json`` (Microsoft's table reference)
and the saved functions, and returns the diagnostics per query.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra import bicep

KQL_DIR = bicep.ROOT / "infra" / "kql"
CHECKER_DIR = Path(__file__).resolve().parent / "kusto"
TABLES = CHECKER_DIR / "tables.json"
WORKBOOK = KQL_DIR / "workbook" / "relay-soc.workbook.json"


@dataclass(frozen=True)
class Function:
    """A saved function: its alias and its body."""

    name: str
    body: str


def functions() -> list[Function]:
    return [Function(p.stem, p.read_text(encoding="utf-8")) for p in sorted((KQL_DIR / "functions").glob("*.kql"))]


def workbook() -> dict[str, Any]:
    content: dict[str, Any] = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    return content


def workbook_queries() -> dict[str, str]:
    """The workbook's query items, by item name."""
    return {item["name"]: item["content"]["query"] for item in workbook()["items"] if item["type"] == 3}


def queries() -> dict[str, str]:
    """Every deployed query but the functions, by an id that names its file (and workbook item)."""
    found = {
        str(path.relative_to(KQL_DIR)): path.read_text(encoding="utf-8")
        for folder in ("alerts", "sentinel")
        for path in sorted((KQL_DIR / folder).glob("*.kql"))
    }
    found.update({f"workbook/{name}": query for name, query in workbook_queries().items()})
    return found


def require_checker() -> str:
    node = shutil.which("node")
    missing = [] if node else ["node"]
    if not (CHECKER_DIR / "node_modules" / "@kusto" / "language-service-next").is_dir():
        missing.append(str(CHECKER_DIR / "node_modules/@kusto/language-service-next"))
    if missing or node is None:
        raise RuntimeError(f"Kusto check prerequisites missing: {', '.join(missing)}; run scripts/ensure-kusto.sh (make test does)")
    return node


def check(texts: Mapping[str, str], saved: list[Function] | None = None) -> dict[str, list[str]]:
    """Diagnostics of each query and of each saved function's body (``function:<name>``); [] when clean.

    ``saved`` replaces the functions of infra/kql (to check a changed one)."""
    node = require_checker()
    payload = {
        "functions": [{"name": f.name, "body": f.body} for f in (functions() if saved is None else saved)],
        "queries": [{"id": key, "text": text} for key, text in texts.items()],
    }
    proc = subprocess.run(
        [node, str(CHECKER_DIR / "check.js")], input=json.dumps(payload), capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"check.js failed ({proc.returncode}): {proc.stderr}")
    result: dict[str, list[str]] = json.loads(proc.stdout)
    return result


@functools.cache
def deployed_diagnostics() -> dict[str, list[str]]:
    """The diagnostics of everything infra/kql deploys (one Node run per test session)."""
    return check(queries())
