"""shared.azure_monitor: the call to Azure OpenAI is a traced dependency whose context is the traceparent sent."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.azure_monitor import EXPORT_BATCH_SIZE, AzureMonitor
from shared.lean_envelopes import LeanLogExporter
from shared.logs import UpstreamNotes
from shared.telemetry_config import TelemetrySettings

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
    monitor = AzureMonitor(SETTINGS, "contoso", lambda: None)
    notes = UpstreamNotes(tracer=monitor)
    token = context.attach(TraceContextTextMapPropagator().extract({"traceparent": INVOCATION}))
    try:
        invocation, operation_id = monitor.invocation_context()
        assert operation_id == "0af7651916cd43dd8448eb211c80319c" and invocation is context.get_current()
        with monitor.dependency("POST", "https://aoai.example/openai/v1/chat/completions", notes):
            span = trace.get_current_span().get_span_context()
    finally:
        context.detach(token)
    assert notes.traceparent is not None and re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]", notes.traceparent)
    # The host's sampling decision (flags 00 here) does not drop it: the relay samples every span.
    _, trace_id, span_id, _ = notes.traceparent.split("-")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c" and span_id == f"{span.span_id:016x}" and span.trace_flags.sampled
    monitor.shutdown()


def test_without_an_invocation_there_is_no_operation_id() -> None:
    monitor = AzureMonitor(SETTINGS, "contoso", lambda: None)
    assert monitor.invocation_context() == (None, None)
    monitor.shutdown()


def test_a_record_written_after_the_invocation_returned_keeps_the_invocations_trace() -> None:
    """A stream's record is written once the stream ends, where the invocation's context may be gone."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    monitor = AzureMonitor(SETTINGS, "contoso", lambda: None)
    written = InMemoryLogRecordExporter()
    monitor._logs.add_log_record_processor(SimpleLogRecordProcessor(written))
    token = context.attach(TraceContextTextMapPropagator().extract({"traceparent": INVOCATION}))
    try:
        invocation, _ = monitor.invocation_context()
    finally:
        context.detach(token)
    monitor.record({"outcome": "ok", "oid": "o-1", "code": None}, 20, invocation)
    [record] = written.get_finished_logs()
    assert f"{record.log_record.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert record.log_record.body == "relay.request" and dict(record.log_record.attributes or {}) == {"outcome": "ok", "oid": "o-1"}
    monitor.shutdown()


def test_without_an_invocation_a_record_joins_the_trace_of_its_call_to_azure() -> None:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    monitor = AzureMonitor(SETTINGS, "contoso", lambda: None)
    written = InMemoryLogRecordExporter()
    monitor._logs.add_log_record_processor(SimpleLogRecordProcessor(written))
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
