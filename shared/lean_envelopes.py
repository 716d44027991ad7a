"""The Azure Monitor exporters with a cheaper conversion of the relay's own records to envelopes.

The exporter's conversion of one log record or span to its ``TelemetryItem`` envelope goes
through the generated models' constructors and setters (each value serialized and deserialized
again on the way in) and costs about as much CPU as the relay spends on the whole request
(docs/telemetry.md, "What it costs"). For the shapes the relay emits, these subclasses fill the
same models' data directly, in the order and with the values the exporter's conversion gives
them, so the body sent to the ingestion endpoint is the same JSON byte for byte
(tests/unit/test_lean_envelopes.py holds them to that). Any other shape (an exception, a custom
event, an attribute the exporter maps to a tag, a span of another kind) goes through the
exporter's own conversion. Sending, authentication, retries, statsbeat and SDK stats stay the
exporter's: they read the envelopes through the models' attributes, which these still are.
"""

from __future__ import annotations

import datetime
from typing import Any, TypeVar, cast

from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter, AzureMonitorTraceExporter, _utils
from azure.monitor.opentelemetry.exporter._constants import (
    _DEFAULT_LOG_MESSAGE,
    _EXPORTER_DOMAIN_SCHEMA_VERSION,
    _GEN_AI_ATTRIBUTES,
    _MESSAGE_ENVELOPE_NAME,
    _REMOTE_DEPENDENCY_ENVELOPE_NAME,
)
from azure.monitor.opentelemetry.exporter._generated.exporter.models import (
    ContextTagKeys,
    MessageData,
    MonitorBase,
    RemoteDependencyData,
    TelemetryItem,
)
from azure.monitor.opentelemetry.exporter.export.logs._exporter import _IGNORED_ATTRS, _get_severity_level
from azure.monitor.opentelemetry.exporter.export.trace._exporter import _is_standard_attribute
from azure.monitor.opentelemetry.exporter.export.trace._utils import _get_target_and_path_for_http_dependency
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

# Attributes the exporter's log conversion does more with than copy into properties (an exception,
# event or availability record, a user or session tag, a synthetic-source or location tag, the
# operation name, custom measurements, the longer limit of the GenAI attributes).
_LOG_SPECIAL = _IGNORED_ATTRS | {
    "ai.operation.name",
    "client.address",
    "http.client_ip",
    "net.peer.ip",
    "user_agent.original",
    "user_agent.synthetic.type",
    "http.user_agent",
    *_GEN_AI_ATTRIBUTES,
}
# The attributes of the relay's call to Azure OpenAI (shared.azure_monitor.AzureMonitor.dependency).
_DEPENDENCY_ATTRIBUTES = frozenset(
    ("http.request.method", "url.scheme", "server.address", "server.port", "url.full", "http.response.status_code", "azure.apim_request_id")
)
_PROPERTY_KEY_MAX = 150
_PROPERTY_VALUE_MAX = 8 * 1024
_MESSAGE_MAX = 32768

_Model = TypeVar("_Model", TelemetryItem, MonitorBase, MessageData, RemoteDependencyData)


class LeanLogExporter(AzureMonitorLogExporter):
    """The log exporter, converting the relay's message records itself."""

    _part_a: tuple[Resource | None, dict[str, str]] = (None, {})

    def _log_to_envelope(self, readable_log_record: ReadableLogRecord) -> TelemetryItem:
        envelope = self._message_envelope(readable_log_record)
        return envelope if envelope is not None else super()._log_to_envelope(readable_log_record)

    def _message_envelope(self, readable: ReadableLogRecord) -> TelemetryItem | None:
        record = readable.log_record
        body = record.body
        if body is not None and not isinstance(body, str):
            return None
        properties: dict[str, str] = {}
        for key, value in (record.attributes or {}).items():
            if key in _LOG_SPECIAL:
                return None
            if key and len(key) <= _PROPERTY_KEY_MAX and value is not None:
                properties[key] = str(value)[:_PROPERTY_VALUE_MAX]
        scope = readable.instrumentation_scope
        if scope is not None and scope.name is not None:
            properties.setdefault("logger_name", str(scope.name))
        tags = _context_tags(self, readable.resource)
        tags[ContextTagKeys.AI_OPERATION_ID] = f"{record.trace_id or 0:032x}"
        tags[ContextTagKeys.AI_OPERATION_PARENT_ID] = f"{record.span_id or 0:016x}"
        timestamp = record.timestamp if record.timestamp is not None else record.observed_timestamp
        if timestamp is None:
            return None
        message = _model(
            MessageData,
            {
                "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
                "message": (body or "")[:_MESSAGE_MAX].strip() or _DEFAULT_LOG_MESSAGE,
                "severityLevel": _get_severity_level(record.severity_number),
                "properties": properties,
                "measurements": {},
                "kind": "MessageData",
            },
        )
        return _envelope(self, _MESSAGE_ENVELOPE_NAME, tags, timestamp, message, "MessageData")


class LeanTraceExporter(AzureMonitorTraceExporter):
    """The trace exporter, converting the relay's dependency span itself."""

    _part_a: tuple[Resource | None, dict[str, str]] = (None, {})

    def _span_to_envelope(self, span: ReadableSpan) -> TelemetryItem:
        envelope = self._dependency_envelope(span)
        return envelope if envelope is not None else super()._span_to_envelope(span)

    def _dependency_envelope(self, span: ReadableSpan) -> TelemetryItem | None:
        attributes = span.attributes or {}
        scope = span.instrumentation_scope
        url, method = attributes.get("url.full"), attributes.get("http.request.method")
        if (
            span.kind is not SpanKind.CLIENT
            or span.links
            or span.context is None
            or not _DEPENDENCY_ATTRIBUTES.issuperset(attributes)
            or not isinstance(url, str)
            or not isinstance(method, str)
            or (scope is not None and scope.name.startswith(("azure", "opentelemetry.instrumentation.")))
        ):
            return None
        start, end = span.start_time or 0, span.end_time
        tags = _context_tags(self, span.resource)
        tags[ContextTagKeys.AI_OPERATION_ID] = f"{span.context.trace_id:032x}"
        if span.parent is not None and span.parent.span_id:
            tags[ContextTagKeys.AI_OPERATION_PARENT_ID] = f"{span.parent.span_id:016x}"
        target, path = _get_target_and_path_for_http_dependency(attributes, url)
        name = f"{method} {path}"
        tags[ContextTagKeys.AI_OPERATION_NAME] = name
        status = attributes.get("http.response.status_code")
        try:
            status_code = int(status) if status else 0  # type: ignore[arg-type]
        except ValueError:
            status_code = 0
        data: dict[str, Any] = {
            "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
            "name": name[:1024],
            "id": f"{span.context.span_id:016x}",
            "resultCode": str(status_code)[:1024],
            "duration": _utils.ns_to_duration(end - start if end and start else 0),
            "success": span.status.is_ok,
            "properties": {key: str(value)[:_PROPERTY_VALUE_MAX] for key, value in attributes.items() if not _is_standard_attribute(key)},
            "measurements": {},
            "kind": "RemoteDependencyData",
            "type": "HTTP",
        }
        if url:
            data["data"] = url[:8192]
        if target:
            data["target"] = str(target)[:1024]
        dependency = _model(RemoteDependencyData, data)
        return _envelope(self, _REMOTE_DEPENDENCY_ENVELOPE_NAME, tags, start, dependency, "RemoteDependencyData")


def _context_tags(exporter: LeanLogExporter | LeanTraceExporter, resource: Resource) -> dict[str, str]:
    """The tags every envelope starts with: the process's (SDK version, device) then the resource's (cloud role)."""
    cached, part_a = exporter._part_a
    if cached is not resource:
        part_a = _utils._populate_part_a_fields(resource)
        exporter._part_a = (resource, part_a)
    return {**cast("dict[str, str]", _utils.azure_monitor_context), **part_a}


def _envelope(
    exporter: LeanLogExporter | LeanTraceExporter,
    name: str,
    tags: dict[str, str],
    timestamp: int,
    base_data: MessageData | RemoteDependencyData,
    base_type: str,
) -> TelemetryItem:
    envelope: dict[str, Any] = {"name": name}
    if exporter._instrumentation_key is not None:
        envelope["iKey"] = exporter._instrumentation_key
    envelope["tags"] = tags
    # As the model serializes a datetime (RFC 3339, UTC as "Z").
    envelope["time"] = datetime.datetime.fromtimestamp(timestamp / 1e9, tz=datetime.UTC).isoformat().replace("+00:00", "Z")
    envelope["data"] = _model(MonitorBase, {"baseData": base_data, "baseType": base_type})
    return _model(TelemetryItem, envelope)


def _model(cls: type[_Model], data: dict[str, Any]) -> _Model:
    """A generated model holding ``data`` (keyed by wire names, values as serialized), without its constructor's per-field conversion."""
    model = cls.__new__(cls)  # computes the class's field table once, as the constructor does
    model._data = data
    return model
