"""The relay's OpenTelemetry pipeline to Azure Monitor: request records, metrics and the Azure OpenAI dependency.

Imported only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (shared/telemetry.py). It uses the
Azure Monitor exporter and the OpenTelemetry SDK directly, not the ``azure-monitor-opentelemetry``
distro: the distro's ``configure_azure_monitor`` imports and enables its bundled instrumentations
(Django, Flask, FastAPI, requests, urllib, ...), which the relay does not need and would pay for at
cold start. The Functions worker's own set-up (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``,
azure_functions_runtime/otel.py) calls that distro without a credential, so with local
authentication off on Application Insights its telemetry would be refused; the relay instead sets
``PYTHON_ENABLE_OPENTELEMETRY`` (the worker attaches each invocation's trace context and tells the host
it exports its own logs, so the host does not forward them a second time) and authenticates its
exporters with the function app's managed identity ("Microsoft Entra authentication for Application
Insights", https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication; the token's
scope is the exporter's own, ``https://monitor.azure.com//.default``, or the connection string's
``AADAudience``).

Offline storage is off: the exporter's retry files would keep records that hold object IDs and IP
addresses on the instance's disk, outside the workspace's retention and access control. During an
ingestion outage the records are lost to Azure Monitor; the log line still has them.

The log and trace exporters are the Azure Monitor exporter's with a cheaper conversion of the relay's
own records to envelopes, sending the same JSON (shared/lean_envelopes.py).

Nothing is sampled: the tracer samples every span (Azure Monitor's ingestion sampling is off in host.json).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from azure.identity import ManagedIdentityCredential
from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context, get_current
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.lean_envelopes import LeanLogExporter, LeanTraceExporter
from shared.logs import UpstreamNotes
from shared.telemetry_config import TelemetrySettings

# Azure Monitor's standard metrics are per minute; the relay's are exported at that pace.
METRIC_EXPORT_INTERVAL_MS = 60_000
# The exporters convert and send in their own threads, holding the GIL while they do. Batches of
# OpenTelemetry's defaults (512 records, every 1 s for logs and 5 s for spans) held it long enough to
# delay the event loop's streams by tens of milliseconds at the instance's knee; small batches sent
# often, and a short switch interval (CPython's default is 5 ms), keep each hold short
# (docs/performance.md, "Capacity through the worker against the platform floor").
EXPORT_BATCH_SIZE = 32
EXPORT_DELAY_MS = 200
SWITCH_INTERVAL_S = 0.0005
_FLUSH_TIMEOUT_MS = 10_000
_SEVERITY = {logging.INFO: SeverityNumber.INFO, logging.WARNING: SeverityNumber.WARN}


class AzureMonitor:
    def __init__(self, settings: TelemetrySettings, app: str, blocklist_age: Callable[[], float | None]) -> None:
        self._app = app
        self._blocklist_age = blocklist_age
        exporter_options: dict[str, Any] = {
            "connection_string": settings.connection_string,
            "credential": ManagedIdentityCredential(client_id=settings.client_id),
            "disable_offline_storage": True,
        }
        resource = Resource.create({"service.name": settings.role_name})
        self._logs = LoggerProvider(resource=resource)
        self._logs.add_log_record_processor(
            BatchLogRecordProcessor(
                LeanLogExporter(**exporter_options), schedule_delay_millis=EXPORT_DELAY_MS, max_export_batch_size=EXPORT_BATCH_SIZE
            )
        )
        self._logger = self._logs.get_logger("relay.request")
        self._metric_reader = PeriodicExportingMetricReader(
            AzureMonitorMetricExporter(**exporter_options), export_interval_millis=METRIC_EXPORT_INTERVAL_MS
        )
        self._metrics = MeterProvider(metric_readers=[self._metric_reader], resource=resource)
        meter = self._metrics.get_meter("relay")
        self._requests = meter.create_counter("relay.requests", description="Requests by outcome")
        self._tokens = meter.create_counter("relay.tokens", unit="{token}", description="Tokens Azure OpenAI counted")
        self._latency = meter.create_histogram("relay.latency", unit="ms", description="Request start to record")
        self._first_byte = meter.create_histogram("relay.first_byte", unit="ms", description="Request start to the first byte of a stream")
        self._budget_refusals = meter.create_counter("relay.budget_refusals", description="Requests refused by a token budget")
        self._blocks = meter.create_counter("relay.blocks", description="Requests refused by the block list")
        meter.create_observable_gauge(
            "relay.blocklist_age", callbacks=[self._observe_blocklist_age], unit="s", description="Age of this instance's block list copy"
        )
        self._traces = TracerProvider(resource=resource, sampler=ALWAYS_ON)
        self._traces.add_span_processor(
            BatchSpanProcessor(
                LeanTraceExporter(**exporter_options), schedule_delay_millis=EXPORT_DELAY_MS, max_export_batch_size=EXPORT_BATCH_SIZE
            )
        )
        self._tracer = self._traces.get_tracer("relay")
        self._propagator = TraceContextTextMapPropagator()
        # The trace exporter reads the process's tracer provider for its resource; the relay's is the one.
        trace.set_tracer_provider(self._traces)
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    def invocation_context(self) -> tuple[Context | None, str | None]:
        span = trace.get_current_span().get_span_context()
        return (get_current(), f"{span.trace_id:032x}") if span.is_valid else (None, None)

    def record(self, fields: dict[str, Any], level: int, trace_context: object = None) -> None:
        """The request record as a log record in the invocation's trace: body ``relay.request``, the non-null fields as attributes.

        ``trace_context`` is the invocation's context, or the traceparent sent to Azure, or None (the current context).
        """
        attributes = {name: value for name, value in fields.items() if value is not None}
        if isinstance(trace_context, str):  # a W3C traceparent: the call to Azure's, when there was no invocation context
            trace_context = self._propagator.extract({"traceparent": trace_context})
        context = trace_context if isinstance(trace_context, Context) else None
        severity = _SEVERITY.get(level, SeverityNumber.ERROR)
        self._logger.emit(body="relay.request", attributes=attributes, severity_number=severity, context=context)

    def event(self, event: str, fields: dict[str, Any], level: int) -> None:
        """Another event (shared.logs.forward_events) as a log record: body the event's name, attributes its fields.

        Attribute values must be primitives: a nested value (the invalid rows of ``blocklist.rows_invalid``) goes as JSON.
        """
        attributes = {name: _attribute(value) for name, value in fields.items() if value is not None}
        self._logger.emit(body=event, attributes=attributes, severity_number=_SEVERITY.get(level, SeverityNumber.ERROR))

    def count(self, fields: dict[str, Any]) -> None:
        """The record's share of the metrics: app, deployment and outcome only, never the user."""
        app, deployment, outcome = {"app": self._app}, fields.get("deployment"), fields["outcome"]
        per_deployment = {**app, "deployment": deployment} if deployment else app
        self._requests.add(1, {**per_deployment, "outcome": outcome})
        self._latency.record(fields["latency_ms"], {**per_deployment, "outcome": outcome})
        if fields.get("first_byte_ms") is not None:
            self._first_byte.record(fields["first_byte_ms"], per_deployment)
        for kind in ("prompt", "completion"):
            tokens = fields.get(f"{kind}_tokens")
            if tokens:
                self._tokens.add(tokens, {**per_deployment, "kind": kind})
        if outcome == "over_budget":
            self._budget_refusals.add(1, app)
        elif outcome == "blocked":
            self._blocks.add(1, app)

    @contextlib.contextmanager
    def dependency(self, method: str, url: str, notes: UpstreamNotes) -> Iterator[None]:
        """The call to Azure as a client span (AppDependencies), its context sent as ``traceparent``.

        Its attributes are OpenTelemetry's HTTP client span's (method, scheme, server address and port,
        URL): the exporter names the dependency ``<method> <path>`` and its target the host, with the
        port when it is not the scheme's default.
        """
        parts = urlsplit(url)
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.scheme": parts.scheme,
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            "url.full": f"{parts.scheme}://{parts.netloc}{parts.path}",
        }
        with self._tracer.start_as_current_span(method, kind=trace.SpanKind.CLIENT, attributes=attributes, record_exception=False) as span:
            context = span.get_span_context()
            notes.traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
            try:
                yield
            finally:
                if notes.status is not None:
                    span.set_attribute("http.response.status_code", notes.status)
                if notes.azure_request_id is not None:
                    span.set_attribute("azure.apim_request_id", notes.azure_request_id)

    def force_flush(self) -> bool:
        flushed = [
            self._traces.force_flush(_FLUSH_TIMEOUT_MS),
            self._logs.force_flush(_FLUSH_TIMEOUT_MS),
            self._metrics.force_flush(_FLUSH_TIMEOUT_MS),
        ]
        return all(flushed)

    def shutdown(self) -> None:
        self._traces.shutdown()
        self._logs.shutdown()
        self._metrics.shutdown()

    def _observe_blocklist_age(self, options: CallbackOptions) -> list[Observation]:
        age = self._blocklist_age()
        return [] if age is None else [Observation(round(age, 1), {"app": self._app})]


def _attribute(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else json.dumps(value, separators=(",", ":"), default=str)
