"""The table service's own access log: every write and delete on the relay's tables reaches the Log Analytics workspace.

A block list row's ``AddedBy`` is what its writer claims; the storage account's resource log (category
StorageWrite and StorageDelete, table StorageTableLogs) records who it authenticated
(https://learn.microsoft.com/azure/azure-monitor/reference/supported-logs/microsoft-storage-storageaccounts-tableservices-logs).
"""

from __future__ import annotations

from tests.infra import bicep

MODULE = bicep.MODULES_DIR / "table-access-log.bicep"


def _accessor(node: object) -> list[str]:
    """``a.b.c`` as parsed (nested property accessors) as ["a", "b", "c"]."""
    if isinstance(node, str):
        return [node]
    assert isinstance(node, dict) and node["operator"]["type"] == "property_accessor", node
    operands = node["operator"]["operands"]
    return [*_accessor(operands["operand_1"]), *_accessor(operands["operand_2"])]


def test_every_write_and_delete_on_the_host_storage_tables_goes_to_the_workspace() -> None:
    parsed = bicep.parse_bicep(MODULE)
    [config] = bicep.resources(parsed, "Microsoft.Insights/diagnosticSettings").values()
    assert "condition" not in config, "the access log must not be optional"
    table_service = parsed["resources"][config["scope"]]
    assert (table_service["type"], table_service["existing"], table_service["config"]["name"]) == (
        "Microsoft.Storage/storageAccounts/tableServices",
        True,
        "default",
    )
    account = parsed["resources"][table_service["config"]["parent"]]
    assert (account["type"], account["config"]["name"]) == ("Microsoft.Storage/storageAccounts", "storageAccountName")
    logs = config["properties"]["logs"]
    assert {(log["category"], log["enabled"]) for log in logs} == {("StorageWrite", True), ("StorageDelete", True)}
    assert config["properties"]["workspaceId"] == "workspaceId"


def test_main_sends_the_log_of_the_account_that_holds_the_block_list_to_the_relay_workspace() -> None:
    main = bicep.parse_bicep(bicep.MAIN)
    [wired] = [m for m in main["modules"].values() if m["detail"]["path"] == "modules/table-access-log.bicep"]
    assert "condition" not in wired
    params = wired["config"]["params"]
    tables = [m for m in main["modules"].values() if m["detail"]["path"] == "modules/blocklist-table.bicep"]
    assert _accessor(params["storageAccountName"]) == _accessor(tables[0]["config"]["params"]["storageAccountName"]) == ["storage", "outputs", "name"]
    assert _accessor(params["workspaceId"]) == ["monitoring", "outputs", "workspaceId"]
    assert main["modules"]["monitoring"]["detail"]["path"] == "modules/monitoring.bicep"
