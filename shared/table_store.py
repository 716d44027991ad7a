"""The relay's connection to its shared state in Azure Table storage: the block list and the token budgets.

One async ``azure-data-tables`` service client (one connection pool) per worker process,
authenticated with the function's managed identity, as Azure OpenAI is: in Azure the Bicep
grants that identity Storage Table Data Contributor on the relay's tables; locally it talks to
Azurite in OAuth mode over HTTPS with the identity emulator's tokens (docs/blocklist.md, "Locally").
Calls are bounded (one retry, short timeouts): only background tasks call storage, and a storage
outage must delay them, not hang them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.upstream_auth import create_credential

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient, TableServiceClient

    from shared.config import Settings

_RETRIES = 1
_CONNECT_TIMEOUT_S = 5.0
_READ_TIMEOUT_S = 10.0


class TableStore:
    """The table service at ``RELAY_TABLE_ENDPOINT``; ``table(name)`` shares its connection pool."""

    def __init__(self, service: TableServiceClient, credential: AsyncTokenCredential) -> None:
        self._service = service
        self._credential = credential

    @classmethod
    def from_settings(cls, settings: Settings) -> TableStore:
        endpoint = settings.controls.table_endpoint
        assert endpoint is not None, "load_settings requires RELAY_TABLE_ENDPOINT when a control is on"
        credential = create_credential(settings)
        return cls(table_service(endpoint, credential), credential)

    def table(self, name: str) -> TableClient:
        return self._service.get_table_client(name)

    async def aclose(self) -> None:
        await self._service.close()
        await self._credential.close()


def table_service(endpoint: str, credential: AsyncTokenCredential | AzureNamedKeyCredential) -> TableServiceClient:
    """A client of the table service at ``endpoint`` with the relay's bounds on each call (one retry, short timeouts)."""
    # Imported on first use, like aiohttp in the upstream client: a relay with both controls off never loads them.
    from azure.data.tables.aio import TableServiceClient

    return TableServiceClient(
        endpoint, credential=credential, retry_total=_RETRIES, connection_timeout=_CONNECT_TIMEOUT_S, read_timeout=_READ_TIMEOUT_S
    )
