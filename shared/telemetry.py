"""Where the request records go: the JSON log line always, Azure Monitor when Application Insights is configured.

One record, two sinks (docs/telemetry.md). The log line is written for every request. Azure Monitor,
which bills by the volume ingested, gets refusals (``refused``, ``blocked``, ``over_budget``) at most
``RELAY_TELEMETRY_REFUSALS_PER_S`` a second per instance; the next record it gets says how many were
left out (``suppressed``), so that a refusal storm cannot run up the workspace's bill without limit.
Other records are never dropped, and the metrics count every request.

Without ``APPLICATIONINSIGHTS_CONNECTION_STRING`` neither the OpenTelemetry SDK nor the Azure Monitor
exporter is imported (cold start): their set-up lives in :mod:`shared.azure_monitor`, imported only when
it is configured. (The OpenTelemetry API is imported either way: FastAPI imports it.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.logs import UpstreamNotes, forward_events, log_event, request_logger
from shared.telemetry_config import TelemetrySettings, telemetry_settings

if TYPE_CHECKING:
    from shared.azure_monitor import AzureMonitor

_REFUSALS = frozenset({"refused", "blocked", "over_budget"})


class RefusalGate:
    """At most ``per_second`` refusal records a second; counts those left out until the next one written."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_second = per_second
        self._clock = clock
        self._second = -1
        self._written = 0
        self.left_out = 0

    def admit(self, outcome: str) -> bool:
        if outcome not in _REFUSALS:
            return True
        second = int(self._clock())
        if second != self._second:
            self._second, self._written = second, 0
        if self._written >= self._per_second:
            self.left_out += 1
            return False
        self._written += 1
        return True

    def take_left_out(self) -> int:
        left_out, self.left_out = self.left_out, 0
        return left_out


class Telemetry:
    """The relay's record sink (shared.logs.RecordSink) and, when configured, its Azure Monitor exporter."""

    def __init__(self, settings: TelemetrySettings, app: str, azure_monitor: AzureMonitor | None = None) -> None:
        self.settings = settings
        self.app = app
        self.azure_monitor = azure_monitor
        self._gate = RefusalGate(settings.refusals_per_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str], app: str, blocklist_age: Callable[[], float | None]) -> Telemetry:
        settings = telemetry_settings(env)
        if settings.connection_string is None:
            return cls(settings, app)
        from shared.azure_monitor import AzureMonitor

        azure_monitor = AzureMonitor(settings, app, blocklist_age)
        forward_events(azure_monitor.event)
        return cls(settings, app, azure_monitor)

    def upstream_notes(self) -> UpstreamNotes:
        """A request's notes on its call to Azure OpenAI, traced when Azure Monitor is on."""
        return UpstreamNotes(tracer=self.azure_monitor)

    def invocation_context(self) -> tuple[object, str | None]:
        """The current trace context (the Functions worker attaches the invocation's) and its trace id, if any."""
        return self.azure_monitor.invocation_context() if self.azure_monitor is not None else (None, None)

    def write(self, fields: dict[str, Any], level: int, trace_context: object = None) -> None:
        log_event(request_logger, level, "relay.request", **fields)
        if self.azure_monitor is None:
            return
        self.azure_monitor.count(fields)
        if not self._gate.admit(fields["outcome"]):
            return
        left_out = self._gate.take_left_out()
        self.azure_monitor.record({**fields, "suppressed": left_out} if left_out else fields, level, trace_context)

    def force_flush(self) -> bool:
        """Send what the exporters hold now (tests, the dev host's flush hook); True when there was nothing to do or it went."""
        return self.azure_monitor.force_flush() if self.azure_monitor is not None else True

