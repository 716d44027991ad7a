"""shared.responses_key: one key for every instance, made by the first that needs it, and never a secret in settings."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

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


@pytest.mark.parametrize(
    "row",
    [{"Key": "not base64!"}, {"Key": base64.b64encode(b"short").decode()}, {"Secret": "x"}, {"Key": 42}],
    ids=["not-base64", "too-short", "no-key", "not-a-string"],
)
async def test_a_bad_key_row_is_a_503_that_names_it_and_is_never_replaced(row: dict[str, object], caplog: pytest.LogCaptureFixture) -> None:
    table = KeyTable()
    table.rows[(PARTITION_KEY, ROW_KEY)] = {"PartitionKey": PARTITION_KEY, "RowKey": ROW_KEY, **row}
    with caplog.at_level(logging.ERROR, logger="relay"), pytest.raises(RelayError) as caught:
        await shared_seal_key(table)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (503, "responses_unavailable")
    [line] = [json.loads(r.getMessage()) for r in caplog.records]
    assert (line["event"], line["table"], line["row"]) == ("relay.seal_key_invalid", "relayresponses", "seal/key")
    assert table.rows[(PARTITION_KEY, ROW_KEY)] == {"PartitionKey": PARTITION_KEY, "RowKey": ROW_KEY, **row}  # left for a person to fix
