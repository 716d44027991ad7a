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

What runs in the request's own thread is kept small (docs/telemetry.md, "What it costs"): the request
record and the dependency span are built as the SDK's own record and span types and handed to the
batch processors, without the SDK logger's per-value check of the record's attributes (its values are
text, numbers and booleans by the record's schema) or the tracer's span machinery (the relay's span
has one fixed shape and nothing runs inside it that would read it as the current span); the counters
are the relay's running totals, reported by observable counters (shared/running_totals.py); and
exemplars are off (the exporter sends none).

Nothing is sampled: the tracer samples every span (Azure Monitor's ingestion sampling is off in host.json).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from azure.identity import ManagedIdentityCredential
from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context, get_current
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.lean_envelopes import LeanLogExporter, LeanTraceExporter
from shared.logs import UpstreamNotes
from shared.running_totals import Attributes, RunningTotals
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
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
# The names the relay's records and its span go under: the SDK logger's and tracer's scopes.
RECORD_SCOPE = "relay.request"
SPAN_SCOPE = "relay"
# Attribute sets cached for the histograms; deployments are the allowed ones and outcomes a fixed set, so a
# few dozen at most (the bound only keeps a misconfiguration from growing it).
_MAX_CACHED_ATTRIBUTE_SETS = 256


class AzureMonitor:
    """The relay's telemetry to Azure Monitor; the keyword arguments replace its batch processors and metric reader (tests)."""

    def __init__(
        self,
        settings: TelemetrySettings,
        app: str,
        blocklist_age: Callable[[], float | None],
        *,
        log_processor: LogRecordProcessor | None = None,
        span_processor: SpanProcessor | None = None,
        metric_reader: MetricReader | None = None,
    ) -> None:
        self._app = app
        self._app_attributes: Attributes = (("app", app),)
        self._blocklist_age = blocklist_age
        exporter_options: dict[str, Any] = {
            "connection_string": settings.connection_string,
            "credential": ManagedIdentityCredential(client_id=settings.client_id),
            "disable_offline_storage": True,
        }
        self._resource = resource = Resource.create({"service.name": settings.role_name})
        self._log_processor = log_processor or BatchLogRecordProcessor(
            LeanLogExporter(**exporter_options), schedule_delay_millis=EXPORT_DELAY_MS, max_export_batch_size=EXPORT_BATCH_SIZE
        )
        self._logs = LoggerProvider(resource=resource)
        self._logs.add_log_record_processor(self._log_processor)
        self._logger = self._logs.get_logger(RECORD_SCOPE)
        self._record_scope = InstrumentationScope(RECORD_SCOPE)
        self._metric_reader = metric_reader or PeriodicExportingMetricReader(
            AzureMonitorMetricExporter(**exporter_options), export_interval_millis=METRIC_EXPORT_INTERVAL_MS
        )
        self._metrics = MeterProvider(metric_readers=[self._metric_reader], resource=resource, exemplar_filter=AlwaysOffExemplarFilter())
        meter = self._metrics.get_meter("relay")
        self._requests, self._tokens, self._budget_refusals, self._blocks = (RunningTotals() for _ in range(4))
        for name, totals, unit, description in (
            ("relay.requests", self._requests, "", "Requests by outcome"),
            ("relay.tokens", self._tokens, "{token}", "Tokens Azure OpenAI counted"),
            ("relay.budget_refusals", self._budget_refusals, "", "Requests refused by a token budget"),
            ("relay.blocks", self._blocks, "", "Requests refused by the block list"),
        ):
            meter.create_observable_counter(name, callbacks=[_reporter(totals)], unit=unit, description=description)
        self._latency = meter.create_histogram("relay.latency", unit="ms", description="Request start to record")
        self._first_byte = meter.create_histogram("relay.first_byte", unit="ms", description="Request start to the first byte of a stream")
        meter.create_observable_gauge(
            "relay.blocklist_age", callbacks=[self._observe_blocklist_age], unit="s", description="Age of this instance's block list copy"
        )
        self._attribute_sets: dict[Attributes, dict[str, str]] = {}
        # The trace exporter is given the relay's tracer provider (for its resource), which is not made the
        # process's global one: the Functions worker serves each call through a FastAPI app of its own
        # (azurefunctions-extensions-http-fastapi), and FastAPI's native OpenTelemetry traces every request
        # and its operations through the global provider once one is set. Those spans would be a second
        # request record for each invocation beside the host's, and cost the worker CPU on every call.
        self._traces = TracerProvider(resource=resource, sampler=ALWAYS_ON)
        self._span_processor = span_processor or BatchSpanProcessor(
            LeanTraceExporter(tracer_provider=self._traces, **exporter_options),
            schedule_delay_millis=EXPORT_DELAY_MS,
            max_export_batch_size=EXPORT_BATCH_SIZE,
        )
        self._traces.add_span_processor(self._span_processor)
        self._span_scope = InstrumentationScope(SPAN_SCOPE, "", "")  # as get_tracer(SPAN_SCOPE) names it
        self._ids = RandomIdGenerator()
        self._propagator = TraceContextTextMapPropagator()
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
        log_record = LogRecord(context=context, severity_number=_SEVERITY.get(level, SeverityNumber.ERROR), body="relay.request")
        writable = ReadWriteLogRecord(log_record, self._resource, self._record_scope)
        log_record.attributes = attributes  # after the SDK's per-value check of attributes, which a record's values need not pass
        self._log_processor.on_emit(writable)

    def event(self, event: str, fields: dict[str, Any], level: int) -> None:
        """Another event (shared.logs.forward_events) as a log record: body the event's name, attributes its fields.

        Attribute values must be primitives: a nested value (the invalid rows of ``blocklist.rows_invalid``) goes as JSON.
        """
        attributes = {name: _attribute(value) for name, value in fields.items() if value is not None}
        self._logger.emit(body=event, attributes=attributes, severity_number=_SEVERITY.get(level, SeverityNumber.ERROR))

    def count(self, fields: dict[str, Any]) -> None:
        """The record's share of the metrics: app, deployment and outcome only, never the user."""
        deployment, outcome = fields.get("deployment"), fields["outcome"]
        app = self._app_attributes
        per_deployment = (*app, ("deployment", deployment)) if deployment else app
        per_outcome = (*per_deployment, ("outcome", outcome))
        self._requests.add(per_outcome, 1)
        self._latency.record(fields["latency_ms"], self._attribute_set(per_outcome))
        if fields.get("first_byte_ms") is not None:
            self._first_byte.record(fields["first_byte_ms"], self._attribute_set(per_deployment))
        for kind in ("prompt", "completion"):
            tokens = fields.get(f"{kind}_tokens")
            if tokens:
                self._tokens.add((*per_deployment, ("kind", kind)), tokens)
        if outcome == "over_budget":
            self._budget_refusals.add(app, 1)
        elif outcome == "blocked":
            self._blocks.add(app, 1)

    def _attribute_set(self, attributes: Attributes) -> dict[str, str]:
        cached = self._attribute_sets.get(attributes)
        if cached is None:
            cached = dict(attributes)
            if len(self._attribute_sets) < _MAX_CACHED_ATTRIBUTE_SETS:
                self._attribute_sets[attributes] = cached
        return cached

    @contextlib.contextmanager
    def dependency(self, method: str, url: str, notes: UpstreamNotes) -> Iterator[None]:
        """The call to Azure as a client span (AppDependencies), its context sent as ``traceparent``.

        Its attributes are OpenTelemetry's HTTP client span's (method, scheme, server address and port,
        URL): the exporter names the dependency ``<method> <path>`` and its target the host, with the
        port when it is not the scheme's default. It is the span the SDK's tracer would end for
        ``start_as_current_span(method, kind=CLIENT, attributes=..., record_exception=False)``: a child
        of the current span (the invocation's) or the root of a new trace, always sampled, its status
        an error when an exception (not a cancellation) ends the call.
        """
        parts = urlsplit(url)
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.scheme": parts.scheme,
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            "url.full": f"{parts.scheme}://{parts.netloc}{parts.path}",
        }
        current = trace.get_current_span().get_span_context()
        parent = current if current.is_valid else None
        trace_id = parent.trace_id if parent is not None else self._ids.generate_trace_id()
        context = SpanContext(trace_id, self._ids.generate_span_id(), is_remote=False, trace_flags=_SAMPLED)
        notes.traceparent = f"00-{trace_id:032x}-{context.span_id:016x}-{int(_SAMPLED):02x}"
        status, start = _UNSET, time.time_ns()
        try:
            yield
        except Exception as error:
            status = Status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
            raise
        finally:
            if notes.status is not None:
                attributes["http.response.status_code"] = notes.status
            if notes.azure_request_id is not None:
                attributes["azure.apim_request_id"] = notes.azure_request_id
            span = ReadableSpan(
                name=method,
                context=context,
                parent=parent,
                resource=self._resource,
                attributes=attributes,
                kind=trace.SpanKind.CLIENT,
                status=status,
                start_time=start,
                end_time=time.time_ns(),
                instrumentation_scope=self._span_scope,
            )
            self._span_processor.on_end(span)

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


def _reporter(totals: RunningTotals) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def report(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(total, attributes) for total, attributes in totals.take_moved()]

    return report


def _attribute(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else json.dumps(value, separators=(",", ":"), default=str)
