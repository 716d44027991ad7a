"""An AzureMonitor (shared.azure_monitor) whose records and spans are kept in memory as it emits them, for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
from opentelemetry import context
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.azure_monitor import AzureMonitor
from shared.telemetry_config import TelemetrySettings

# Nothing listens there: these monitors export nothing.
CONNECTION = "InstrumentationKey=7e57e000-0000-4000-8000-0000000a1e01;IngestionEndpoint=https://127.0.0.1:9/"


class CapturingMonitor(AzureMonitor):
    def __init__(self, app: str = "contoso") -> None:
        self.logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        self.spans = InMemorySpanExporter()
        # Read as Azure Monitor's metric exporter asks: deltas for counters and histograms.
        exporter = AzureMonitorMetricExporter(connection_string=CONNECTION, disable_offline_storage=True)
        self.metrics = InMemoryMetricReader(preferred_temporality=exporter._preferred_temporality)
        super().__init__(
            TelemetrySettings(connection_string=CONNECTION),
            app,
            lambda: None,
            log_processor=SimpleLogRecordProcessor(self.logs),
            span_processor=SimpleSpanProcessor(self.spans),
            metric_reader=self.metrics,
        )


@contextlib.contextmanager
def in_invocation(traceparent: str) -> Iterator[None]:
    """The block runs in the trace context the Functions worker attaches to an invocation the host sent ``traceparent``."""
    token = context.attach(TraceContextTextMapPropagator().extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)


def invocation_context(monitor: AzureMonitor, traceparent: str) -> object:
    """The context the relay keeps for an invocation's record (AzureMonitor.invocation_context), taken inside it."""
    with in_invocation(traceparent):
        return monitor.invocation_context()[0]
