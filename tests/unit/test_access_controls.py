"""The block list and the budgets through the relay's handlers: 403 ``user_blocked``, 429 ``user_quota_exceeded``, /api/me.

The tables are the in-memory stand-ins of tests/support/tables.py; Azurite and three relay
processes: tests/integration/test_shared_controls.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devhost.appservice_auth import principal_headers
from shared.access_controls import AccessControls
from shared.config import Settings, load_settings
from shared.relay import Relay
from shared.upstream import Upstream
from tests.support.app_settings import REQUIRED_SETTINGS
from tests.support.asgi import call, make_request, run_response
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.identities import OTHER_OID
from tests.support.tables import EtagTable, RowsTable

ENV = {
    **REQUIRED_SETTINGS,
    "WEBSITE_AUTH_ENABLED": "true",
    "RELAY_TABLE_ENDPOINT": "https://strelay.table.core.windows.net",
}
BLOCKLIST = {**ENV, "RELAY_BLOCKLIST_ENABLED": "true", "RELAY_BLOCKLIST_REFRESH_S": "3600"}
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
STREAM_BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
USAGE = {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
ANSWER = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}], "usage": USAGE})


def headers(oid: str = OID, ip: str = "203.0.113.7") -> dict[str, str]:
    claims = {"oid": oid, "tid": TID, "scp": "user_impersonation", "name": "Ada"}
    return {**{k.decode(): v.decode() for k, v in principal_headers(claims)}, "client-ip": f"{ip}:51234"}


class Store:
    """The table service, in memory: the block list's rows and the budget table."""

    def __init__(self, blocklist_rows: list[dict[str, Any]] | None = None) -> None:
        self.blocklist = RowsTable(blocklist_rows or [])
        self.budget = EtagTable()

    def table(self, name: str) -> Any:
        return self.blocklist if name == "relayblocklist" else self.budget

    async def aclose(self) -> None:
        pass


class Answers:
    """An Azure OpenAI client that answers every request; streams end after ``events``."""

    def __init__(self, events: list[bytes] | None = None) -> None:
        self.events = events or []
        self.calls = 0

    async def open(self, payload: bytes, deployment: str, request_id: str, notes: object = None) -> Answers:
        self.calls += 1
        return self

    async def read(self) -> bytes:
        return ANSWER.encode()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for event in self.events:
            yield event

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def relay_with(env: dict[str, str], store: Store | None, upstream: Answers | None = None) -> Relay:
    async def factory(settings: Settings) -> Upstream:
        assert upstream is not None, "the upstream must not be reached"
        return upstream  # type: ignore[return-value]

    def store_factory(settings: Settings) -> Store:
        assert store is not None, "no table may be opened"
        return store

    r = Relay(load_settings(env), factory)
    r.controls = AccessControls(r.settings, store_factory)  # type: ignore[arg-type]
    return r


async def test_a_blocked_user_gets_403_on_every_route_and_one_log_line_with_the_alert(caplog: pytest.LogCaptureFixture) -> None:
    row = {"PartitionKey": "oid", "RowKey": OID, "Value": OID, "Reason": "exfiltration via prompts", "AlertId": "alert-42"}
    r = relay_with(BLOCKLIST, Store([row]))
    try:
        with caplog.at_level(logging.INFO):
            for handler, method, path in ((r.chat_completions, "POST", "/api/v1/chat/completions"), (r.me, "GET", "/api/me"), (r.models, "GET", "/api/v1/models")):
                status, payload, _ = await call(handler, method, path, headers(), BODY)
                assert (status, payload["error"]["code"], payload["error"]["type"]) == (403, "user_blocked", "permission_error")
                assert "exfiltration" not in json.dumps(payload) and "alert-42" not in json.dumps(payload)
        blocked = [json.loads(rec.getMessage()) for rec in caplog.records if '"relay.blocked"' in rec.getMessage()]
        assert len(blocked) == 3
        assert {(line["alert_id"], line["matched"], line["oid"], line["source_ip"]) for line in blocked} == {("alert-42", "oid", OID, "203.0.113.7")}
        status, _, _ = await call(r.me, "GET", "/api/me", headers(OTHER_OID))
        assert status == 200
    finally:
        await r.aclose()


async def test_a_blocked_address_range_is_refused_whoever_signs_in_from_it() -> None:
    row = {"PartitionKey": "ip", "RowKey": "198.51.100.0_24", "Value": "198.51.100.0/24", "ExpiresAt": "2999-01-01T00:00:00Z"}
    r = relay_with(BLOCKLIST, Store([row]), Answers())
    try:
        status, payload, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(OTHER_OID, "198.51.100.200"), BODY)
        assert (status, payload["error"]["code"]) == (403, "user_blocked")
        status, _, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(OTHER_OID, "198.51.101.1"), BODY)
        assert status == 200
    finally:
        await r.aclose()


async def test_the_budget_stops_a_user_with_429_and_me_shows_what_is_left() -> None:
    env = {**ENV, "RELAY_BUDGET_USER_TOKENS_PER_DAY": "50"}
    r = relay_with(env, Store(), Answers())
    try:
        statuses = [(await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # 0, 21 and 42 tokens used are under 50; 63 is not
        status, payload, response_headers = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY)
        assert (status, payload["error"]["code"]) == (429, "user_quota_exceeded")
        assert 0 < int(response_headers["retry-after"]) <= 86400
        _, me, _ = await call(r.me, "GET", "/api/me", headers())
        assert me["budget"]["user_tokens_per_day"]["used"] == 63 and me["budget"]["user_tokens_per_day"]["remaining"] == 0
        _, other, _ = await call(r.me, "GET", "/api/me", headers(OTHER_OID))
        assert other["budget"]["user_tokens_per_day"]["remaining"] == 50
    finally:
        await r.aclose()


CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"ok"}}]}\n\n'
USAGE_CHUNK = b'data: {"choices":[],"usage":' + json.dumps(USAGE).encode() + b"}\n\n"


async def streamed_tokens(upstream: Answers) -> int:
    """Stream one answer to the end, then ask /api/me how many tokens the caller was charged."""
    r = relay_with({**ENV, "RELAY_BUDGET_USER_TOKENS_PER_DAY": "100000"}, Store(), upstream)
    try:
        response = await r.chat_completions(make_request("POST", "/api/v1/chat/completions", headers(), STREAM_BODY))
        await run_response(response)
        _, me, _ = await call(r.me, "GET", "/api/me", headers())
        return int(me["budget"]["user_tokens_per_day"]["used"])
    finally:
        await r.aclose()


async def test_a_stream_is_charged_the_usage_its_last_chunk_reports() -> None:
    assert await streamed_tokens(Answers([CHUNK, USAGE_CHUNK, b"data: [DONE]\n\n"])) == 21


async def test_a_stream_that_ended_before_its_usage_is_charged_an_estimate(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="relay"):
        charged = await streamed_tokens(Answers([CHUNK, CHUNK, CHUNK]))  # no usage, no [DONE]: the caller gets an error event
    [estimated] = [json.loads(r.getMessage()) for r in caplog.records if '"budget.usage_estimated"' in r.getMessage()]
    assert estimated["tokens"] == charged
    assert charged > 3  # the three chunks, plus the prompt at about four bytes a token


async def test_with_both_controls_off_no_table_is_opened_and_no_task_started() -> None:
    upstream = Answers()
    r = relay_with(dict(ENV), None, upstream)
    before = len(asyncio.all_tasks())
    status, _, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY)
    _, me, _ = await call(r.me, "GET", "/api/me", headers())
    assert status == 200 and me["budget"] is None
    await asyncio.sleep(0)  # the request's own disconnect watcher finishes its cancellation
    assert len(asyncio.all_tasks()) == before
    await r.aclose()
