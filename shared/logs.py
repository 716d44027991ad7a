"""The relay's structured log lines: one JSON object per line, one line per request.

Identity, deployment, status, latency and token counts only: never prompts,
completions, tokens or keys. Every line is built by :func:`log_event`, which
JSON-encodes all values (non-ASCII escaped), so a hostile header or message
cannot break a line in two or forge a field; an unexpected failure is written by
:func:`log_failure` the same way, never by ``logging.exception`` (whose traceback
would span many lines).
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

request_logger = logging.getLogger("relay.request")
# Client libraries that log every HTTP call at INFO: their lines would break "one line per request".
# Per-call chatter of the SDKs the relay uses, at INFO: each line would be an RpcLog message to the host (through the
# Functions worker) or a log line, per call to Azure or per batch the exporter sends ("Transmission succeeded").
_CHATTY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "azure.monitor.opentelemetry.exporter")
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
# The request record's schema (docs/telemetry.md): its name and version, in every record.
RECORD_SCHEMA = "relay.request/1"
# Error codes whose refusal Azure OpenAI decided, not the relay (docs/design.md, "Errors").
_UPSTREAM_CODES = frozenset({"upstream_error", "upstream_timeout", "rate_limited", "content_filter"})
_CLIENT_GONE_CODES = frozenset({"client_closed_request", "caller_stalled"})
# The innermost frames of a failure's traceback that its log line names, so that the line stays short.
_TRACE_FRAMES = 6
# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


# The Functions worker library's own logger. Per invocation it logs three lines at INFO ("Received HTTP request for
# invocation ...", "Function name: ...", "Sending HTTP response for invocation ..."): three RpcLog messages a request,
# which the host files as the worker's system logs, under host.json's "default" level (Warning here), while it logs
# each invocation's start and end itself. Its warnings and errors still go, and PYTHON_ENABLE_DEBUG_LOGGING (the
# platform's switch for the worker's debug logs) leaves it as it is.
_WORKER_LIBRARY_LOGGER = "azure.functions"


def quiet_client_loggers(env: Mapping[str, str] = os.environ) -> None:
    debugging_the_worker = env.get("PYTHON_ENABLE_DEBUG_LOGGING", "").strip().lower() in ("1", "true")
    for name in _CHATTY_LOGGERS if debugging_the_worker else (*_CHATTY_LOGGERS, _WORKER_LIBRARY_LOGGER):
        logging.getLogger(name).setLevel(logging.WARNING)


EventSink = Callable[[str, dict[str, Any], int], None]
# Events that also go to Azure Monitor (docs/telemetry.md, "Other events"): the health of the controls, the
# block list's changes and the relay's own failures. Per-request events (relay.blocked, budget.usage_estimated)
# stay in the log line: the request's record already says what they say, and a refusal storm must not bill.
_FORWARDED = (
    "blocklist.", "budget.sync_", "budget.load_failed", "relay.audit",
    "relay.unhandled", "relay.credential_error", "relay.upstream_auth_rejected", "relay.seal_key_invalid",
)  # fmt: skip
_event_sink: EventSink | None = None


def forward_events(sink: EventSink | None) -> None:
    """Send the forwarded events to ``sink`` as well as to the log (None: the log only). One per process, like the exporter."""
    global _event_sink
    _event_sink = sink


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Write ``{"time": <ISO 8601 UTC, ms>, "event": event, **fields}`` as one JSON line."""
    if logger.isEnabledFor(level):
        logger.log(level, _ENCODER.encode({"time": utc_timestamp(), "event": event, **fields}))
    if _event_sink is not None and event.startswith(_FORWARDED):
        _event_sink(event, fields, level)


def utc_timestamp(now: float | None = None) -> str:
    """``now`` (default: the current time) as ISO 8601 in UTC to the millisecond, e.g. ``2026-12-07T05:40:01.250Z``."""
    seconds = time.time() if now is None else now
    whole = int(seconds)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{int((seconds - whole) * 1000):03d}Z"


def log_failure(logger: logging.Logger, event: str, error: BaseException, **fields: Any) -> None:
    """Write an unexpected failure as one JSON line at ERROR: its type and where it was raised.

    The exception's message is left out: it can quote what the relay was handling (a prompt,
    an upstream answer, a header), and a log line never holds those. ``trace`` names the
    innermost frames, innermost first, as ``module.py:line function``.
    """
    frames = traceback.extract_tb(error.__traceback__)[-_TRACE_FRAMES:]
    trace = " < ".join(f"{os.path.basename(frame.filename)}:{frame.lineno} {frame.name}" for frame in reversed(frames))
    log_event(logger, logging.ERROR, event, **fields, error_type=type(error).__qualname__, trace=trace)


def request_outcome(status: int, code: str | None) -> str:
    """The record's ``outcome``: what happened to the request, in one word of the schema."""
    if status < 400:
        return "ok"
    if code == "user_blocked":
        return "blocked"
    if code == "user_quota_exceeded":
        return "over_budget"
    if code in _CLIENT_GONE_CODES:
        return "client_gone"
    if code in _UPSTREAM_CODES:
        return "upstream_error"
    return "refused" if status < 500 else "error"


class RecordSink(Protocol):
    """Where a finished request record goes (shared/telemetry.py): the log line, and Azure Monitor when configured."""

    def write(self, fields: dict[str, Any], level: int, trace_context: object = None) -> None: ...


class DependencyTracer(Protocol):
    """Traces the call to Azure OpenAI (shared/azure_monitor.py); sets ``notes.traceparent`` for the call."""

    def dependency(self, method: str, url: str, notes: UpstreamNotes) -> AbstractContextManager[None]: ...


@dataclass
class UpstreamNotes:
    """What the relay sent to and heard from Azure OpenAI for one request (kept in its record)."""

    tracer: DependencyTracer | None = None
    # The W3C trace context sent as ``traceparent`` (null when telemetry is off).
    traceparent: str | None = None
    retries: int = 0
    # The status of Azure's last answer.
    status: int | None = None
    # Azure's ``apim-request-id`` (its diagnostic logs' ``correlationId``) and ``x-request-id`` response headers.
    azure_request_id: str | None = None
    azure_x_request_id: str | None = None


@dataclass
class RequestLog:
    """What the request's log line will say; :meth:`emit` writes it once the status is known."""

    request_id: str
    route: str
    # The caller's own x-request-id, when it sent a sane one: kept, but never the key (callers choose it).
    client_request_id: str | None = None
    started: float = field(default_factory=time.perf_counter)
    oid: str | None = None
    tid: str | None = None
    home_tid: str | None = None
    source_ip: str | None = None
    deployment: str | None = None
    stream: bool | None = None
    usage: dict[str, Any] | None = None
    app: str | None = None
    model: str | None = None
    usage_estimated: bool | None = None
    first_byte_ms: float | None = None
    # "pass", "blocked" or "unavailable" when the block list is on; "admitted" or "refused" when budgets are.
    blocklist: str | None = None
    budget: str | None = None
    operation_id: str | None = None
    # The invocation's OpenTelemetry context, kept for the record: a stream's record is written after the
    # invocation returned its response, where that context may no longer be the current one.
    # (An opaque object here: shared/azure_monitor.py reads it.)
    trace_context: object = None
    upstream: UpstreamNotes = field(default_factory=UpstreamNotes)
    sink: RecordSink | None = None

    def mark_first_byte(self) -> None:
        """The first byte of the answer is on its way to the caller (kept once)."""
        if self.first_byte_ms is None:
            self.first_byte_ms = round((time.perf_counter() - self.started) * 1000, 2)

    def emit(self, status: int, code: str | None = None) -> None:
        fields = self.fields(status, code)
        level = logging.WARNING if status >= 500 else logging.INFO
        if self.sink is not None:
            # Without an invocation's context (the local worker shell), the record joins the trace of its call to Azure.
            self.sink.write(fields, level, self.trace_context or self.upstream.traceparent)
        else:
            log_event(request_logger, level, "relay.request", **fields)

    def fields(self, status: int, code: str | None = None) -> dict[str, Any]:
        """The record under its schema (docs/telemetry.md); null fields are kept here and dropped by Azure Monitor's sink."""
        fields: dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "route": self.route,
            "app": self.app,
            "oid": self.oid,
            "tid": self.tid,
            "home_tid": self.home_tid,
            "source_ip": self.source_ip,
            "deployment": self.deployment,
            "model": self.model,
            "stream": self.stream,
            "status": status,
            "outcome": request_outcome(status, code),
            "code": code,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
            "first_byte_ms": self.first_byte_ms,
            "retries": self.upstream.retries,
            "blocklist": _blocklist_decision(self.blocklist, code),
            "budget": "refused" if code == "user_quota_exceeded" else self.budget,
            "azure_request_id": self.upstream.azure_request_id,
            "azure_x_request_id": self.upstream.azure_x_request_id,
            "operation_id": self.operation_id or _trace_id(self.upstream.traceparent),
        }
        if self.usage:
            fields.update({name: value for name in _USAGE_FIELDS if isinstance(value := self.usage.get(name), int)})
            fields["cached_tokens"] = _detail(self.usage, "prompt_tokens_details", "cached_tokens")
            fields["reasoning_tokens"] = _detail(self.usage, "completion_tokens_details", "reasoning_tokens")
        if self.usage_estimated:
            fields["usage_estimated"] = True
        return fields


def _blocklist_decision(checked: str | None, code: str | None) -> str | None:
    if code == "user_blocked":
        return "blocked"
    if code == "blocklist_unavailable":
        return "unavailable"
    return checked


def _trace_id(traceparent: str | None) -> str | None:
    """The trace-id of a W3C ``traceparent`` (``00-<trace-id>-<parent-id>-<flags>``)."""
    return traceparent[3:35] if traceparent else None


def _detail(usage: dict[str, Any], details: str, name: str) -> int | None:
    part = usage.get(details)
    value = part.get(name) if isinstance(part, dict) else None
    return value if isinstance(value, int) else None
