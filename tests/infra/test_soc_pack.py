"""What the templates deploy for the SOC and for the evidence (docs/telemetry.md): the workspace's
retention, cap and access mode; the saved functions and the workbook (the files of infra/kql that
tests/infra/test_kusto.py checks); the control alerts; the optional Sentinel rule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.infra import azure_types, bicep, kql

APPS = bicep.example_param_files()
APP_IDS = [p.stem for p in APPS]
SENTINEL = bicep.BICEP_DIR / "sentinel" / "ai-alert-user-activity.bicep"
EVIDENCE_TABLES = ["AppTraces", "AppMetrics", "AppRequests", "AppDependencies", "StorageTableLogs"]
ACTION_GROUP = "/subscriptions/00000000-0000-4000-8000-0000000000ff/resourceGroups/rg-ops/providers/microsoft.insights/actionGroups/ag-soc"
SOC_WORKSPACE = "/subscriptions/00000000-0000-4000-8000-0000000000ee/resourceGroups/rg-soc/providers/Microsoft.OperationalInsights/workspaces/log-sentinel"


def _function_call(node: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(node, dict) and set(node) == {"function"}:
        return str(node["function"]["type"]), node["function"].get("parameters") or {}
    return None


def _text(node: Any, scope: bicep.Evaluator, parsed: Mapping[str, Any], template: Path) -> Any:
    """A value as deployed, with the two functions the pack's templates add: loadTextContent (the file,
    relative to the template) and replace."""
    if isinstance(node, str) and node in parsed.get("variables", {}):
        return _text(parsed["variables"][node]["value"], scope, parsed, template)
    call = _function_call(node)
    if call and call[0] == "load_text_content":
        return (template.parent / call[1]["file_path"]).resolve().read_text(encoding="utf-8")
    if call and call[0] == "replace":
        original = _text(call[1]["original_string"], scope, parsed, template)
        old, new = scope.eval(call[1]["old_string"]), _text(call[1]["new_string"], scope, parsed, template)
        assert original.count(old) == 1, f"replace() target {old!r} must be in the text exactly once"
        return original.replace(old, new)
    return scope.eval(node)


def _module(app: Path, name: str, overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bicep.Evaluator, Path]:
    parsed, scope = bicep.module_scope(app, name, overrides)
    path = (bicep.MAIN.parent / bicep.parse_bicep(bicep.MAIN)["modules"][name]["detail"]["path"]).resolve()
    return parsed, scope, path


# ---- the workspace: retention, cap, access ---------------------------------------------------


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_the_relay_records_are_kept_for_the_stated_time_then_deleted(app: Path) -> None:
    for overrides, days in (({}, 90), ({"telemetryRetentionInDays": 180}, 180)):
        parsed, scope, _ = _module(app, "monitoring", overrides)
        tables = parsed["resources"]["evidenceRetention"]["config"]
        assert scope.eval(tables["loop_type"]["detail"]["array_name"]) == EVIDENCE_TABLES
        body = scope.eval(tables["config"]["properties"])
        # No long-term retention beyond it: after `days` the records are gone.
        assert body == {"retentionInDays": days, "totalRetentionInDays": days}


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_the_workspace_has_a_daily_cap_and_needs_workspace_rights_by_default(app: Path) -> None:
    parsed, scope, _ = _module(app, "monitoring")
    workspace = scope.eval(bicep.one_resource(parsed, "Microsoft.OperationalInsights/workspaces")["properties"])
    assert workspace["workspaceCapping"] == {"dailyQuotaGb": 10}
    assert workspace["features"] == {"enableLogAccessUsingOnlyResourcePermissions": False}
    parsed, scope, _ = _module(app, "monitoring", {"logDailyQuotaGb": -1, "resourceContextLogAccess": True})
    workspace = scope.eval(bicep.one_resource(parsed, "Microsoft.OperationalInsights/workspaces")["properties"])
    assert workspace["workspaceCapping"] == {"dailyQuotaGb": -1}
    assert workspace["features"] == {"enableLogAccessUsingOnlyResourcePermissions": True}


# ---- the saved functions and the workbook ------------------------------------------------------


def _saved_functions(app: Path) -> list[dict[str, Any]]:
    parsed, scope, path = _module(app, "socPack")
    items = parsed["variables"]["savedFunctions"]["value"]
    return [{key: _text(value, scope, parsed, path) for key, value in item.items()} for item in items]


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_every_checked_function_is_saved_under_its_file_name(app: Path) -> None:
    saved = _saved_functions(app)
    assert {fn["alias"]: fn["query"] for fn in saved} == {f.name: f.body for f in kql.functions()}
    properties = bicep.one_resource(
        bicep.parse_bicep(bicep.MODULES_DIR / "soc-pack.bicep"), "Microsoft.OperationalInsights/workspaces/savedSearches"
    )["properties"]
    assert properties["functionAlias"] == {"operator": {"type": "property_accessor", "operands": {"operand_1": "fn", "operand_2": "alias"}}}
    assert properties["query"] == {"operator": {"type": "property_accessor", "operands": {"operand_1": "fn", "operand_2": "query"}}}


def test_a_function_is_saved_after_the_functions_it_calls() -> None:
    saved = _saved_functions(APPS[0])
    order = [fn["alias"] for fn in saved]
    for position, fn in enumerate(saved):
        code = "\n".join(line for line in fn["query"].splitlines() if not line.lstrip().startswith("//"))
        called = {other for other in order if other != fn["alias"] and f"{other}()" in code}
        assert called <= set(order[:position]), f"{fn['alias']} calls {sorted(called)}, saved later"
    assert order.index("RelayRequests") < order.index("RelayTokensByUser")
    decorators = bicep.parse_bicep(bicep.MODULES_DIR / "soc-pack.bicep")["resources"]["functions"]["decorators"]
    assert {"type": "batchSize", "argument": 1} in decorators  # one at a time, in that order


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_the_workbook_is_the_checked_file_and_reads_alerts_from_the_chosen_workspace(app: Path) -> None:
    parsed, scope, path = _module(app, "socPack", {"securityAlertWorkspaceId": SOC_WORKSPACE})
    workbook = bicep.one_resource(parsed, "Microsoft.Insights/workbooks")
    data = _text(workbook["properties"]["serializedData"], scope, parsed, path)
    expected = kql.WORKBOOK.read_text(encoding="utf-8").replace("ALERT_WORKSPACE_RESOURCE_ID", SOC_WORKSPACE)
    assert data == expected
    assert workbook["kind"] == "shared" and workbook["properties"]["category"] == "workbook"
    # Without one, the relay's own workspace.
    parsed, scope, path = _module(app, "socPack")
    branch = _function_call(workbook["properties"]["serializedData"])
    assert branch is not None
    conditional = branch[1]["new_string"]["operator"]["operands"]
    assert scope.eval(conditional["condition"]) is True
    assert conditional["true_value"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "workspace", "operand_2": "id"}}
    }


def test_the_workbook_shows_defender_alerts_beside_the_users_activity() -> None:
    items = {item["name"]: item for item in kql.workbook()["items"]}
    alerts = items["defender-ai-alerts"]["content"]
    assert alerts["crossComponentResources"] == ["{AlertWorkspace}"]
    assert alerts["exportParameterName"] == "User" and alerts["exportFieldName"] == "oid"
    assert "union isfuzzy=true" in alerts["query"]  # no SecurityAlert table there: an empty panel, not an error
    assert '"{User}"' in items["user-activity"]["content"]["query"]
    for item in items.values():
        if item["type"] == 3:
            assert item["content"]["timeContextFromParameter"] == "TimeRange", item["name"]


# ---- the control alerts --------------------------------------------------------------------------


def _rules(app: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    parsed, scope, path = _module(app, "relayAlerts", overrides)
    rules = [{key: _text(value, scope, parsed, path) for key, value in item.items()} for item in parsed["variables"]["rules"]["value"]]
    return {rule["key"]: rule for rule in rules if rule["deploy"]}


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_each_control_has_its_alert_when_it_is_on(app: Path) -> None:
    everything = {"blocklistEnabled": True, "userTokensPerDay": 100000}
    assert set(_rules(app, everything)) == {"blocklist-stale", "blocklist-unavailable", "budget-sync-failing", "telemetry-missing"}
    assert set(_rules(app, {"blocklistEnabled": False, "userTokensPerDay": 0, "userTokensPerMinute": 0, "tenantTokensPerDay": 0})) == {
        "telemetry-missing"
    }
    assert "budget-sync-failing" in _rules(app, {"tenantTokensPerDay": 5000000})


def test_every_alert_query_file_is_deployed_by_a_rule() -> None:
    deployed = {rule["query"] for rule in _rules(APPS[0], {"userTokensPerDay": 1}).values()}
    for path in sorted((kql.KQL_DIR / "alerts").glob("*.kql")):
        text = path.read_text(encoding="utf-8")
        assert any(query.splitlines()[1:] == text.splitlines()[1:] for query in deployed), path.name


@pytest.mark.parametrize(("refresh", "bound"), [(30, "150"), (300, "960")])
def test_the_block_list_bound_follows_the_refresh_interval(refresh: int, bound: str) -> None:
    rule = _rules(APPS[0], {"blocklistRefreshSeconds": refresh})["blocklist-stale"]
    assert f"let max_age_s = {bound}.0;" in rule["query"].splitlines()
    assert f"older than {bound} s" in rule["description"]
    assert kql.check({"q": rule["query"]})["q"] == []


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_the_alerts_notify_the_action_group_given_and_no_one_otherwise(app: Path) -> None:
    for overrides, groups in (({}, []), ({"alertActionGroupId": ACTION_GROUP}, [ACTION_GROUP])):
        parsed, scope, _ = _module(app, "relayAlerts", overrides)
        assert scope.lookup("actionGroups") == groups
        log_alerts = bicep.one_resource(parsed, "Microsoft.Insights/scheduledQueryRules")
        assert log_alerts["properties"]["actions"] == {"actionGroups": "actionGroups"}
        assert log_alerts["properties"]["scopes"] == ["workspaceId"]
        assert scope.lookup("workspaceId").endswith("/providers/Microsoft.OperationalInsights/workspaces/log-example")


@pytest.mark.parametrize("app", APPS, ids=APP_IDS)
def test_the_automations_failed_runs_alert_exists_exactly_when_the_automation_does(app: Path) -> None:
    parsed, scope, _ = _module(app, "relayAlerts")
    metric = bicep.resources(parsed, "Microsoft.Insights/metricAlerts")["automationRunsFailed"]
    assert scope.eval(metric["condition"]) is False
    parsed, scope, _ = _module(app, "relayAlerts", {"enableDefenderBlocklistAutomation": True, "defenderAlertLocation": "westeurope"})
    assert scope.eval(metric["condition"]) is True
    assert scope.eval(metric["properties"]["scopes"]) == [bicep.EXAMPLE_OUTPUTS["defenderBlocklist.outputs.workflowId"]]
    criterion = metric["properties"]["criteria"]["allOf"][0]
    assert (criterion["metricNamespace"], criterion["metricName"], criterion["operator"], criterion["threshold"]) == (
        "Microsoft.Logic/workflows",
        "RunsFailed",
        "GreaterThan",
        0,
    )


def test_the_alert_rules_wait_for_the_functions_their_queries_call() -> None:
    module = bicep.module_config(bicep.parse_bicep(bicep.MAIN)["modules"]["relayAlerts"])
    assert module["dependsOn"] == ["socPack"]


# ---- the optional Sentinel rule --------------------------------------------------------------------


def test_the_sentinel_rule_is_the_soc_s_to_deploy_not_main_s() -> None:
    used = {target for _, target in bicep.module_paths(bicep.MAIN)}
    assert SENTINEL.resolve() not in used
    assert "RELAY_WORKSPACE_ID" in bicep.parse_bicep(bicep.MAIN)["outputs"]


def test_the_sentinel_rule_joins_alerts_to_the_app_workspace_by_end_user() -> None:
    parsed = bicep.parse_bicep(SENTINEL)
    app_workspace = bicep.EXAMPLE_OUTPUTS["monitoring.outputs.workspaceId"]
    scope = bicep.Evaluator.for_template(
        parsed, {"sentinelWorkspaceName": "log-sentinel", "appWorkspaceId": app_workspace, "appName": "helpdesk"}
    )
    rule = bicep.one_resource(parsed, "Microsoft.SecurityInsights/alertRules")
    assert rule["kind"] == "Scheduled" and rule["scope"] == "sentinelWorkspace"
    query = _text(rule["properties"]["query"], scope, parsed, SENTINEL)
    assert f'workspace("{app_workspace}").AppTraces' in query
    assert kql.check({"q": query})["q"] == []
    mapping = scope.eval(rule["properties"]["entityMappings"])
    assert mapping == [{"entityType": "Account", "fieldMappings": [{"identifier": "AadUserId", "columnName": "oid"}]}]
    assert (scope.eval(rule["properties"]["queryFrequency"]), scope.eval(rule["properties"]["queryPeriod"])) == ("PT1H", "PT3H")


# ---- the type check reads a quoted discriminator (the metric alert's 'odata.type') ------------------


def test_a_wrong_quoted_discriminator_is_reported(tmp_path: Path) -> None:
    source = (bicep.MODULES_DIR / "relay-alerts.bicep").read_text(encoding="utf-8")
    wrong = source.replace(
        "'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'", "'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriterion'"
    )
    assert wrong != source
    probe = tmp_path / "relay-alerts.bicep"
    probe.write_text(wrong, encoding="utf-8")
    problems = [str(p) for p in azure_types.check_template(probe, azure_types.TypeIndex())[0]]
    assert len(problems) == 1, problems
    assert (
        "properties.criteria.odata.type: 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriterion' is not a known odata.type"
        in problems[0]
    )
