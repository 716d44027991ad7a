"""The key that seals Responses ids to their caller, kept in the relay's own table storage.

Every instance must seal and unseal with the same key, and it must outlive deployments (a new
key makes every id handed out before a 404), yet no secret goes into the app's settings. So
the first instance that needs it generates 32 random bytes and inserts them into
RELAY_RESPONSES_TABLE; an insert that finds the row already there (another instance was
first) reads that one instead. Each instance reads it once and keeps it for its lifetime.
Whoever can read that table can mint ids for anyone: the Bicep grants the relay's identity
Storage Table Data Contributor on that one table (SECURITY.md, "Another user's Responses state").
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import TYPE_CHECKING, Any

from shared.config import MIN_SEAL_KEY_BYTES
from shared.errors import responses_unavailable
from shared.logs import log_event

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

PARTITION_KEY = "seal"
ROW_KEY = "key"

log = logging.getLogger("relay")


async def shared_seal_key(table: TableClient) -> bytes:
    """The key in ``table``, inserted first if there is none; 503 ``responses_unavailable`` when the table cannot be read."""
    from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

    try:
        try:
            return _key_of(await table.get_entity(PARTITION_KEY, ROW_KEY))
        except ResourceNotFoundError:
            key = secrets.token_bytes(MIN_SEAL_KEY_BYTES)
            try:
                await table.create_entity({"PartitionKey": PARTITION_KEY, "RowKey": ROW_KEY, "Key": base64.b64encode(key).decode()})
            except ResourceExistsError:
                return _key_of(await table.get_entity(PARTITION_KEY, ROW_KEY))
            return key
    except AzureError:
        raise responses_unavailable() from None
    except ValueError as bad:
        # A row someone wrote by hand: never replaced (that would orphan every id handed out), refused until fixed.
        log_event(log, logging.ERROR, "relay.seal_key_invalid", table=table.table_name, row=f"{PARTITION_KEY}/{ROW_KEY}", detail=str(bad))
        raise responses_unavailable() from None


def _key_of(entity: Any) -> bytes:
    """The key of the row; ValueError, naming what is wrong, when the row holds no usable key."""
    try:
        key = base64.b64decode(str(entity["Key"]), validate=True)
    except (KeyError, ValueError):
        raise ValueError("the seal key row has no base64 Key property") from None
    if len(key) < MIN_SEAL_KEY_BYTES:
        raise ValueError(f"the seal key row holds {len(key)} bytes, fewer than {MIN_SEAL_KEY_BYTES}")
    return key
