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
from tests.support.emulator import IDENTITY_HEADER, running_emulator
from tests.support.faultproxy import fault_proxy
from tests.support.probe import run_probed_stack
from tests.support.servers import free_port
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"RELAY_UPSTREAM_TIMEOUT_S": str(RELAY_TIMEOUT_S), "RELAY_MAX_BODY_BYTES": "65536"}
    with run_probed_stack(tmp_path_factory.mktemp("faults"), env) as running:
        yield running


@pytest.fixture(scope="session")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    tmp = tmp_path_factory.mktemp("proxied")
    with running_emulator(tmp) as emulator, fault_proxy(emulator.port, free_port()) as proxy:
        relay_env = {
            "AZURE_OPENAI_ENDPOINT": proxy.url,
            "IDENTITY_ENDPOINT": emulator.identity_endpoint,
            "IDENTITY_HEADER": IDENTITY_HEADER,
            "RELAY_UPSTREAM_TIMEOUT_S": str(RELAY_TIMEOUT_S),
        }
        with run_probed_stack(tmp, relay_env) as running:
            yield Proxied(dataclasses.replace(running, emulator_url=emulator.base), proxy)


@pytest.fixture(scope="session")
def load_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One synthetic user sends every request here: the per-user limit on requests in flight must not bind.
    env = {"RELAY_UPSTREAM_TIMEOUT_S": "30", "RELAY_USER_MAX_IN_FLIGHT": "100000"}
    with run_probed_stack(tmp_path_factory.mktemp("load"), env) as running:
        yield running
