"""shared.telemetry: one record to the log line and Azure Monitor; refusals to Azure Monitor at a bounded rate; no SDK when off."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from shared.telemetry import RefusalGate, Telemetry
from shared.telemetry_config import TelemetrySettings

if TYPE_CHECKING:
    from shared.azure_monitor import AzureMonitor

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refusals_past_the_rate_are_left_out_and_counted_and_successes_never_are() -> None:
    clock = Clock()
    gate = RefusalGate(2, clock)
    assert [gate.admit("refused") for _ in range(5)] == [True, True, False, False, False]
    assert gate.admit("ok") and gate.admit("upstream_error") and gate.admit("client_gone")
    assert not gate.admit("blocked") and not gate.admit("over_budget")
    assert gate.take_left_out() == 5 and gate.take_left_out() == 0
    clock.now += 1
    assert gate.admit("refused")


class Monitor:
    """Azure Monitor's side of :class:`Telemetry`, as what it was handed."""

    def __init__(self) -> None:
        self.counted: list[dict[str, Any]] = []
        self.recorded: list[dict[str, Any]] = []

    def count(self, fields: dict[str, Any]) -> None:
        self.counted.append(fields)

    def record(self, fields: dict[str, Any], level: int, trace_context: object = None) -> None:
        self.recorded.append(fields)


def test_after_a_storm_azure_monitors_next_record_says_how_many_were_left_out_and_the_log_has_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = Monitor()
    telemetry = Telemetry(TelemetrySettings(refusals_per_s=1), "contoso", cast("AzureMonitor", monitor))
    with caplog.at_level(logging.INFO, logger="relay.request"):
        for _ in range(4):
            telemetry.write({"outcome": "refused", "status": 400}, logging.INFO)
        telemetry.write({"outcome": "ok", "status": 200}, logging.INFO)
    logged = [json.loads(record.getMessage()) for record in caplog.records]
    assert [line["outcome"] for line in logged] == ["refused"] * 4 + ["ok"] and not any("suppressed" in line for line in logged)
    assert [(fields["outcome"], fields.get("suppressed")) for fields in monitor.recorded] == [("refused", None), ("ok", 3)]
    assert len(monitor.counted) == 5


def _modules_after_a_request(env: dict[str, str]) -> list[str]:
    """The OpenTelemetry SDK and Azure Monitor modules a fresh process holds after a request's record is written.

    The OpenTelemetry API is there either way: FastAPI imports it (``fastapi.telemetry``).
    """
    script = (
        "import sys, function_app\n"
        "from shared.logs import RequestLog\n"
        "record = function_app.relay._new_record(type('R', (), {'headers': {}})(), 'models')\n"
        "record.emit(200)\n"
        "import json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'azure.monitor', 'shared.azure_monitor')))))\n"
    )
    base = {"AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com", "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o", "APPLICATION_NAME": "contoso"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60, check=True)
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return modules


def test_without_application_insights_neither_the_sdk_nor_the_exporter_is_imported() -> None:
    assert _modules_after_a_request({}) == []


def test_with_application_insights_the_exporter_is_set_up() -> None:
    connection = "InstrumentationKey=7e57e000-0000-4000-8000-0000000a1e01;IngestionEndpoint=https://127.0.0.1:9/"
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": connection, "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"}
    modules = _modules_after_a_request(env)
    assert "azure.monitor.opentelemetry.exporter" in modules and "opentelemetry.sdk.trace" in modules
