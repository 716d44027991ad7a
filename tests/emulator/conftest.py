"""Fixtures of the emulator tests: one emulator process shared by the session, reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2
import openai
import pytest
import pytest_asyncio

from tests.support.emulator import API_KEY, Emulator, running_emulator


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
async def client(emulator: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK on the v1 path, authenticated with a managed identity token."""
    async with openai.AsyncOpenAI(base_url=f"{emulator.base}/openai/v1/", api_key=emulator.token(), max_retries=0, timeout=10) as sdk:
        yield sdk


@pytest_asyncio.fixture
async def http(emulator: Emulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=emulator.base, timeout=10) as raw:
        yield raw
