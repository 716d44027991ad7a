"""Clients of the emulator tests (the emulator fixture itself is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import openai
import pytest_asyncio

from tests.support.emulator import Emulator


@pytest_asyncio.fixture
async def client(emulator: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK on the v1 path, authenticated with a managed identity token."""
    async with openai.AsyncOpenAI(base_url=f"{emulator.base}/openai/v1/", api_key=emulator.token(), max_retries=0, timeout=10) as sdk:
        yield sdk


@pytest_asyncio.fixture
async def http(emulator: Emulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=emulator.base, timeout=10) as raw:
        yield raw
