"""shared.lean_envelopes: the relay's records reach Azure Monitor as the exporter's own conversion would send them.

Each record is one the relay emits (through shared.azure_monitor.AzureMonitor), converted twice: by the
Azure Monitor exporter's conversion and by the relay's. The two envelopes must serialize to the same
request body, byte for byte, as the exporter's client serializes it for the track call; and they must
read the same to what the exporter does with envelopes besides sending them (the offline-storage copy,
SDK stats' telemetry type and success flag).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter, AzureMonitorTraceExporter
from azure.monitor.opentelemetry.exporter._generated.exporter._utils.model_base import SdkJSONEncoder
from azure.monitor.opentelemetry.exporter._generated.exporter.models import TelemetryItem
from azure.monitor.opentelemetry.exporter._utils import _get_telemetry_type
from azure.monitor.opentelemetry.exporter.statsbeat.customer._utils import _get_telemetry_success_flag
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.lean_envelopes import LeanLogExporter, LeanTraceExporter
from shared.logs import UpstreamNotes
from tests.support.monitors import CONNECTION, CapturingMonitor, in_invocation, invocation_context

INVOCATION = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
OID = "1b2c3d4e-0000-4000-8000-000000000003"
# The exporter's limits: a property value is cut at 8192 characters, a key longer than 150 dropped, a message cut at 32768.
LONG = "é" * 8191 + "xyz"
LONG_KEY = "k" * 151

REQUEST = {
    "schema": "relay.request/1",
    "request_id": "5f0c6a43-1c1e-4c55-9d1a-3d4a1f1e9b01",
    "invocation_id": "c1a4b2f0-7d7e-4f7e-8a3a-9e3f2b1c0d01",
    "client_request_id": "tele-1",
    "app": "contoso",
    "route": "chat",
    "outcome": "ok",
    "status": 200,
    "code": None,
    "oid": OID,
    "tid": "72f988bf-0000-4000-8000-000000000002",
    "source_ip": "203.0.113.9",
    "deployment": "gpt-4o-mini",
    "stream": True,
    "latency_ms": 123.4,
    "first_byte_ms": 45.0,
    "prompt_tokens": 12,
    "completion_tokens": 40,
    "total_tokens": 52,
    "cached_tokens": 0,
    "retries": 0,
    "budget_user_left": -1,
    "azure_request_id": "a9f3c1d2-0000-4000-8000-00000000a201",
    "traceparent": INVOCATION,
    "runtime": "worker",
    "suppressed": 3,
}


@pytest.fixture(autouse=True)
def _no_calls_to_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's statsbeat, SDK stats and remote configuration would call fixed Azure hosts."""
    for name in ("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "APPLICATIONINSIGHTS_SDKSTATS_DISABLED", "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED"):
        monkeypatch.setenv(name, "true")


@pytest.fixture
def monitor() -> Iterator[CapturingMonitor]:
    monitor = CapturingMonitor()
    yield monitor
    monitor.shutdown()


def emitted_logs(monitor: CapturingMonitor) -> InMemoryLogRecordExporter:
    monitor.logs.clear()
    return monitor.logs


def emitted_spans(monitor: CapturingMonitor) -> InMemorySpanExporter:
    monitor.spans.clear()
    return monitor.spans


def body(envelope: TelemetryItem) -> str:
    """The envelope as the exporter's client writes it into the track request's body."""
    return json.dumps([envelope], cls=SdkJSONEncoder, exclude_readonly=True)


def assert_sent_alike(ours: TelemetryItem, theirs: TelemetryItem) -> None:
    assert body(ours) == body(theirs)
    assert json.dumps(ours.as_dict()) == json.dumps(theirs.as_dict())  # what offline storage would keep
    assert _get_telemetry_type(ours) == _get_telemetry_type(theirs)
    assert _get_telemetry_success_flag(ours) == _get_telemetry_success_flag(theirs)


def log_envelopes(record: ReadableLogRecord) -> tuple[TelemetryItem | None, TelemetryItem]:
    """The relay's conversion (None where it leaves the record to the exporter's) and the exporter's."""
    ours = LeanLogExporter(connection_string=CONNECTION, disable_offline_storage=True)
    theirs = AzureMonitorLogExporter(connection_string=CONNECTION, disable_offline_storage=True)
    lean = ours._message_envelope(record)
    assert_sent_alike(ours._log_to_envelope(record), theirs._log_to_envelope(record))
    return lean, theirs._log_to_envelope(record)


def span_envelopes(span: ReadableSpan) -> tuple[TelemetryItem | None, TelemetryItem]:
    ours = LeanTraceExporter(connection_string=CONNECTION, disable_offline_storage=True)
    theirs = AzureMonitorTraceExporter(connection_string=CONNECTION, disable_offline_storage=True)
    lean = ours._dependency_envelope(span)
    assert_sent_alike(ours._span_to_envelope(span), theirs._span_to_envelope(span))
    return lean, theirs._span_to_envelope(span)


def relay_records(monitor: CapturingMonitor) -> list[ReadableLogRecord]:
    written = emitted_logs(monitor)
    monitor.record(REQUEST, logging.INFO, invocation_context(monitor, INVOCATION))
    monitor.record({**REQUEST, "outcome": "upstream_error", "status": 502, "code": "upstream_error"}, logging.ERROR, INVOCATION)
    monitor.record({"schema": "relay.request/1", "outcome": "over_budget", "status": 429, "oid": OID}, logging.WARNING)
    monitor.record({**REQUEST, "client_request_id": LONG, "deployment": "gpt-4o-mini-日本", "note": "ünïcødé ✓ 🙂"}, logging.INFO)
    monitor.record({**REQUEST, "client_request_id": LONG[:8192], LONG_KEY: "dropped", "k" * 150: "kept"}, logging.INFO)
    monitor.record({"schema": "relay.request/1", "ratio": 1e300, "tiny": -0.0, "flag": False, "big": 2**63, "empty": ""}, logging.INFO)
    monitor.event("relay.audit", {"schema": "relay.audit/1", "action": "block", "kind": "oid", "target": OID, "reason": "jailbreak"}, logging.INFO)
    monitor.event("blocklist.rows_invalid", {"rows": [{"PartitionKey": "oid", "RowKey": "x", "why": "not a GUID"}], "count": 1}, logging.WARNING)
    monitor.event("budget.sync_failed", {"error": "TimeoutError", "detail": None}, logging.ERROR)
    monitor.event("  ", {}, logging.CRITICAL)
    monitor.event("x" * 40_000, {"left": 1}, logging.INFO)
    return list(written.get_finished_logs())


def test_every_record_the_relay_writes_is_sent_as_the_exporter_would_send_it(monitor: CapturingMonitor) -> None:
    records = relay_records(monitor)
    assert len(records) == 11
    for record in records:
        lean, theirs = log_envelopes(record)
        assert lean is not None, f"{record.log_record.body!r} left to the exporter's conversion"
        assert body(lean) == body(theirs)


def test_the_comparison_sees_a_tag_or_a_property_that_differs(monitor: CapturingMonitor) -> None:
    [record] = relay_records(monitor)[:1]
    lean, theirs = log_envelopes(record)
    assert lean is not None and lean.tags is not None and lean.data is not None and lean.data.base_data is not None
    del lean.tags["ai.operation.parentId"]
    assert body(lean) != body(theirs)
    lean, _ = log_envelopes(record)
    assert lean is not None and lean.data is not None and lean.data.base_data is not None
    lean.data.base_data.properties["status"] = "201"  # type: ignore[attr-defined]
    assert body(lean) != body(theirs)


def test_the_records_operation_and_parent_are_the_invocations(monitor: CapturingMonitor) -> None:
    [record] = relay_records(monitor)[:1]
    lean, _ = log_envelopes(record)
    assert lean is not None and lean.tags is not None
    assert (lean.tags["ai.operation.id"], lean.tags["ai.operation.parentId"]) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert json.loads(body(lean))[0]["data"]["baseData"]["properties"]["status"] == "200"


@pytest.mark.parametrize(
    "attributes",
    [
        {"exception.type": "ValueError", "exception.message": "bad"},
        {"microsoft.custom_event.name": "signed_in"},
        {"client.address": "203.0.113.9"},
        {"enduser.id": OID},
        {"ai.operation.name": "chat"},
        {"user_agent.original": "AlwaysOn"},
        {"microsoft.custom_measurements": '{"tokens": 3}'},
    ],
)
def test_a_record_the_exporter_maps_beyond_properties_is_left_to_its_conversion(monitor: CapturingMonitor, attributes: dict[str, str]) -> None:
    written = emitted_logs(monitor)
    monitor._logger.emit(body="relay.request", attributes={"outcome": "ok", **attributes}, severity_number=SeverityNumber.INFO)
    [record] = written.get_finished_logs()
    lean, _ = log_envelopes(record)
    assert lean is None


def test_a_record_whose_body_is_not_text_is_left_to_the_exporters_conversion(monitor: CapturingMonitor) -> None:
    written = emitted_logs(monitor)
    monitor._logger.emit(body={"event": "relay.request"}, attributes={"outcome": "ok"}, severity_number=SeverityNumber.INFO)
    [record] = written.get_finished_logs()
    assert log_envelopes(record)[0] is None


def dependency_spans(monitor: CapturingMonitor) -> list[ReadableSpan]:
    written = emitted_spans(monitor)
    cases: list[tuple[str, int | None, str | None]] = [
        ("https://contoso.openai.azure.com/openai/v1/chat/completions", 200, "a9f3c1d2-0000-4000-8000-00000000a201"),
        ("https://contoso.openai.azure.com/openai/v1/chat/completions", 429, None),
        ("https://contoso.openai.azure.com:8443/openai/v1/chat/completions", 500, "ü-日本"),
        ("http://127.0.0.1:8081/openai/v1/chat/completions", None, None),
    ]
    for url, status, azure_request_id in cases:
        notes = UpstreamNotes(tracer=monitor)
        with monitor.dependency("POST", url, notes):
            notes.status, notes.azure_request_id = status, azure_request_id
    with in_invocation(INVOCATION):
        with monitor.dependency("GET", "https://contoso.openai.azure.com/api/projects/p/openai/v1/responses/resp_1", UpstreamNotes(tracer=monitor)):
            pass
        with pytest.raises(TimeoutError), monitor.dependency("POST", "https://contoso.openai.azure.com/" + "p" * 9000, UpstreamNotes(tracer=monitor)):
            raise TimeoutError
    return list(written.get_finished_spans())


def test_every_call_to_azure_openai_is_sent_as_the_exporter_would_send_it(monitor: CapturingMonitor) -> None:
    spans = dependency_spans(monitor)
    assert len(spans) == 6
    for span in spans:
        lean, theirs = span_envelopes(span)
        assert lean is not None, f"{span.name} {dict(span.attributes or {})} left to the exporter's conversion"
        assert body(lean) == body(theirs)
    parented = json.loads(body(span_envelopes(spans[4])[1]))[0]
    assert parented["tags"]["ai.operation.parentId"] == "b7ad6b7169203331"
    # Named by the call's own method and path; the target is the host, with its port only when not the scheme's.
    assert parented["data"]["baseData"]["name"] == "GET /api/projects/p/openai/v1/responses/resp_1"
    targets = [json.loads(body(span_envelopes(span)[1]))[0]["data"]["baseData"]["target"] for span in spans[:4]]
    assert targets == ["contoso.openai.azure.com", "contoso.openai.azure.com", "contoso.openai.azure.com:8443", "127.0.0.1:8081"]
    failed = json.loads(body(span_envelopes(spans[5])[1]))[0]["data"]["baseData"]
    assert failed["success"] is False and failed["resultCode"] == "0" and len(failed["data"]) == 8192


def test_a_span_of_another_shape_is_left_to_the_exporters_conversion(monitor: CapturingMonitor) -> None:
    written = emitted_spans(monitor)
    tracer = monitor._traces.get_tracer("relay")
    with tracer.start_as_current_span("handle", kind=trace.SpanKind.SERVER, attributes={"http.request.method": "POST"}):
        pass
    with tracer.start_as_current_span("query", kind=trace.SpanKind.CLIENT, attributes={"db.system.name": "postgresql"}):
        pass
    attributes = {"http.request.method": "POST", "url.full": "https://contoso.openai.azure.com/x", "http.request.resend_count": 1}
    with tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT, attributes=attributes):
        pass
    spans = written.get_finished_spans()
    assert len(spans) == 3
    for span in spans:
        assert span_envelopes(span)[0] is None
