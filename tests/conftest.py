"""Fixtures every test directory may use: the emulator process, and a real managed identity credential for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from azure.identity.aio import ManagedIdentityCredential

from tests.support.emulator import API_KEY, IDENTITY_HEADER, Emulator, running_emulator


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(tmp_path_factory.mktemp("emulator")) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_emulator(request: pytest.FixtureRequest) -> None:
    if "emulator" in request.fixturenames:
        emulator: Emulator = request.getfixturevalue("emulator")
        emulator.control("POST", "reset")
        emulator.control("POST", "config", {"api_key": API_KEY})


@pytest_asyncio.fixture
async def credential(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ManagedIdentityCredential]:
    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    async with ManagedIdentityCredential() as managed_identity:
        yield managed_identity
