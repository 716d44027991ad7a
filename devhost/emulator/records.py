"""What the emulator saw: chat and Responses API request records (newest last, bounded), counters and the telemetry it ingested.

Raw tokens and keys never enter a record: the caller passes an already-redacted
auth summary and the headers are filtered here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["completed", "cancelled", "failed", "rejected"]

MAX_RECORDS = 1000
MAX_ENVELOPES = 5000
_SECRET_HEADERS = frozenset({"authorization", "api-key", "cookie", "ocp-apim-subscription-key"})


@dataclass
class Stats:
    token_requests: int = 0
    chat_requests: int = 0
    responses_requests: int = 0
    cancelled_streams: int = 0
    keyvault_requests: int = 0
    keyvault_secret_reads: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def reset(self) -> None:
        for name in self.as_dict():
            setattr(self, name, 0)


@dataclass
class RequestRecord:
    id: int
    path: str
    api_version: str | None
    auth: dict[str, Any]
    headers: dict[str, str]
    received_at: float = field(default_factory=time.time)
    deployment: str | None = None
    body: Any = None
    user_security_context: Any = None
    stream: bool = False
    # The usage billed for the answer once generation began (None when the request was refused or cancelled first).
    usage: dict[str, int] | None = None
    status: int | None = None
    outcome: Outcome | None = None
    finished_at: float | None = None
    # The ids the emulator answered with (``apim-request-id``, ``x-request-id``), for tests to join records on.
    apim_request_id: str | None = None
    x_request_id: str | None = None

    def finish(self, status: int | None, outcome: Outcome) -> None:
        """``status`` is what the client was sent (None when no response was)."""
        self.status = status
        self.outcome = outcome
        self.finished_at = time.time()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RecordStore:
    def __init__(self, limit: int = MAX_RECORDS) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self._next_id = 1

    def add(
        self,
        path: str,
        api_version: str | None,
        auth: dict[str, Any],
        headers: Mapping[str, str],
    ) -> RequestRecord:
        safe_headers = {k.lower(): v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
        record = RequestRecord(
            id=self._next_id,
            path=path,
            api_version=api_version,
            auth=auth,
            headers=safe_headers,
        )
        self._next_id += 1
        self._records.append(record)
        return record

    def as_list(self) -> list[dict[str, Any]]:
        return [record.as_dict() for record in self._records]

    def clear(self) -> None:
        self._records.clear()


class TelemetryStore:
    """The telemetry envelopes the ingestion endpoint accepted, oldest first, bounded."""

    def __init__(self) -> None:
        self._envelopes: deque[dict[str, Any]] = deque(maxlen=MAX_ENVELOPES)

    def add(self, envelopes: list[dict[str, Any]]) -> None:
        self._envelopes.extend(envelopes)

    def as_list(self) -> list[dict[str, Any]]:
        return list(self._envelopes)

    def clear(self) -> None:
        self._envelopes.clear()
