"""Emulator configuration, read once from the environment (see docs/emulators.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devhost import defaults

DEFAULT_TOKEN_LIFETIME_S = 3600


class EmulatorConfigError(ValueError):
    """An EMULATOR_* variable is invalid; the message names it."""


@dataclass(frozen=True)
class EmulatorConfig:
    port: int = defaults.EMULATOR_PORT
    keyvault_port: int = defaults.EMULATOR_PORT + defaults.KEYVAULT_PORT_OFFSET
    ingestion_port: int = defaults.EMULATOR_PORT + defaults.INGESTION_PORT_OFFSET
    deployments: tuple[str, ...] = defaults.DEPLOYMENTS
    identity_header: str = defaults.IDENTITY_HEADER
    api_key: str = defaults.API_KEY
    token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S
    ca_file: Path = defaults.CA_FILE
    keyvault_secrets: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, port: int | None = None) -> EmulatorConfig:
        env = os.environ if environ is None else environ
        port = port if port is not None else _int(env, "EMULATOR_PORT", defaults.EMULATOR_PORT)
        api_key = env.get("EMULATOR_API_KEY") or defaults.API_KEY
        deployments = tuple(d.strip() for d in env.get("EMULATOR_DEPLOYMENTS", "").split(",") if d.strip())
        return cls(
            port=port,
            keyvault_port=_int(env, "EMULATOR_KEYVAULT_PORT", port + defaults.KEYVAULT_PORT_OFFSET),
            ingestion_port=_int(env, "EMULATOR_INGESTION_PORT", port + defaults.INGESTION_PORT_OFFSET),
            deployments=deployments or defaults.DEPLOYMENTS,
            identity_header=env.get("EMULATOR_IDENTITY_HEADER") or defaults.IDENTITY_HEADER,
            api_key=api_key,
            token_lifetime_s=_int(env, "EMULATOR_TOKEN_LIFETIME_S", DEFAULT_TOKEN_LIFETIME_S),
            ca_file=Path(env.get("EMULATOR_CA_FILE") or defaults.CA_FILE),
            keyvault_secrets=_secrets(env, api_key),
        )


# A copy of the idea of shared/config.py's integer reader, on purpose: the emulator stands in for Azure and
# imports nothing of the relay it is tested against (docs/design.md, "Local stand-ins").
def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise EmulatorConfigError(f"{name} must be an integer") from None
    if value <= 0:
        raise EmulatorConfigError(f"{name} must be positive")
    return value


def _secrets(env: Mapping[str, str], api_key: str) -> dict[str, str]:
    raw = env.get("EMULATOR_KEYVAULT_SECRETS", "").strip()
    if not raw:
        return {defaults.KEY_SECRET_NAME: api_key}
    try:
        value = json.loads(raw)
    except ValueError:
        raise EmulatorConfigError("EMULATOR_KEYVAULT_SECRETS must be a JSON object") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise EmulatorConfigError("EMULATOR_KEYVAULT_SECRETS must map secret names to string values")
    return value
