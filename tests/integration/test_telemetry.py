"""The relay's telemetry as Application Insights' ingestion endpoint receives it (the emulator's stand-in).

The real Azure Monitor exporter runs in the relay's process, authenticated with the managed identity
(the identity emulator) over HTTPS; each test flushes the exporters through the dev host's hook and
reads what ingestion accepted, so nothing sleeps and every value is the one that crossed the wire.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from shared.azure_monitor import EXPORT_DELAY_MS
from tests.support.azurite import admin
from tests.support.identities import ADA_OID, ADA_TID, MALLORY_OID
from tests.support.stack import APPLICATION_NAME, Stack, run_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"DEVHOST_TELEMETRY": "on", "RELAY_TELEMETRY_REFUSALS_PER_S": "2", "RELAY_MAX_TOKENS": "100"}
    with run_stack(tmp_path_factory.mktemp("telemetry"), env) as running:
        yield running


@pytest.fixture
def received(stack: Stack) -> Iterator[list[dict[str, Any]]]:
    """What ingestion accepts during the test, filled in by :func:`flush` (the list starts empty)."""
    flush(stack, [])
    stack.emulator("DELETE", "/_emulator/telemetry")
    yield []


def flush(stack: Stack, into: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(f"{stack.base_url}/_dev/telemetry/flush", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204
    into[:] = stack.emulator("GET", "/_emulator/telemetry")


def records(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in envelopes if e["data"]["baseType"] == "MessageData" and e["data"]["baseData"]["message"] == "relay.request"]


def metric_points(envelopes: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Each point of metric ``name``: its dimensions and value (Azure Monitor's MetricData)."""
    points = []
    for envelope in envelopes:
        data = envelope["data"]["baseData"]
        if envelope["data"]["baseType"] == "MetricData" and data["metrics"][0]["name"] == name:
            points.append({**data["metrics"][0], "properties": data.get("properties", {})})
    return points


def sdk(stack: Stack, oid: str = ADA_OID) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api}/v1", api_key=stack.token(oid=oid, tid=ADA_TID), max_retries=0)


def test_a_completions_record_reaches_ingestion_with_the_log_lines_fields_and_joins_azures_ids(
    stack: Stack, received: list[dict[str, Any]]
) -> None:
    sdk(stack).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}], extra_headers={"x-request-id": "tele-1"}
    )
    upstream = stack.requests()[-1]
    line = stack.request_log("tele-1")
    flush(stack, received)

    [record] = [r for r in records(received) if r["data"]["baseData"]["properties"]["client_request_id"] == "tele-1"]
    properties = record["data"]["baseData"]["properties"]
    # The same record as the log line: its non-null fields as custom dimensions, which Application Insights keeps
    # as strings (the exporter writes str(value)), beside the name of the logger that wrote it.
    # (Not the line's own time: the envelope has its time.)
    expected = {name: str(value) for name, value in line.items() if value is not None and name not in ("event", "time")}
    assert properties == {**expected, "logger_name": "relay.request"}
    assert properties["schema"] == "relay.request/1" and properties["app"] == APPLICATION_NAME and properties["oid"] == ADA_OID
    assert properties["outcome"] == "ok" and properties["model"] == "gpt-4o"
    # One id joins the relay's record, Azure's answer and the trace: apim-request-id, x-request-id, traceparent.
    assert properties["azure_request_id"] == upstream["apim_request_id"]
    assert properties["azure_x_request_id"] == upstream["x_request_id"]
    traceparent = upstream["headers"]["traceparent"]
    assert traceparent.split("-")[1] == properties["operation_id"] == record["tags"]["ai.operation.id"]
    assert upstream["headers"]["x-ms-client-request-id"] == properties["request_id"]
    [dependency] = [
        e for e in received if e["data"]["baseType"] == "RemoteDependencyData" and e["tags"]["ai.operation.id"] == properties["operation_id"]
    ]
    assert dependency["data"]["baseData"]["id"] == traceparent.split("-")[2]
    assert dependency["data"]["baseData"]["resultCode"] == "200"
    # Never a prompt, a completion or a token.
    assert "hello" not in json.dumps(received)
    assert "Bearer" not in json.dumps(received)


def test_the_metrics_count_requests_tokens_and_latency_by_app_deployment_and_outcome_never_by_user(
    stack: Stack, received: list[dict[str, Any]]
) -> None:
    for _ in range(2):
        sdk(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "count me"}])
    usage = sdk(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "count me"}]).usage
    assert usage is not None
    flush(stack, received)

    dimensions = {"app": APPLICATION_NAME, "deployment": "gpt-4o-mini"}
    [requests] = metric_points(received, "relay.requests")
    assert (requests["value"], requests["properties"]) == (3, {**dimensions, "outcome": "ok"})
    tokens = {point["properties"]["kind"]: point for point in metric_points(received, "relay.tokens")}
    assert tokens["prompt"]["value"] == 3 * usage.prompt_tokens and tokens["completion"]["value"] == 3 * usage.completion_tokens
    assert tokens["prompt"]["properties"] == {**dimensions, "kind": "prompt"}
    [latency] = metric_points(received, "relay.latency")
    assert latency["count"] == 3 and 0 < latency["min"] <= latency["max"] and latency["properties"] == {**dimensions, "outcome": "ok"}
    assert ADA_OID not in json.dumps([e for e in received if e["data"]["baseType"] == "MetricData"])


def test_a_refusal_storm_is_recorded_at_the_bounded_rate_and_the_next_record_counts_the_rest(
    stack: Stack, received: list[dict[str, Any]]
) -> None:
    """RELAY_TELEMETRY_REFUSALS_PER_S=2 here: of a burst of refusals, a few records and a count of the rest."""
    body = b'{"model": "gpt-4o", "messages": "not a list"}'
    token = stack.token(oid=MALLORY_OID, tid=ADA_TID)
    statuses = []
    for _ in range(8):
        request = urllib.request.Request(
            f"{stack.api}/v1/chat/completions", data=body, method="POST", headers={"Authorization": f"Bearer {token}", "content-type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as refused:
            statuses.append(refused.code)
    sdk(stack, MALLORY_OID).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "and now a good one"}])
    flush(stack, received)

    assert statuses == [400] * 8
    written = [r["data"]["baseData"]["properties"] for r in records(received) if r["data"]["baseData"]["properties"]["oid"] == MALLORY_OID]
    refusals = [p for p in written if p["outcome"] == "refused"]
    successes = [p for p in written if p["outcome"] == "ok"]
    assert len(successes) == 1 and 2 <= len(refusals) < 8
    assert len(refusals) + sum(int(p.get("suppressed", "0")) for p in written) == 8
    # The metrics count every refusal.
    [refused] = [p for p in metric_points(received, "relay.requests") if p["properties"]["outcome"] == "refused"]
    assert refused["value"] == 8


def test_the_page_charts_tokens_and_refusals_per_user(stack: Stack, received: list[dict[str, Any]]) -> None:
    sdk(stack).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "chart me"}])
    flush(stack, received)
    with urllib.request.urlopen(f"{stack.emulator_url}/_emulator/telemetry/page", timeout=5) as response:
        page = response.read().decode()
    [properties] = [r["data"]["baseData"]["properties"] for r in records(received)]
    assert f"<td>{ADA_OID}</td><td>1</td>" in page and f"{properties['total_tokens']}</td>" in page


def test_make_run_says_where_to_look(stack: Stack) -> None:
    assert any(f"telemetry: {stack.emulator_url}/_emulator/telemetry/page" in line for line in stack.log_lines())


def test_the_exporters_retry_files_are_never_written(stack: Stack, tmp_path: Path) -> None:
    """Offline storage is off: the exporter's default folder for the local resource never appears."""
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("Microsoft-AzureMonitor-*/opentelemetry-python-7e57e000-0000-4000-8000-0000000a1e01"))


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    """A local host with the block list and a per-minute token budget on (Azurite), telemetry on."""
    tmp = tmp_path_factory.mktemp("telemetry-controls")
    env = {
        "DEVHOST_TELEMETRY": "on",
        "AZURITE_DIR": str(tmp / "azurite"),
        "RELAY_BLOCKLIST_ENABLED": "true",
        "RELAY_BLOCKLIST_REFRESH_S": "0.5",
        "RELAY_BUDGET_USER_TOKENS_PER_MINUTE": "30",
    }
    with run_stack(tmp, env) as running:
        yield running, tmp / "azurite"


def post_chat(stack: Stack, oid: str) -> int:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Authorization": f"Bearer {stack.token(oid=oid, tid=ADA_TID)}", "content-type": "application/json"}
    request = urllib.request.Request(f"{stack.api}/v1/chat/completions", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_blocks_and_budget_refusals_are_the_controls_decisions_in_records_and_metrics(controlled: tuple[Stack, Path]) -> None:
    from tests.support.azurite import admin

    stack, azurite_dir = controlled
    assert admin(azurite_dir, "block", "--oid", MALLORY_OID, "--reason", "telemetry test", "--ttl", "1h").returncode == 0
    for _ in range(100):  # the block list is re-read every 0.5 s
        if post_chat(stack, MALLORY_OID) == 403:
            break
    else:
        raise AssertionError("the block never took effect")
    received: list[dict[str, Any]] = []
    flush(stack, received)
    stack.emulator("DELETE", "/_emulator/telemetry")

    assert post_chat(stack, MALLORY_OID) == 403
    # Answers of about 21 tokens against 30 a minute, each admitted only with room for its prompt estimate and an
    # output cap: Ada is served, then refused once, within a few requests.
    statuses = [post_chat(stack, ADA_OID)]
    while statuses[-1] == 200 and len(statuses) < 5:
        statuses.append(post_chat(stack, ADA_OID))
    flush(stack, received)

    assert statuses[0] == 200 and statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
    written = {(p["oid"], p["status"]): p for p in (r["data"]["baseData"]["properties"] for r in records(received))}
    blocked = written[(MALLORY_OID, "403")]
    assert (blocked["outcome"], blocked["blocklist"], blocked["code"]) == ("blocked", "blocked", "user_blocked")
    admitted, over = written[(ADA_OID, "200")], written[(ADA_OID, "429")]
    assert (admitted["blocklist"], admitted["budget"]) == ("pass", "admitted")
    assert (over["outcome"], over["budget"], over["code"]) == ("over_budget", "refused", "user_quota_exceeded")
    app = {"app": APPLICATION_NAME}
    assert [(p["value"], p["properties"]) for p in metric_points(received, "relay.blocks")] == [(1, app)]
    assert [(p["value"], p["properties"]) for p in metric_points(received, "relay.budget_refusals")] == [(1, app)]
    [age] = metric_points(received, "relay.blocklist_age")
    assert 0 <= age["value"] <= 5 and age["properties"] == app


def test_a_block_reaches_ingestion_as_an_audit_record_beside_the_block_lists_health_events(tmp_path: Path) -> None:
    env = {"DEVHOST_TELEMETRY": "on", "RELAY_BLOCKLIST_ENABLED": "true", "RELAY_BLOCKLIST_REFRESH_S": "0.5", "AZURITE_DIR": str(tmp_path / "azurite")}
    with run_stack(tmp_path, env) as stack:
        sdk(stack).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])  # the first read
        done = admin(tmp_path / "azurite", "block", "--oid", MALLORY_OID, "--reason", "jailbreak attempts", "--ttl", "1h", "--alert-id", "alert-42")
        assert done.returncode == 0, done.stderr
        received: list[dict[str, Any]] = []

        deadline = time.monotonic() + 15  # a refresh (0.5 s) after the write, on a loaded machine
        while not (audits := [e["data"]["baseData"] for e in received if e["data"]["baseData"].get("message") == "relay.audit"]):
            assert time.monotonic() < deadline, "no relay.audit record reached ingestion"
            time.sleep(0.2)
            flush(stack, received)
        [audit] = audits
    properties = audit["properties"]
    assert {k: properties[k] for k in ("schema", "action", "kind", "target", "reason", "alert_id")} == {
        "schema": "relay.audit/1", "action": "block", "kind": "oid", "target": MALLORY_OID, "reason": "jailbreak attempts", "alert_id": "alert-42",
    }  # fmt: skip
    assert properties["added_by"] and properties["expires_at"]
    messages = {e["data"]["baseData"].get("message") for e in received if e["data"]["baseType"] == "MessageData"}
    assert "blocklist.loaded" in messages  # the control's own events travel the same way
    assert "relay.blocked" not in messages  # per-request events stay in the log line: the record says the same


def test_through_the_functions_worker_a_record_and_its_dependency_arrive_in_the_invocations_trace_and_nothing_else(tmp_path: Path) -> None:
    # The worker's exporters run in the worker's process, out of the dev host's flush hook: their batch
    # processors send on their own schedule, so the test waits for both, then for a few more batches.
    env = {"DEVHOST_TELEMETRY": "on", "DEVHOST_RUNTIME": "worker", "RELAY_MAX_TOKENS": "100"}
    with run_stack(tmp_path, env) as stack:
        sdk(stack).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}], extra_headers={"x-request-id": "tele-worker"}
        )
        traceparent = stack.requests()[-1]["headers"]["traceparent"]
        trace_id, span_id = traceparent.split("-")[1:3]
        deadline = time.monotonic() + 30
        while True:
            received = stack.emulator("GET", "/_emulator/telemetry")
            mine = [e for e in received if e["tags"].get("ai.operation.id") == trace_id]
            kinds = {e["data"]["baseType"] for e in mine}
            if {"MessageData", "RemoteDependencyData"} <= kinds:
                break
            assert time.monotonic() < deadline, f"only {sorted(kinds)} of the request's trace reached ingestion"
            time.sleep(0.5)
        time.sleep(4 * EXPORT_DELAY_MS / 1000)
        received = stack.emulator("GET", "/_emulator/telemetry")
    # The relay's call to Azure and nothing else: the worker serves the call through a FastAPI app of its own,
    # whose native OpenTelemetry would add a request and operation spans for each call (in traces of their own).
    spans = [(e["data"]["baseType"], e["data"]["baseData"]["name"]) for e in received if e["data"]["baseType"] not in ("MessageData", "MetricData")]
    assert spans == [("RemoteDependencyData", "POST /openai/v1/chat/completions")]
    [record] = records(mine)
    assert record["data"]["baseData"]["properties"]["client_request_id"] == "tele-worker"
    assert record["data"]["baseData"]["properties"]["operation_id"] == trace_id
    [dependency] = [e for e in mine if e["data"]["baseType"] == "RemoteDependencyData"]
    assert dependency["data"]["baseData"]["id"] == span_id
    # A child of the invocation the host started (the worker attached its context), not a trace of its own.
    parent = dependency["tags"].get("ai.operation.parentId")
    assert parent and parent != span_id
    assert "hello" not in json.dumps(received)
