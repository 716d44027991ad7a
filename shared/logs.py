"""One structured log line per request (DEVELOPERS "Logs").

Identity, deployment, status, latency and token counts only: never prompts,
completions, tokens or keys. Values are JSON-encoded, so a hostile header
cannot forge a log line.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("relay.request")
# Client libraries that log every HTTP call at INFO: their lines would break "one line per request".
_CHATTY_LOGGERS = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity")


def quiet_client_loggers() -> None:
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class RequestLog:
    request_id: str
    route: str
    started: float = field(default_factory=time.perf_counter)
    oid: str | None = None
    tid: str | None = None
    source_ip: str | None = None
    deployment: str | None = None
    stream: bool | None = None
    status: int | None = None
    code: str | None = None
    usage: dict[str, Any] | None = None

    def emit(self, status: int, code: str | None = None) -> None:
        self.status = status
        self.code = code
        record: dict[str, Any] = {
            "event": "relay.request",
            "request_id": self.request_id,
            "route": self.route,
            "oid": self.oid,
            "tid": self.tid,
            "source_ip": self.source_ip,
            "deployment": self.deployment,
            "stream": self.stream,
            "status": status,
            "code": code,
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 2),
        }
        if self.usage:
            for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
                value = self.usage.get(name)
                if isinstance(value, int):
                    record[name] = value
        level = logging.WARNING if status >= 500 else logging.INFO
        logger.log(level, json.dumps(record, separators=(",", ":")))
