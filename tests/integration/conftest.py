from __future__ import annotations

from collections.abc import Iterator

import pytest

from devhost import defaults
from tests.support.stack import Stack, run_stack

# Short, so that a test can wait through several keep-alive comments in a second or two.
KEEPALIVE_S = 0.5


@pytest.fixture(scope="session", params=defaults.RUNTIMES)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local host, once with the relay in-process and once through the Functions Python worker."""
    env = {
        "RELAY_MAX_TOKENS": "100",
        "RELAY_UPSTREAM_TIMEOUT_S": "2",
        "RELAY_MAX_BODY_BYTES": "65536",
        "RELAY_STREAM_KEEPALIVE_S": str(KEEPALIVE_S),
        "DEVHOST_RUNTIME": request.param,
    }
    with run_stack(tmp_path_factory.mktemp(f"stack-{request.param}"), env) as running:
        yield running
