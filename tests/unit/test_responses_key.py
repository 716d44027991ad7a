"""shared.responses_key: one key for every instance, made by the first that needs it, and never a secret in settings."""

from __future__ import annotations

import asyncio
import base64

import pytest

from shared.errors import RelayError
from shared.responses_key import PARTITION_KEY, ROW_KEY, shared_seal_key
from tests.support.tables import KeyTable


async def test_the_first_instance_makes_the_key_and_every_other_reads_the_same() -> None:
    table = KeyTable()
    keys = await asyncio.gather(*(shared_seal_key(table) for _ in range(5)))  # type: ignore[arg-type]
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert base64.b64decode(table.rows[(PARTITION_KEY, ROW_KEY)]["Key"]) == keys[0]
    assert await shared_seal_key(table) == keys[0]  # type: ignore[arg-type]


async def test_a_table_that_cannot_be_read_is_a_503_to_retry() -> None:
    with pytest.raises(RelayError) as caught:
        await shared_seal_key(KeyTable(down=True))  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code, caught.value.headers["Retry-After"]) == (503, "responses_unavailable", "5")
