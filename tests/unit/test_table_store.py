"""shared.table_store: one table service per worker, every table on its connection pool, calls retried once, closed with its credential."""

from __future__ import annotations

import pytest

from shared.config import load_settings
from shared.table_store import TableStore

ENV = {
    "AZURE_OPENAI_ENDPOINT": "https://contoso-aoai.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini",
    "APPLICATION_NAME": "contoso-chat-spa",
    "RELAY_BLOCKLIST_ENABLED": "true",
    "RELAY_TABLE_ENDPOINT": "https://stcontoso.table.core.windows.net",
}


async def test_tables_are_named_at_the_configured_endpoint_and_share_one_bounded_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT", raising=False)
    store = TableStore.from_settings(load_settings(ENV))
    try:
        blocklist, budgets = store.table("blocklist"), store.table("budgets")
        assert (blocklist.table_name, blocklist.account_name, blocklist.url) == ("blocklist", "stcontoso", ENV["RELAY_TABLE_ENDPOINT"])
        assert budgets.table_name == "budgets"
        # The SDK's own objects: both tables send through the service's one transport (one connection
        # pool), and its retry policy allows one retry, so a storage outage delays the background tasks.
        service_transport = store._service._client._client._pipeline._transport
        for table in (blocklist, budgets):
            pipeline = table._client._client._pipeline
            assert pipeline._transport._transport is service_transport
            [retry] = [p for p in pipeline._impl_policies if type(p).__name__.endswith("RetryPolicy")]
            assert retry.total_retries == 1
    finally:
        await store.aclose()


class Closable:
    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_closing_the_store_closes_the_service_and_its_credential() -> None:
    service, credential = Closable(), Closable()
    await TableStore(service, credential).aclose()  # type: ignore[arg-type]
    assert (service.closed, credential.closed) == (1, 1)
