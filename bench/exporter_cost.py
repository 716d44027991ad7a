"""``python -m bench.exporter_cost``: the CPU one request's telemetry costs the relay, step by step, in µs per item.

The relay's emit (shared.azure_monitor.AzureMonitor, as in Azure): its request record as a log
record, its share of the metrics, and its call to Azure OpenAI as a client span. Then the
conversion of each log record and span to an Azure Monitor envelope, which the exporters do in
their batch thread: the Azure Monitor exporter's own conversion against the relay's
(shared.lean_envelopes), and the JSON encoding of the envelope as the exporter's client writes the
request body (the same for both). Each step runs ``--items`` times in a loop timed with
``time.process_time``, three times, the least kept; while the emit is timed, the batch processors hold what they are given
(nothing is exported), so the process's CPU is the emit's alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter, AzureMonitorTraceExporter
from azure.monitor.opentelemetry.exporter._generated.exporter._utils.model_base import SdkJSONEncoder
from opentelemetry import context
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.azure_monitor import AzureMonitor
from shared.lean_envelopes import LeanLogExporter, LeanTraceExporter
from shared.logs import UpstreamNotes
from shared.telemetry_config import TelemetrySettings

# Nothing listens there: nothing is sent.
CONNECTION = "InstrumentationKey=7e57e000-0000-4000-8000-0000000a1e01;IngestionEndpoint=https://127.0.0.1:9/"
URL = "https://contoso.openai.azure.com/openai/v1/chat/completions"
INVOCATION = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# A streamed chat completion's record, as the relay writes it (docs/telemetry.md).
RECORD: dict[str, Any] = {
    "schema": "relay.request/1",
    "request_id": "5f0c6a43-1c1e-4c55-9d1a-3d4a1f1e9b01",
    "invocation_id": "c1a4b2f0-7d7e-4f7e-8a3a-9e3f2b1c0d01",
    "app": "contoso",
    "route": "chat",
    "outcome": "ok",
    "status": 200,
    "code": None,
    "oid": "1b2c3d4e-0000-4000-8000-000000000003",
    "tid": "72f988bf-0000-4000-8000-000000000002",
    "source_ip": "203.0.113.9",
    "deployment": "gpt-4o-mini",
    "stream": True,
    "latency_ms": 812.4,
    "first_byte_ms": 231.0,
    "prompt_tokens": 12,
    "completion_tokens": 40,
    "total_tokens": 52,
    "cached_tokens": 0,
    "retries": 0,
    "budget_user_left": 99948,
    "azure_request_id": "a9f3c1d2-0000-4000-8000-00000000a201",
    "azure_x_request_id": "b8e2d0c1-0000-4000-8000-00000000b302",
    "traceparent": INVOCATION,
    "runtime": "worker",
}
# Off: the exporter's statsbeat, SDK stats and remote configuration would call fixed Azure hosts. Held: the
# batch processors export when their queue reaches a batch or their delay ends, so neither happens while timed.
_QUIET = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
}
_HELD = 1_000_000
_RUNS = 3
_Item = TypeVar("_Item")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _per_item_us(items: Sequence[_Item], step: Callable[[_Item], object]) -> float:
    """The least of a few runs: other work on a shared machine only ever adds to a run's CPU time."""
    runs = []
    for _ in range(_RUNS):
        started = time.process_time()
        for item in items:
            step(item)
        runs.append((time.process_time() - started) / len(items) * 1e6)
    return min(runs)


def _per_call_us(count: int, step: Callable[[], object]) -> float:
    return _per_item_us(range(count), lambda _: step())


def _encode(envelope: object) -> str:
    return json.dumps([envelope], cls=SdkJSONEncoder, exclude_readonly=True)


def _monitor(logs: LogRecordProcessor, spans: SpanProcessor) -> AzureMonitor:
    with _environment(_QUIET):
        settings = TelemetrySettings(connection_string=CONNECTION)
        reader = InMemoryMetricReader()
        return AzureMonitor(settings, "contoso", lambda: None, log_processor=logs, span_processor=spans, metric_reader=reader)


def _holding_monitor() -> AzureMonitor:
    """The relay's monitor with batch processors that hold what they are given: the emit's cost, nothing exported while it is timed."""
    logs = BatchLogRecordProcessor(
        InMemoryLogRecordExporter(),  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
        schedule_delay_millis=_HELD,
        max_queue_size=_HELD,
        max_export_batch_size=_HELD,
    )
    spans = BatchSpanProcessor(InMemorySpanExporter(), schedule_delay_millis=_HELD, max_queue_size=_HELD, max_export_batch_size=_HELD)
    return _monitor(logs, spans)


def _call(monitor: AzureMonitor) -> None:
    notes = UpstreamNotes(tracer=monitor)
    with monitor.dependency("POST", URL, notes):
        notes.status, notes.azure_request_id = 200, RECORD["azure_request_id"]


@contextlib.contextmanager
def _in_invocation(monitor: AzureMonitor) -> Iterator[object]:
    token = context.attach(TraceContextTextMapPropagator().extract({"traceparent": INVOCATION}))
    try:
        yield monitor.invocation_context()[0]
    finally:
        context.detach(token)


def _emit(monitor: AzureMonitor, items: int) -> dict[str, float]:
    with _in_invocation(monitor) as invocation:
        return {
            "record_us": _per_call_us(items, lambda: monitor.record(RECORD, logging.INFO, invocation)),
            "metrics_us": _per_call_us(items, lambda: monitor.count(RECORD)),
            "dependency_span_us": _per_call_us(items, lambda: _call(monitor)),
        }


def _conversions(kind: str, items: Sequence[_Item], theirs: Callable[[_Item], object], ours: Callable[[_Item], object]) -> dict[str, float]:
    envelopes = [ours(item) for item in items]
    return {
        f"{kind}_exporter_conversion_us": _per_item_us(items, theirs),
        f"{kind}_lean_conversion_us": _per_item_us(items, ours),
        f"{kind}_json_encoding_us": _per_item_us(envelopes, _encode),
    }


def measure(items: int) -> dict[str, float]:
    """µs per item: the relay's emit, and each conversion to an envelope, the exporter's and the relay's."""
    holding = _holding_monitor()
    try:
        costs = _emit(holding, items)
    finally:
        holding.shutdown()
    logs, spans = InMemoryLogRecordExporter(), InMemorySpanExporter()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
    capturing = _monitor(SimpleLogRecordProcessor(logs), SimpleSpanProcessor(spans))
    try:
        with _in_invocation(capturing) as invocation:
            for _ in range(items):
                capturing.record(RECORD, logging.INFO, invocation)
                _call(capturing)
    finally:
        capturing.shutdown()
    records, calls = logs.get_finished_logs(), spans.get_finished_spans()
    with _environment(_QUIET):
        options: dict[str, Any] = {"connection_string": CONNECTION, "disable_offline_storage": True}
        logs_theirs, logs_ours = AzureMonitorLogExporter(**options), LeanLogExporter(**options)
        spans_theirs, spans_ours = AzureMonitorTraceExporter(**options), LeanTraceExporter(**options)
    costs |= _conversions("log", records, logs_theirs._log_to_envelope, logs_ours._log_to_envelope)
    costs |= _conversions("span", calls, spans_theirs._span_to_envelope, spans_ours._span_to_envelope)
    return costs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.exporter_cost", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=2000, help="items per step (default 2000)")
    costs = measure(parser.parse_args(argv).items)
    print("The relay's emit, per request (CPU µs):")
    for step, label in (("record", "request record"), ("metrics", "metrics"), ("dependency_span", "dependency span")):
        print(f"  {label:34s} {costs[f'{step}_us']:7.1f}")
    print("Conversion to an envelope, per item (the exporter's batch thread, CPU µs):")
    for kind in ("log", "span"):
        exporter, lean = costs[f"{kind}_exporter_conversion_us"], costs[f"{kind}_lean_conversion_us"]
        print(f"  {kind:4s} the exporter's conversion      {exporter:7.1f}")
        print(f"  {kind:4s} the relay's conversion         {lean:7.1f}  ({exporter / lean:.1f}x less)")
        print(f"  {kind:4s} JSON encoding (either)         {costs[f'{kind}_json_encoding_us']:7.1f}")

if __name__ == "__main__":
    main()
