"""shared.azure_monitor: the call to Azure OpenAI is a traced dependency whose context is the traceparent sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import context, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from shared.azure_monitor import EXPORT_BATCH_SIZE, AzureMonitor
from shared.lean_envelopes import LeanLogExporter
from shared.logs import UpstreamNotes
from shared.telemetry_config import TelemetrySettings
from tests.support.monitors import CapturingMonitor, in_invocation, invocation_context

# Nothing listens there: these tests export nothing.
SETTINGS = TelemetrySettings(
    connection_string="InstrumentationKey=7e57e000-0000-4000-8000-0000000a1e01;IngestionEndpoint=https://127.0.0.1:9/"
)
INVOCATION = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


@pytest.fixture(autouse=True)
def _no_calls_to_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exporter's statsbeat, SDK stats and remote configuration would call fixed Azure hosts."""
    for name in (
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
    ):
        monkeypatch.setenv(name, "true")


def test_the_traceparent_sent_continues_the_invocations_trace_and_names_the_dependency_span() -> None:
    monitor = CapturingMonitor()
    notes = UpstreamNotes(tracer=monitor)
    with in_invocation(INVOCATION):
        invocation, operation_id = monitor.invocation_context()
        assert operation_id == "0af7651916cd43dd8448eb211c80319c" and invocation is context.get_current()
        with monitor.dependency("POST", "https://aoai.example/openai/v1/chat/completions", notes):
            pass
    [span] = monitor.spans.get_finished_spans()
    assert notes.traceparent is not None and re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", notes.traceparent)
    # The host's sampling decision (flags 00 here) does not drop it: the relay samples every span.
    _, trace_id, span_id, _ = notes.traceparent.split("-")
    assert span.context is not None and span.parent is not None and span.context.trace_flags.sampled
    assert (trace_id, span_id) == ("0af7651916cd43dd8448eb211c80319c", f"{span.context.span_id:016x}")
    assert f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    monitor.shutdown()


def test_without_an_invocation_the_dependency_span_starts_a_trace_of_its_own() -> None:
    monitor = CapturingMonitor()
    first, second = UpstreamNotes(tracer=monitor), UpstreamNotes(tracer=monitor)
    for notes in (first, second):
        with monitor.dependency("POST", "https://aoai.example/openai/v1/chat/completions", notes):
            pass
    spans = monitor.spans.get_finished_spans()
    assert [span.parent for span in spans] == [None, None]
    assert first.traceparent is not None and second.traceparent is not None
    assert first.traceparent.split("-")[1] != second.traceparent.split("-")[1] != "0" * 32
    monitor.shutdown()


def test_without_an_invocation_there_is_no_operation_id() -> None:
    monitor = AzureMonitor(SETTINGS, "contoso", lambda: None)
    assert monitor.invocation_context() == (None, None)
    monitor.shutdown()


def test_a_record_written_after_the_invocation_returned_keeps_the_invocations_trace() -> None:
    """A stream's record is written once the stream ends, where the invocation's context may be gone."""
    monitor = CapturingMonitor()
    written = monitor.logs
    invocation = invocation_context(monitor, INVOCATION)
    monitor.record({"outcome": "ok", "oid": "o-1", "code": None}, 20, invocation)
    [record] = written.get_finished_logs()
    assert f"{record.log_record.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert record.log_record.body == "relay.request" and dict(record.log_record.attributes or {}) == {"outcome": "ok", "oid": "o-1"}
    monitor.shutdown()


def test_without_an_invocation_a_record_joins_the_trace_of_its_call_to_azure() -> None:
    monitor = CapturingMonitor()
    written = monitor.logs
    monitor.record({"outcome": "ok"}, 20, f"00-{'ab' * 16}-{'cd' * 8}-01")
    [record] = written.get_finished_logs()
    assert (f"{record.log_record.trace_id:032x}", f"{record.log_record.span_id:016x}") == ("ab" * 16, "cd" * 8)
    monitor.shutdown()


def test_the_records_leave_in_small_batches_and_the_event_loop_gets_the_gil_back_within_a_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exporter threads hold the GIL while they convert and send: briefly, so that streams are not delayed."""
    batches: list[int] = []

    def export(self: LeanLogExporter, batch: Sequence[Any], **kwargs: Any) -> Any:
        batches.append(len(batch))
        return LogRecordExportResult.SUCCESS

    monkeypatch.setattr(LeanLogExporter, "export", export)
    sys.setswitchinterval(0.005)  # CPython's default (tests/unit/conftest.py puts the process's back)
    monitor = AzureMonitor(SETTINGS, "contoso", lambda: None)
    try:
        assert sys.getswitchinterval() <= 0.001
        for n in range(100):
            monitor.record({"schema": "relay.request/1", "outcome": "ok", "n": n}, logging.INFO)
        assert monitor.force_flush()
        assert sum(batches) == 100 and max(batches) <= EXPORT_BATCH_SIZE <= 32
    finally:
        monitor.shutdown()


def test_the_request_record_is_the_record_the_sdk_logger_would_emit() -> None:
    """The relay skips the SDK logger's per-value checks; what reaches the processor is the same record."""
    monitor = CapturingMonitor()
    fields: dict[str, Any] = {"schema": "relay.request/1", "outcome": "ok", "status": 200, "stream": True, "latency_ms": 12.5, "code": None}
    invocation = invocation_context(monitor, INVOCATION)
    levels = ((logging.INFO, SeverityNumber.INFO), (logging.WARNING, SeverityNumber.WARN), (logging.ERROR, SeverityNumber.ERROR))
    for level, severity in levels:
        monitor.record(fields, level, invocation)
        attributes = {name: value for name, value in fields.items() if value is not None}
        monitor._logger.emit(body="relay.request", attributes=attributes, severity_number=severity, context=invocation)
    records = monitor.logs.get_finished_logs()
    assert len(records) == 6
    for ours, sdks, (_, severity) in zip(records[::2], records[1::2], levels, strict=True):
        assert (ours.resource, ours.instrumentation_scope, repr(ours.limits)) == (sdks.resource, sdks.instrumentation_scope, repr(sdks.limits))
        mine, theirs = ours.log_record, sdks.log_record
        assert dict(mine.attributes or {}) == dict(theirs.attributes or {}) == {k: v for k, v in fields.items() if v is not None}
        assert [(r.body, r.severity_number, r.severity_text, r.trace_id, r.span_id, r.trace_flags, r.timestamp, r.event_name) for r in (mine, theirs)] == [
            ("relay.request", severity, None, 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, theirs.trace_flags, None, None)
        ] * 2
        assert theirs.observed_timestamp <= mine.observed_timestamp + 10**9
    monitor.shutdown()


def span_shape(span: ReadableSpan) -> tuple[Any, ...]:
    """A span without what differs between any two calls: its own id and its times."""
    assert span.context is not None
    return (
        span.name,
        span.kind,
        span.context.trace_id if span.parent is not None else None,
        span.context.trace_flags,
        span.parent,
        span.resource,
        span.instrumentation_scope,
        dict(span.attributes or {}),
        (span.status.status_code, span.status.description),
        span.events,
        span.links,
    )


@pytest.mark.parametrize("ending", ["answered", "failed", "cancelled"])
def test_the_dependency_span_is_the_span_the_sdk_tracer_would_end(ending: str) -> None:
    """The relay builds its span without the tracer's machinery; the processor gets the span the tracer would have ended."""
    monitor = CapturingMonitor()
    url = "https://contoso.openai.azure.com:8443/openai/v1/chat/completions"
    raised = {"answered": None, "failed": TimeoutError("read timed out"), "cancelled": asyncio.CancelledError()}[ending]

    def call(span: Any) -> None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError), span:
            if raised is not None:
                raise raised

    with in_invocation(INVOCATION):
        notes = UpstreamNotes(tracer=monitor, status=200 if ending == "answered" else None, azure_request_id="a9f3c1d2")
        call(monitor.dependency("POST", url, notes))
        attributes: dict[str, Any] = {
            "http.request.method": "POST",
            "url.scheme": "https",
            "server.address": "contoso.openai.azure.com",
            "server.port": 8443,
            "url.full": url,
        }
        attributes.update({"http.response.status_code": 200} if ending == "answered" else {})
        attributes["azure.apim_request_id"] = "a9f3c1d2"
        tracer = monitor._traces.get_tracer("relay")
        call(tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT, attributes=attributes, record_exception=False))
    ours, sdks = monitor.spans.get_finished_spans()
    assert span_shape(ours) == span_shape(sdks)
    assert (ours.status.status_code is StatusCode.ERROR) == (ending == "failed")
    assert ours.start_time is not None and ours.end_time is not None and ours.start_time <= ours.end_time
    monitor.shutdown()


def metric_points(monitor: CapturingMonitor) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Each metric the reader collects now: its points' attributes and value (a histogram's count, sum, min and max)."""
    data = monitor.metrics.get_metrics_data()
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource_metrics in data.resource_metrics if data is not None else []:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = (point.count, point.sum, point.min, point.max) if hasattr(point, "count") else point.value  # type: ignore[union-attr]
                    points.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return {name: sorted(values, key=repr) for name, values in points.items()}


def test_the_counters_report_each_intervals_counts_as_synchronous_counters_would() -> None:
    monitor = CapturingMonitor()
    ok = {"outcome": "ok", "deployment": "gpt-4o-mini", "latency_ms": 20.0, "first_byte_ms": 5.0, "prompt_tokens": 12, "completion_tokens": 40}
    for fields in (ok, ok, {"outcome": "blocked", "latency_ms": 1.0}, {"outcome": "over_budget", "latency_ms": 2.0}):
        monitor.count(fields)
    app, model = {"app": "contoso"}, {"app": "contoso", "deployment": "gpt-4o-mini"}
    first = metric_points(monitor)
    assert first["relay.requests"] == sorted(
        [({**model, "outcome": "ok"}, 2), ({**app, "outcome": "blocked"}, 1), ({**app, "outcome": "over_budget"}, 1)], key=repr
    )
    assert first["relay.tokens"] == [({**model, "kind": "completion"}, 80), ({**model, "kind": "prompt"}, 24)]
    assert first["relay.blocks"] == [(app, 1)] and first["relay.budget_refusals"] == [(app, 1)]
    assert ({**model, "outcome": "ok"}, (2, 40.0, 20.0, 20.0)) in first["relay.latency"]
    # The next interval: only what moved, by how much it moved.
    monitor.count({**ok, "completion_tokens": 7})
    second = metric_points(monitor)
    assert second["relay.requests"] == [({**model, "outcome": "ok"}, 1)]
    assert second["relay.tokens"] == [({**model, "kind": "completion"}, 7), ({**model, "kind": "prompt"}, 12)]
    assert "relay.blocks" not in second and "relay.budget_refusals" not in second
    # An interval where nothing happened has no points.
    assert metric_points(monitor) == {}
    monitor.shutdown()

