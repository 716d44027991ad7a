"""Relay processes sharing one Azurite and one Azure OpenAI emulator, as Flex Consumption instances share one storage account.

Each relay is ``python -m devhost`` on its own port (its own App Service front end and Easy Auth, so each
mints its own dev tokens), pointed at the same emulator, managed identity endpoint and Azurite.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.azurite import Azurite
from tests.support.emulator import IDENTITY_HEADER, Emulator
from tests.support.servers import free_port, run_python_module
from tests.support.stack import APPLICATION_NAME, DEPLOYMENTS, Stack


@dataclass
class Relays:
    stacks: list[Stack]
    azurite: Azurite
    emulator: Emulator

    def tokens(self, oid: str) -> list[str]:
        return [stack.token(oid=oid) for stack in self.stacks]

    def events(self, name: str) -> list[list[dict[str, Any]]]:
        """Each relay's log lines of event ``name``, in order."""
        return [[json.loads(line) for line in stack.log_lines() if line.startswith("{") and f'"event":"{name}"' in line] for stack in self.stacks]


def start_relay(started: contextlib.ExitStack, emulator: Emulator, azurite: Azurite, state_dir: Path, env: Mapping[str, str]) -> Stack:
    """One relay on a free port with the shared emulator and Azurite and ``env`` (the controls' settings); stopped with ``started``."""
    port = free_port()
    full_env = {
        "PORT": str(port),
        "AZURE_OPENAI_ENDPOINT": emulator.base,
        "IDENTITY_ENDPOINT": emulator.identity_endpoint,
        "IDENTITY_HEADER": IDENTITY_HEADER,
        "AZURE_OPENAI_DEPLOYMENTS": DEPLOYMENTS,
        "APPLICATION_NAME": APPLICATION_NAME,
        "RELAY_TABLE_ENDPOINT": azurite.tables.endpoint,
        "SSL_CERT_FILE": azurite.tables.ca_file,
        **env,
    }
    log_path = state_dir / f"relay-{port}.log"
    base = f"http://127.0.0.1:{port}"
    started.enter_context(run_python_module("devhost", env=full_env, ready_url=f"{base}/api/healthz", log_path=log_path))
    return Stack(base, emulator.base, log_path)
