"""The ports a run of the local host will listen on, each with the setting that moves it, checked before anything starts.

A port that is taken stops the run with one line naming the setting to change: the run never starts
beside, or talks to, a process it did not start (another emulator answering on its port, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devhost import defaults
from devhost.ports import port_in_use

_NEARBY = 50


@dataclass(frozen=True)
class PortUse:
    port: int
    what: str
    setting: str  # the environment variable that sets it (make passes it through: `PORT=7081 make run`)
    default_note: str = ""


def read_port(env: Mapping[str, str], name: str, default: int) -> int:
    """``env[name]`` as a port (``default`` when unset); SystemExit naming the setting when it is not one."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise SystemExit(f"{name} must be a port number (1-65535), got {raw!r}")
    return int(raw)


def planned_ports(env: Mapping[str, str], emulators: bool, azurite: bool) -> list[PortUse]:
    """What this run will listen on: the relay, and the emulators and Azurite when it starts them (0: a free port, not checked)."""
    uses = [PortUse(read_port(env, "PORT", defaults.PORT), "the relay", "PORT")]
    if emulators:
        emulator = read_port(env, "EMULATOR_PORT", defaults.EMULATOR_PORT)
        uses.append(PortUse(emulator, "the Azure OpenAI and identity emulators", "EMULATOR_PORT"))
        keyvault = read_port(env, "EMULATOR_KEYVAULT_PORT", emulator + defaults.KEYVAULT_PORT_OFFSET)
        uses.append(PortUse(keyvault, "the Key Vault emulator", "EMULATOR_KEYVAULT_PORT", " (default: EMULATOR_PORT + 1)"))
        ingestion = read_port(env, "EMULATOR_INGESTION_PORT", emulator + defaults.INGESTION_PORT_OFFSET)
        note = f" (default: EMULATOR_PORT + {defaults.INGESTION_PORT_OFFSET})"
        uses.append(PortUse(ingestion, "the Application Insights ingestion emulator", "EMULATOR_INGESTION_PORT", note))
    if azurite:
        uses.append(PortUse(read_port(env, "AZURITE_TABLE_PORT", 0), "Azurite", "AZURITE_TABLE_PORT", " (default: a free port)"))
    return [use for use in uses if use.port]


def port_problems(uses: list[PortUse]) -> list[str]:
    """One line per port that cannot be used: taken by another process, or planned twice."""
    problems: list[str] = []
    taken = {use.port for use in uses}
    for index, use in enumerate(uses):
        twin = next((other for other in uses[:index] if other.port == use.port), None)
        if twin is not None:
            problems.append(f"{twin.setting} and {use.setting}{use.default_note} are both {use.port}: set {use.setting} to another port")
        elif port_in_use(use.port):
            nearby = range(use.port + 1, min(use.port + _NEARBY, 65536))
            spare = next((p for p in nearby if p not in taken and not port_in_use(p)), None)
            example = f", e.g. `{use.setting}={spare} make run`" if spare else ""
            problems.append(
                f"port {use.port} ({use.what}) is in use by another process: stop that process, "
                f"or choose another port with {use.setting}{use.default_note}{example}"
            )
    return problems
