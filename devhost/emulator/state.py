"""The emulator's process-wide state, shared by the HTTP and Key Vault apps."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from devhost.emulator.emulator_config import EmulatorConfig
from devhost.emulator.records import RecordStore, Stats, TelemetryStore
from devhost.emulator.responses_store import ResponsesStore
from devhost.emulator.tokens import TokenIssuer
from devhost.emulator.vault import SecretStore


@dataclass
class EmulatorState:
    config: EmulatorConfig
    issuer: TokenIssuer
    api_key: str
    vault: SecretStore
    records: RecordStore = field(default_factory=RecordStore)
    stats: Stats = field(default_factory=Stats)
    responses: ResponsesStore = field(default_factory=ResponsesStore)
    telemetry: TelemetryStore = field(default_factory=TelemetryStore)

    def reset(self) -> None:
        self.records.clear()
        self.stats.reset()
        self.responses.clear()
        self.telemetry.clear()


def get_state(request: Request) -> EmulatorState:
    state = request.app.state.emulator
    assert isinstance(state, EmulatorState)
    return state
