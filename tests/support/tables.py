"""In-memory stand-ins for the relay's tables, keeping Table storage's rules for the calls the relay makes.

``RowsTable`` is the block list as ``list_entities`` reads it; ``EtagTable`` is the budget table:
create fails when the row exists, a conditional update fails when the ETag changed, and each
call yields to the event loop, so concurrent syncs interleave between read and write. Both can
be put ``down`` to fail like a refused connection. The same code runs against Azurite in
tests/integration.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError, ServiceRequestError


class RowsTable:
    """Rows in memory; counts reads; ``down`` makes reads fail like a refused connection, or as ``failure`` says.

    ``failure`` is an exception a read raises instead (what the SDK raises for an answer that is not a page of
    rows), or ``"hang"``: the read never ends, like a service that accepts the connection and never answers.
    """

    def __init__(self, rows: list[Mapping[str, Any]]) -> None:
        self.rows = rows
        self.reads = 0
        self.down = False
        self.failure: Exception | Literal["hang"] = ServiceRequestError("connection refused")

    async def list_entities(self, *, format: str | None = None) -> AsyncIterator[Mapping[str, Any]]:
        """The rows as stored: the relay asks for them untyped (``format``), which rows in memory already are."""
        self.reads += 1
        if self.down:
            if self.failure == "hang":
                await asyncio.Event().wait()
            assert isinstance(self.failure, Exception)
            raise self.failure
        for row in list(self.rows):
            yield row


class Entity(dict[str, Any]):
    def __init__(self, row: Mapping[str, Any], etag: str) -> None:
        super().__init__(row)
        self.metadata = {"etag": etag}


class EtagTable:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.etags = (f'W/"{n}"' for n in itertools.count())
        self.down = False
        self.lost_races = 0

    async def _io(self) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise ServiceRequestError("connection refused")

    async def get_entity(self, partition_key: str, row_key: str) -> Entity:
        await self._io()
        if (partition_key, row_key) not in self.rows:
            raise ResourceNotFoundError("ResourceNotFound")
        row, etag = self.rows[(partition_key, row_key)]
        return Entity(row, etag)

    async def create_entity(self, entity: Mapping[str, Any]) -> None:
        await self._io()
        key = (entity["PartitionKey"], entity["RowKey"])
        if key in self.rows:
            self.lost_races += 1
            raise ResourceExistsError("EntityAlreadyExists")
        self.rows[key] = (dict(entity), next(self.etags))

    async def update_entity(self, entity: Mapping[str, Any], **kwargs: Any) -> None:
        await self._io()
        key = (entity["PartitionKey"], entity["RowKey"])
        if self.rows[key][1] != kwargs["etag"]:
            self.lost_races += 1
            raise ResourceModifiedError("UpdateConditionNotSatisfied")
        self.rows[key] = (dict(entity), next(self.etags))

    def tokens(self, pk: str, rk: str = "20261127") -> int:
        value = self.rows[(pk, rk)][0]["Tokens"]
        return int(getattr(value, "value", value))  # an Edm.Int64 property is an EntityProperty


class KeyTable:
    """The Responses table: a row store that refuses a second insert of a row, as the table service does."""

    table_name = "relayresponses"

    def __init__(self, down: bool = False) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.down = down

    async def get_entity(self, partition_key: str, row_key: str) -> dict[str, Any]:
        await asyncio.sleep(0)  # another instance may run between the read and the insert
        if self.down:
            raise ServiceRequestError("no route to the table service")
        try:
            return self.rows[(partition_key, row_key)]
        except KeyError:
            raise ResourceNotFoundError("The specified resource does not exist.") from None

    async def create_entity(self, entity: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        key = (entity["PartitionKey"], entity["RowKey"])
        if key in self.rows:
            raise ResourceExistsError("The specified entity already exists.")
        self.rows[key] = dict(entity)
