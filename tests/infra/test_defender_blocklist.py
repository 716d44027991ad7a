"""The optional Defender for Cloud -> Logic App -> block list module: what the workflow writes is a row the relay reads.

The workflow runs only in Azure; here its definition is checked against the row schema the
relay and the admin command share (shared/blocklist.py, docs/blocklist.md): the partition
each entity goes to, the properties of the row, the identity it writes with, and that the
Logic App's role is on the block list table alone.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.blocklist import KINDS, BlockEntry, row_for
from tests.infra import bicep

WORKFLOW = json.loads((bicep.MODULES_DIR / "defender-blocklist-workflow.json").read_text(encoding="utf-8"))
MODULE = bicep.parse_bicep(bicep.MODULES_DIR / "defender-blocklist-automation.bicep")
# The properties of a row, as the admin command writes them.
ROW_PROPERTIES = set(row_for(BlockEntry("oid", "x", "x", "r", "a", None, None, "alert"))) - {"PartitionKey", "RowKey"} | {"AddedAt", "ExpiresAt"}


def dotted(node: Any) -> str:
    """``a.b.c`` for a parsed property access (pycep nests them as operators)."""
    if isinstance(node, str):
        return node
    operands = node["operator"]["operands"]
    return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"


def table_writes() -> dict[str, dict[str, Any]]:
    """The workflow's HTTP actions, by the entity field whose value they block."""
    writes = {}
    for loop in WORKFLOW["actions"].values():
        for action in loop.get("actions", {}).values():
            if action["type"] == "Http":
                field = "AadUserId" if "AadUserId" in action["inputs"]["body"]["Value"] else "Address"
                writes[field] = action["inputs"]
    return writes


def test_each_alert_entity_goes_to_its_partition_as_a_row_the_relay_reads() -> None:
    writes = table_writes()
    assert set(writes) == {"AadUserId", "Address"}
    for field, partition in (("AadUserId", "oid"), ("Address", "ip")):
        inputs = writes[field]
        assert partition in KINDS
        assert inputs["method"] == "PUT"  # Insert Or Replace Entity
        assert re.match(rf"^@{{parameters\('tableUrl'\)}}\(PartitionKey='{partition}',RowKey='@{{encodeUriComponent\(", inputs["uri"])
        body = inputs["body"]
        assert {name for name in body if "@" not in name} == ROW_PROPERTIES
        assert body["AddedAt@odata.type"] == body["ExpiresAt@odata.type"] == "Edm.DateTime"
        assert "parameters('blockHours')" in body["ExpiresAt"]
        assert "outputs('Alert')?['id']" in body["AlertId"]
        assert inputs["authentication"] == {"type": "ManagedServiceIdentity", "audience": "https://storage.azure.com/"}
        assert inputs["headers"]["x-ms-version"] >= "2017-11-09"  # the first version that accepts Entra tokens


def test_the_logic_app_may_write_the_block_list_table_and_nothing_else() -> None:
    resources = MODULE["resources"]
    [role] = [r for r in resources.values() if r["type"] == "Microsoft.Authorization/roleAssignments"]
    assert dotted(role["config"]["scope"]) == "blocklistTable"
    assert dotted(role["config"]["properties"]["principalId"]) == "workflow.identity.principalId"
    assert resources["workflow"]["config"]["identity"] == {"type": "SystemAssigned"}


def test_the_automation_takes_ai_alerts_to_the_logic_app() -> None:
    automation = MODULE["resources"]["automation"]["config"]["properties"]
    [source] = automation["sources"]
    assert source["eventSource"] == "Alerts"
    assert source["ruleSets"] == [{"rules": [{"propertyJPath": "AlertType", "propertyType": "String", "expectedValue": "AI.", "operator": "StartsWith"}]}]
    [action] = automation["actions"]
    assert action["actionType"] == "LogicApp" and dotted(action["logicAppResourceId"]) == "workflow.id"
