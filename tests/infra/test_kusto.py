"""Every KQL query the templates deploy (infra/kql: the saved functions, the alert rules, the Sentinel
rule, the workbook) passes Microsoft's Kusto language service against the columns Microsoft's table
reference gives for the tables it reads (tests/infra/kusto/tables.json), and the check catches what
it claims to catch."""

from __future__ import annotations

import functools
import json
import re

import pytest

from tests.infra import kql

DEPLOYED = sorted(kql.queries())
FUNCTIONS = [f.name for f in kql.functions()]


@pytest.mark.parametrize("query_id", DEPLOYED)
def test_each_deployed_query_is_clean(query_id: str) -> None:
    assert kql.deployed_diagnostics()[query_id] == []


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_saved_function_is_clean(name: str) -> None:
    assert kql.deployed_diagnostics()[f"function:{name}"] == []


def test_the_pack_has_the_functions_alerts_and_workbook_items_the_docs_name() -> None:
    assert set(FUNCTIONS) == {"RelayRequests", "RelayAudit", "RelayTableWrites", "RelayTokensByUser", "RelayControlEvents"}
    assert {q for q in DEPLOYED if q.startswith("alerts/")} == {
        "alerts/blocklist-stale.kql",
        "alerts/blocklist-unavailable-answers.kql",
        "alerts/budget-sync-failing.kql",
        "alerts/telemetry-missing.kql",
    }
    assert set(kql.workbook_queries()) >= {
        "tokens-per-user",
        "refusals-per-user",
        "top-users",
        "blocks",
        "budget-use",
        "defender-ai-alerts",
        "user-activity",
    }


def test_every_table_schema_names_its_microsoft_source() -> None:
    tables = json.loads(kql.TABLES.read_text(encoding="utf-8"))["tables"]
    assert set(tables) == {"AppTraces", "AppMetrics", "AppRequests", "AppDependencies", "SecurityAlert", "StorageTableLogs"}
    for name, table in tables.items():
        assert table["source"] == f"https://learn.microsoft.com/azure/azure-monitor/reference/tables/{name.lower()}"
        assert table["columns"]["TimeGenerated"] == "datetime"
    assert tables["AppTraces"]["columns"]["Properties"] == "dynamic"
    assert tables["StorageTableLogs"]["columns"]["RequesterObjectId"] == "string"


# ---- the check fails on each kind of mistake ------------------------------------------------

_WORKSPACE = "/subscriptions/x/resourceGroups/y/providers/Microsoft.OperationalInsights/workspaces/z"
#: (query, the first diagnostic expected; "" for none)
MISTAKES = {
    "table-column": ("AppTraces\n| where Mesage == 'relay.request'", "'Mesage' does not refer to any known column"),
    "function-column": ("RelayRequests()\n| summarize sum(total_token) by oid", "'total_token' does not refer to any known column"),
    "table": ("AppTrace | take 1", "'AppTrace' does not refer to any known"),
    "syntax": ("AppTraces | where Message == ", "KS"),
    "other-workspace": (f'workspace("{_WORKSPACE}").AppTraces | where Mesage == "x"', "'Mesage' does not refer to any known column"),
    "deployed-query": (
        kql.queries()["sentinel/ai-alert-user-activity.kql"].replace("AlertSeverity, StartTime", "AlertSeverty, StartTime", 1),
        "'AlertSeverty' does not refer to any known column",
    ),
    "control": ("RelayTokensByUser() | where total_tokens > 1000 | project oid, tid, app", ""),
}  # fmt: skip


@functools.cache
def _mistakes() -> dict[str, list[str]]:
    return kql.check({name: query for name, (query, _) in MISTAKES.items()})


@pytest.mark.parametrize(("name", "expected"), [(name, expected) for name, (_, expected) in MISTAKES.items()], ids=list(MISTAKES))
def test_each_kind_of_mistake_is_reported(name: str, expected: str) -> None:
    diagnostics = _mistakes()[name]
    if not expected:
        assert diagnostics == []  # the control: a correct query reports nothing
        return
    assert diagnostics, f"{name}: nothing reported"
    assert expected in diagnostics[0] and diagnostics[0].startswith("Error KS"), diagnostics


def test_a_misspelled_column_in_a_saved_function_body_is_reported() -> None:
    saved = [f if f.name != "RelayAudit" else kql.Function(f.name, f.body.replace("OperationId", "OperationID")) for f in kql.functions()]
    diagnostics = kql.check({}, saved)["function:RelayAudit"]
    assert len(diagnostics) == 1 and "'OperationID' does not refer to any known column" in diagnostics[0], diagnostics


def test_relay_requests_types_every_field_the_documented_schema_has_under_its_own_name() -> None:
    doc = (kql.KQL_DIR.parents[1] / "docs" / "telemetry.md").read_text(encoding="utf-8")
    table = doc.split("### The request record", 1)[1].split("\n\n**", 1)[0]
    documented = {name for line in table.splitlines() if line.startswith("| `") for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    body = next(f.body for f in kql.functions() if f.name == "RelayRequests")
    typed = dict(re.findall(r"^\s+(\w+) = [\w(]*\bP\.(\w+)\b", body, re.MULTILINE))
    assert "oid" in documented and "suppressed" in documented
    assert set(typed.values()) == documented
    assert all(column == field for column, field in typed.items())
