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
from dataclasses import dataclass, field
from typing import Any

request_logger = logging.getLogger("relay.request")
# Client libraries that log every HTTP call at INFO: their lines would break "one line per request".
_CHATTY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity")
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
# The innermost frames of a failure's traceback that its log line names, so that the line stays short.
_TRACE_FRAMES = 6
# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def quiet_client_loggers() -> None:
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Write ``{"time": <ISO 8601 UTC, ms>, "event": event, **fields}`` as one JSON line."""
    if logger.isEnabledFor(level):
        logger.log(level, _ENCODER.encode({"time": utc_timestamp(), "event": event, **fields}))


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

    def emit(self, status: int, code: str | None = None) -> None:
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "route": self.route,
            "oid": self.oid,
            "tid": self.tid,
            "home_tid": self.home_tid,
            "source_ip": self.source_ip,
            "deployment": self.deployment,
            "stream": self.stream,
            "status": status,
            "code": code,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
        }
        if self.usage:
            fields.update({name: value for name in _USAGE_FIELDS if isinstance(value := self.usage.get(name), int)})
        log_event(request_logger, logging.WARNING if status >= 500 else logging.INFO, "relay.request", **fields)
