"""The block list and the budgets through the relay's handlers: 403 ``user_blocked``, 429 ``user_quota_exceeded``, /api/me.

The tables are the in-memory stand-ins of tests/support/tables.py; Azurite and three relay
processes: tests/integration/test_shared_controls.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devhost.appservice_auth import principal_headers
from shared.access_controls import AccessControls
from shared.config import Settings, load_settings
from shared.errors import (
    RelayError,
    UpstreamBroken,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
    content_filter,
    rate_limited,
    server_busy,
    upstream_error,
    upstream_timeout,
)
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


def headers(oid: str = OID, ip: str = "203.0.113.7", **extra: str) -> dict[str, str]:
    claims = {"oid": oid, "tid": TID, "scp": "user_impersonation", "name": "Ada", **extra}
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
    """An Azure OpenAI client that answers every request; streams end after ``events``, each ``pause`` seconds after the last."""

    def __init__(self, events: list[bytes] | None = None, pause: float = 0.0) -> None:
        self.events = events or []
        self.pause = pause
        self.calls = 0

    async def open(self, payload: bytes, deployment: str, request_id: str, notes: object = None) -> Answers:
        self.calls += 1
        return self

    async def read(self) -> bytes:
        return ANSWER.encode()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for event in self.events:
            if self.pause:
                await asyncio.sleep(self.pause)
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


async def test_a_guest_whose_home_tenant_is_blocked_is_refused_and_the_log_names_the_home_tenant(caplog: pytest.LogCaptureFixture) -> None:
    home = "5e5e5e5e-0000-4000-8000-00000000e5e5"
    row = {"PartitionKey": "tenant", "RowKey": home, "Value": home, "AlertId": "alert-home"}
    r = relay_with(BLOCKLIST, Store([row]), Answers())
    guest = {"idp": f"https://sts.windows.net/{home}/"}  # a B2B guest from the blocked tenant, signed in to TID
    try:
        with caplog.at_level(logging.INFO):
            status, payload, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(OTHER_OID, **guest), BODY)
        assert (status, payload["error"]["code"]) == (403, "user_blocked")
        [line] = [json.loads(rec.getMessage()) for rec in caplog.records if '"relay.blocked"' in rec.getMessage()]
        assert (line["matched"], line["tid"], line["home_tid"], line["alert_id"]) == ("home_tenant", TID, home, "alert-home")
        member_of_tid = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(OTHER_OID), BODY)
        assert member_of_tid[0] == 200
    finally:
        await r.aclose()


async def test_the_budget_stops_a_user_with_429_and_me_shows_what_is_left() -> None:
    env = {**ENV, "RELAY_BUDGET_USER_TOKENS_PER_DAY": "1600"}
    store = Store()
    today = datetime.now(UTC).strftime("%Y%m%d")
    await store.budget.create_entity({"PartitionKey": f"user:{OID}", "RowKey": today, "Tokens": 1550, "Minute": 0, "MinuteTokens": 0})
    r = relay_with(env, store, Answers())
    try:
        statuses = [(await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]  # 1550 and 1571 leave room for the prompt (13) and a token; 1592 does not
        status, payload, response_headers = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY)
        assert (status, payload["error"]["code"]) == (429, "user_quota_exceeded")
        assert 0 < int(response_headers["retry-after"]) <= 86400
        _, me, _ = await call(r.me, "GET", "/api/me", headers())
        assert me["budget"]["user_tokens_per_day"] | {"resets_at": ""} == {"limit": 1600, "used": 1592, "remaining": 8, "resets_at": "", "loaded": True}
        _, other, _ = await call(r.me, "GET", "/api/me", headers(OTHER_OID))
        assert other["budget"]["user_tokens_per_day"]["remaining"] == 1600
    finally:
        await r.aclose()


async def test_me_right_after_a_restart_shows_the_day_the_table_holds() -> None:
    store = Store()
    today = datetime.now(UTC).strftime("%Y%m%d")
    await store.budget.create_entity({"PartitionKey": f"user:{OID}", "RowKey": today, "Tokens": 1600, "Minute": 0, "MinuteTokens": 0})
    r = relay_with({**ENV, "RELAY_BUDGET_USER_TOKENS_PER_DAY": "1600"}, store, Answers())
    try:
        _, me, _ = await call(r.me, "GET", "/api/me", headers())
        assert (me["budget"]["user_tokens_per_day"]["used"], me["budget"]["user_tokens_per_day"]["loaded"]) == (1600, True)
        status, payload, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY)
        assert (status, payload["error"]["code"]) == (429, "user_quota_exceeded")
        store.budget.down = True
        _, other, _ = await call(r.me, "GET", "/api/me", headers(OTHER_OID))
        assert (other["budget"]["user_tokens_per_day"]["used"], other["budget"]["user_tokens_per_day"]["loaded"]) == (0, False)
    finally:
        await r.aclose()


class Hanging(Answers):
    """Azure takes the request and never answers while the test waits."""

    async def read(self) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Failing(Answers):
    """Azure refuses or fails the request (``when="open"``), or breaks off the answer it started (``when="read"``)."""

    def __init__(self, error: Exception, when: str) -> None:
        super().__init__()
        self.error, self.when = error, when

    async def open(self, payload: bytes, deployment: str, request_id: str, notes: object = None) -> Answers:
        if self.when == "open":
            raise self.error
        return self

    async def read(self) -> bytes:
        raise self.error


async def charged_for(caplog: pytest.LogCaptureFixture, upstream: Answers, hang_up_after_s: float | None = None) -> tuple[int, int, list[dict[str, Any]]]:
    """One non-streamed request with a 1,000-token output cap; the status, what the caller was charged, and the estimates logged."""
    r = relay_with({**ENV, "RELAY_BUDGET_USER_TOKENS_PER_DAY": "1000000"}, Store(), upstream)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}).encode()
    try:
        request = make_request("POST", "/api/v1/chat/completions", headers(), body)
        if hang_up_after_s is not None:
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.sleep(hang_up_after_s)
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            request._receive = receive  # type: ignore[attr-defined]
        with caplog.at_level(logging.INFO, logger="relay"):
            response = await r.chat_completions(request)
        _, me, _ = await call(r.me, "GET", "/api/me", headers())
        estimates = [json.loads(rec.getMessage()) for rec in caplog.records if '"budget.usage_estimated"' in rec.getMessage()]
        return response.status_code, int(me["budget"]["user_tokens_per_day"]["used"]), estimates
    finally:
        await r.aclose()


PROMPT_ESTIMATE = -(-len(json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000})) // 4)


async def test_a_non_streamed_request_whose_caller_hangs_up_is_charged_the_prompt_and_its_whole_output_cap(caplog: pytest.LogCaptureFixture) -> None:
    status, charged, [estimate] = await charged_for(caplog, Hanging(), hang_up_after_s=0.05)
    assert status == 499
    assert charged == PROMPT_ESTIMATE + 1000 == estimate["tokens"]
    assert estimate["reason"] == "ClientDisconnect"


@pytest.mark.parametrize(
    ("error", "when", "expected"),
    [
        (upstream_error("cut", UpstreamBroken("cut")), "read", PROMPT_ESTIMATE + 1000),  # broke off: Azure may have generated it all
        (upstream_timeout(cause=UpstreamTimeout("slow")), "open", PROMPT_ESTIMATE + 1000),  # Azure may still be generating
        (upstream_error("status 500", UpstreamRejected(500, None, {})), "open", PROMPT_ESTIMATE),  # Azure read the prompt
        (content_filter({}, UpstreamRejected(400, None, {})), "open", PROMPT_ESTIMATE),  # Azure refused the prompt
        (rate_limited(1, UpstreamRejected(429, None, {})), "open", 0),  # Azure did not take it
        (upstream_error("no connection", UpstreamUnreachable("refused")), "open", 0),  # never reached Azure
        (server_busy(), "open", 0),  # never sent
    ],
)
async def test_a_non_streamed_request_that_failed_is_charged_what_azure_may_bill(
    caplog: pytest.LogCaptureFixture, error: RelayError, when: str, expected: int
) -> None:
    status, charged, estimates = await charged_for(caplog, Failing(error, when))
    assert status == error.status
    assert charged == expected
    assert [e["tokens"] for e in estimates] == ([expected] if expected else [])


async def test_an_unreadable_answer_is_charged_the_prompt_and_its_whole_output_cap(caplog: pytest.LogCaptureFixture) -> None:
    class Unreadable(Answers):
        async def read(self) -> bytes:
            return b'{"choices": [tru'

    status, charged, [estimate] = await charged_for(caplog, Unreadable())
    assert (status, charged, estimate["reason"]) == (502, PROMPT_ESTIMATE + 1000, "unreadable_answer")


async def test_a_user_at_the_limit_of_requests_in_flight_gets_429_and_others_are_served() -> None:
    r = relay_with({**ENV, "RELAY_USER_MAX_IN_FLIGHT": "3"}, None, Hanging())
    try:
        hanging = [asyncio.ensure_future(call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY)) for _ in range(3)]
        await asyncio.sleep(0.05)
        status, payload, response_headers = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY)
        assert (status, payload["error"]["code"], response_headers["retry-after"]) == (429, "user_concurrency_exceeded", "1")
        r._upstream = Answers()  # type: ignore[assignment]
        status, _, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(OTHER_OID), BODY)
        assert status == 200
        for task in hanging:
            task.cancel()
        await asyncio.gather(*hanging, return_exceptions=True)
        status, _, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers(), BODY)
        assert status == 200  # the slots came back when the requests ended
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
    assert charged == -(-len(STREAM_BODY) // 4) + 3  # the three chunks, plus the prompt at about four bytes a token


async def test_a_stream_that_ended_while_the_model_was_thinking_is_charged_its_whole_output_cap(caplog: pytest.LogCaptureFixture) -> None:
    prologue = b'data: {"choices":[],"prompt_filter_results":[]}\n\n'
    with caplog.at_level(logging.INFO, logger="relay"):
        charged = await streamed_tokens(Answers([prologue]))
    [estimated] = [json.loads(r.getMessage()) for r in caplog.records if '"budget.usage_estimated"' in r.getMessage()]
    assert (estimated["reason"], charged) == ("stream_ended_thinking", -(-len(STREAM_BODY) // 4) + 4096)  # RELAY_MAX_TOKENS


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


async def test_a_block_that_reaches_the_instance_ends_the_blocked_callers_open_stream_and_no_one_elses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {**BLOCKLIST, "RELAY_BLOCKLIST_REFRESH_S": "0.5", "RELAY_BUDGET_USER_TOKENS_PER_DAY": "100000"}
    store = Store()
    r = relay_with(env, store, Answers([CHUNK] * 100 + [USAGE_CHUNK, b"data: [DONE]\n\n"], pause=0.05))  # 5 s of answer
    loop = asyncio.get_running_loop()
    try:
        with caplog.at_level(logging.INFO):
            ada = await r.chat_completions(make_request("POST", "/api/v1/chat/completions", headers(), STREAM_BODY))
            other = await r.chat_completions(make_request("POST", "/api/v1/chat/completions", headers(OTHER_OID), STREAM_BODY))
            ada_stream, other_stream = asyncio.ensure_future(run_response(ada)), asyncio.ensure_future(run_response(other))
            await asyncio.sleep(0.5)
            store.blocklist.rows.append({"PartitionKey": "oid", "RowKey": OID, "Value": OID, "AlertId": "alert-9"})
            blocked_at = loop.time()
            _, ada_body = await asyncio.wait_for(ada_stream, 10)
            ended_after = loop.time() - blocked_at
            _, other_body = await asyncio.wait_for(other_stream, 10)
        assert ended_after < 0.5 + 1.0  # the refresh interval, plus a margin for a loaded machine
        *ada_chunks, last = ada_body.removesuffix(b"\n\n").split(b"\n\n")
        assert 5 < len(ada_chunks) < 100 and set(ada_chunks) == {CHUNK.removesuffix(b"\n\n")}
        event, data = last.split(b"\n")
        assert (event, json.loads(data.removeprefix(b"data: "))["error"]["code"]) == (b"event: error", "user_blocked")
        assert other_body.endswith(b"data: [DONE]\n\n") and other_body.count(CHUNK) == 100

        lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.getMessage().startswith("{")]
        records = {line["oid"]: line for line in lines if line["event"] == "relay.request"}
        assert (records[OID]["status"], records[OID]["code"]) == (403, "user_blocked")
        assert (records[OTHER_OID]["status"], records[OTHER_OID]["code"]) == (200, None)
        assert sum(line["event"] == "relay.request" for line in lines) == 2  # one record per request
        [blocked] = [line for line in lines if line["event"] == "relay.blocked"]
        assert (blocked["request_id"], blocked["alert_id"], blocked["open_stream"]) == (records[OID]["request_id"], "alert-9", True)
        [estimated] = [line for line in lines if line["event"] == "budget.usage_estimated"]
        assert estimated["oid"] == OID
        assert r.controls.budgets is not None
        assert r.controls.budgets.view(OID, TID)["user_tokens_per_day"]["used"] == estimated["tokens"] > 5
        assert r.controls.open_streams is not None and len(r.controls.open_streams) == 0
    finally:
        await r.aclose()
