"""Separate stacks for the reliability suite, each with the settings its faults need.

- ``stack``: the local host with the emulator, a short upstream timeout so that a
  stalled upstream costs little, and the resource probe (tests.support.probe);
- ``proxied``: the same relay pointed at Azure OpenAI through a FaultProxy, for
  faults below HTTP (connection refused, TCP reset, a silent upstream);
- ``load_stack``: a production-like timeout for load and soak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from tests.reliability.common import RELAY_TIMEOUT_S, Proxied
from tests.support.faultproxy import fault_proxy
from tests.support.probe import run_probed_stack
from tests.support.servers import free_port, run_python_module
from tests.support.stack import Stack

IDENTITY_HEADER = "reliability-identity-header"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"RELAY_UPSTREAM_TIMEOUT_S": str(RELAY_TIMEOUT_S), "RELAY_MAX_BODY_BYTES": "65536"}
    with run_probed_stack(tmp_path_factory.mktemp("faults"), env) as running:
        yield running


@pytest.fixture(scope="session")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    tmp = tmp_path_factory.mktemp("proxied")
    emulator_port = free_port()
    emulator_env = {
        "EMULATOR_KEYVAULT_PORT": str(free_port()),
        "EMULATOR_CA_FILE": str(tmp / "ca.pem"),
        "EMULATOR_IDENTITY_HEADER": IDENTITY_HEADER,
    }
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    with (
        run_python_module(
            "devhost.emulator", ["--port", str(emulator_port)], emulator_env, f"{emulator_url}/_emulator/healthz", tmp / "emulator.log"
        ),
        fault_proxy(emulator_port, free_port()) as proxy,
    ):
        relay_env = {
            "AZURE_OPENAI_ENDPOINT": proxy.url,
            "IDENTITY_ENDPOINT": f"{emulator_url}/msi/token",
            "IDENTITY_HEADER": IDENTITY_HEADER,
            "RELAY_UPSTREAM_TIMEOUT_S": str(RELAY_TIMEOUT_S),
        }
        with run_probed_stack(tmp, relay_env) as running:
            yield Proxied(dataclasses.replace(running, emulator_url=emulator_url), proxy)


@pytest.fixture(scope="session")
def load_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_probed_stack(tmp_path_factory.mktemp("load"), {"RELAY_UPSTREAM_TIMEOUT_S": "30"}) as running:
        yield running
