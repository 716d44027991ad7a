from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Stack, run_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"RELAY_MAX_TOKENS": "100", "RELAY_UPSTREAM_TIMEOUT_S": "2", "RELAY_MAX_BODY_BYTES": "65536"}
    with run_stack(tmp_path_factory.mktemp("stack"), env) as running:
        yield running
