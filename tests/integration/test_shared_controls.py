"""Three relay processes sharing one Azurite and one Azure OpenAI emulator: the block list and a token budget across instances.

Each relay is ``python -m devhost`` on its own port (its own App Service front end and Easy
Auth, so each mints its own dev tokens), pointed at the same emulator, managed identity
endpoint and Azurite, as Flex Consumption instances share one storage account. Everything is
on 127.0.0.1 and bounded in requests and time. The settings are small so the test is quick:
a block list refresh every ``REFRESH_S``, a budget sync every ``FLUSH_S``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import EdmType

from devhost.azurite import running_azurite
from tests.support import rawhttp
from tests.support.azurite import TABLES, admin
from tests.support.bursts import billed, burst, chat_body, code_of, refused_for_the_day
from tests.support.emulator import Emulator
from tests.support.relays import Relays, start_relay
from tests.support.stack import Stack

REFRESH_S = 1.0
FLUSH_S = 0.5
# Large enough that an instance's allowance (1/16 of it) covers the outage test's requests.
DAY_LIMIT = 8000
# Over the stated intervals: the time a refresh or a sync itself takes on a busy 2-core machine, and the polling step.
SLACK_S = 3.0
# Concurrent requests per instance in each wave of the budget tests, each for a long answer.
BURST = 8
WORDS = 400
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def relays(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relays]:
    state_dir = tmp_path_factory.mktemp("shared-azurite")
    env = {
        "RELAY_BLOCKLIST_ENABLED": "true",
        "RELAY_BLOCKLIST_REFRESH_S": str(REFRESH_S),
        "RELAY_BUDGET_USER_TOKENS_PER_DAY": str(DAY_LIMIT),
        "RELAY_BUDGET_FLUSH_S": str(FLUSH_S),
    }
    with running_azurite(state_dir, TABLES, log_path=state_dir / "azurite.log") as azurite, contextlib.ExitStack() as started:
        yield Relays([start_relay(started, emulator, azurite, state_dir, env) for _ in range(3)], azurite, emulator)


def call(stack: Stack, token: str, method: str = "POST", path: str = "/api/v1/chat/completions") -> rawhttp.RawResponse:
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    return rawhttp.request(stack.port, method, path, headers, BODY if method == "POST" else b"")


def wait_until(condition: Any, timeout: float, step: float = 0.1) -> float:
    """Poll ``condition`` until it is true; return the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not true within {timeout:.1f}s"
        time.sleep(step)
    return time.monotonic() - start


def table_row(relays: Relays, oid: str) -> dict[str, Any]:
    today = datetime.now(UTC).strftime("%Y%m%d")
    with relays.azurite.tables.table_client("relaybudget") as client:
        try:
            return dict(client.get_entity(f"user:{oid}", today))
        except ResourceNotFoundError:
            return {}


def table_tokens(relays: Relays, oid: str) -> int:
    tokens = table_row(relays, oid).get("Tokens", 0)
    return int(getattr(tokens, "value", tokens))  # the SDK returns an Edm.Int64 property as an EntityProperty


def block(relays: Relays, oid: str, alert: str) -> None:
    done = admin(relays.azurite.state_dir, "block", "--oid", oid, "--reason", "test", "--ttl", "1h", "--alert-id", alert)
    assert done.returncode == 0, done.stderr


def test_a_block_written_with_the_admin_command_is_enforced_by_every_instance_within_the_refresh_interval(relays: Relays) -> None:
    oid = "b10c0000-0000-4000-8000-00000000b001"
    tokens = relays.tokens(oid)
    assert [call(stack, token).status for stack, token in zip(relays.stacks, tokens, strict=True)] == [200, 200, 200]

    block(relays, oid, "alert-multi-1")
    took = [wait_until(lambda s=stack, t=token: call(s, t, "GET", "/api/me").status == 403, REFRESH_S + SLACK_S)
            for stack, token in zip(relays.stacks, tokens, strict=True)]  # fmt: skip
    print(f"block enforced after {[round(t, 2) for t in took]} s (refresh interval {REFRESH_S} s)")

    seen_before = len(relays.emulator.requests())
    for stack, token in zip(relays.stacks, tokens, strict=True):
        refused = call(stack, token)
        assert (refused.status, code_of(refused)) == (403, "user_blocked")
        assert b"test" not in refused.body  # the reason stays in the table
        request_id = refused.header("x-request-id")
        lines = [e for each in relays.events("relay.blocked") for e in each if e["request_id"] == request_id]
        assert [(e["alert_id"], e["matched"], e["oid"]) for e in lines] == [("alert-multi-1", "oid", oid)]
    assert len(relays.emulator.requests()) == seen_before, "a blocked caller's request reached Azure OpenAI"

    assert admin(relays.azurite.state_dir, "unblock", "--oid", oid).returncode == 0
    for stack, token in zip(relays.stacks, tokens, strict=True):
        wait_until(lambda s=stack, t=token: call(s, t).status == 200, REFRESH_S + SLACK_S)


def waves_until_refused_for_the_day(
    stacks: list[Stack], tokens: list[str], body: bytes, timeout_s: float = 90.0
) -> list[rawhttp.RawResponse]:
    """Concurrent bursts of BURST requests on each of ``stacks`` at once, until a whole wave is refused for the rest of the day."""
    answered: list[rawhttp.RawResponse] = []
    start = time.monotonic()
    while True:
        assert time.monotonic() - start < timeout_s, f"still admitted after {timeout_s} s"
        responses = burst([(stack.port, token, body) for stack, token in zip(stacks, tokens, strict=True) for _ in range(BURST)])
        for response in responses:
            assert response.status == 200 or code_of(response) == "user_quota_exceeded", response.body[:300]
        answered += [response for response in responses if response.status == 200]
        if all(refused_for_the_day(response) for response in responses):
            return answered
        time.sleep(0.05)


def test_one_user_spread_over_three_instances_is_stopped_within_the_stated_bound(relays: Relays) -> None:
    oid = "b0d9e700-0000-4000-8000-00000000b002"
    marker = f"spread-{oid}"
    tokens = relays.tokens(oid)
    answered = waves_until_refused_for_the_day(relays.stacks, tokens, chat_body(marker, WORDS))
    spent = billed(relays.emulator.requests(), marker)
    # docs/design.md: I instances bursting together spend at most limit x (1 + 2 (I - 1) / 16), 1.25 x for three.
    print(f"limit {DAY_LIMIT}: three instances bursting {BURST} at a time answered {len(answered)}, the emulator billed {spent}")
    assert DAY_LIMIT * 0.9 <= spent <= DAY_LIMIT * 1.25

    charged = sum(json.loads(response.body)["usage"]["total_tokens"] for response in answered)
    assert charged == spent
    wait_until(lambda: table_tokens(relays, oid) == charged, 10 * FLUSH_S + SLACK_S)
    time.sleep(2 * FLUSH_S + 0.5)
    for stack, token in zip(relays.stacks, tokens, strict=True):
        day = json.loads(call(stack, token, "GET", "/api/me").body)["budget"]["user_tokens_per_day"]
        assert (day["limit"], day["used"], day["remaining"], day["loaded"]) == (DAY_LIMIT, charged, max(0, DAY_LIMIT - charged), True)


def test_a_user_refused_on_one_instance_is_refused_on_an_instance_that_never_saw_them(relays: Relays) -> None:
    oid = "b0d9e700-0000-4000-8000-00000000b005"
    marker = f"hop-{oid}"
    first, second = relays.stacks[0], relays.stacks[1]
    token = first.token(oid=oid)
    waves_until_refused_for_the_day([first], [token], chat_body(marker, WORDS))
    spent = billed(relays.emulator.requests(), marker)
    wait_until(lambda: table_tokens(relays, oid) == spent, 10 * FLUSH_S + SLACK_S)
    elsewhere = burst([(second.port, second.token(oid=oid), chat_body(marker, WORDS)) for _ in range(10)])
    assert [refused_for_the_day(response) for response in elsewhere] == [True] * 10
    assert billed(relays.emulator.requests(), marker) == spent


def test_a_row_written_with_32_bit_counts_by_an_earlier_version_is_read_and_updated_as_64_bit(relays: Relays) -> None:
    oid = "b0d9e700-0000-4000-8000-00000000b006"
    today = datetime.now(UTC).strftime("%Y%m%d")
    with relays.azurite.tables.table_client("relaybudget") as client:
        # What earlier versions wrote: Python ints, which the SDK sends as Edm.Int32.
        client.create_entity({"PartitionKey": f"user:{oid}", "RowKey": today, "Tokens": 7000, "Minute": 1, "MinuteTokens": 5})
        assert isinstance(client.get_entity(f"user:{oid}", today)["Tokens"], int)
    stack, token = relays.stacks[2], relays.stacks[2].token(oid=oid)
    day = json.loads(call(stack, token, "GET", "/api/me").body)["budget"]["user_tokens_per_day"]
    assert (day["used"], day["loaded"]) == (7000, True)
    served = call(stack, token)
    assert served.status == 200, served.body
    used = 7000 + json.loads(served.body)["usage"]["total_tokens"]
    wait_until(lambda: table_tokens(relays, oid) == used, 10 * FLUSH_S + SLACK_S)
    row = table_row(relays, oid)
    assert (row["Tokens"].edm_type, row["MinuteTokens"].edm_type) == (EdmType.INT64, EdmType.INT64)


def test_with_azurite_down_the_relays_keep_serving_and_enforcing_and_no_usage_is_lost(relays: Relays) -> None:
    spender, blocked = "0a7a0e00-0000-4000-8000-00000000b003", "0a7a0e00-0000-4000-8000-00000000b004"
    spend_tokens, blocked_tokens = relays.tokens(spender), relays.tokens(blocked)
    block(relays, blocked, "alert-outage")
    for stack, token in zip(relays.stacks, blocked_tokens, strict=True):
        wait_until(lambda s=stack, t=token: call(s, t).status == 403, REFRESH_S + SLACK_S)
    admitted = 0

    def round_of_requests() -> None:
        nonlocal admitted
        for i, stack in enumerate(relays.stacks):
            served = call(stack, spend_tokens[i])
            assert served.status == 200, served.body
            admitted += json.loads(served.body)["usage"]["total_tokens"]
            refused = call(stack, blocked_tokens[i])
            assert (refused.status, code_of(refused)) == (403, "user_blocked")

    round_of_requests()
    before = {name: [len(each) for each in relays.events(name)] for name in ("budget.sync_failed", "budget.sync_recovered")}
    relays.azurite.stop()
    outage_start = time.monotonic()
    while time.monotonic() - outage_start < 3 * REFRESH_S + 4 * FLUSH_S:
        round_of_requests()
        time.sleep(0.3)
    for failed in relays.events("blocklist.refresh_failed"):
        assert failed and failed[-1]["kept_entries"] >= 1, "an instance did not say it keeps its last good copy"
    failed_syncs = [len(each) - n for each, n in zip(relays.events("budget.sync_failed"), before["budget.sync_failed"], strict=True)]
    assert failed_syncs == [1, 1, 1], "each instance says once that its tokens wait for storage"

    relays.azurite.start()
    round_of_requests()
    took = wait_until(lambda: table_tokens(relays, spender) == admitted, 20 * FLUSH_S + SLACK_S, step=0.25)
    print(
        f"{admitted} tokens admitted around an outage of {time.monotonic() - outage_start - took:.1f} s, all in the table {took:.1f} s after Azurite came back"
    )
    recovered = [len(each) - n for each, n in zip(relays.events("budget.sync_recovered"), before["budget.sync_recovered"], strict=True)]
    assert recovered == [1, 1, 1]
    wait_until(lambda: all(loaded[-1]["failed_reads_before"] >= 1 for loaded in relays.events("blocklist.loaded")), 2 * REFRESH_S + SLACK_S)
    for stack, token in zip(relays.stacks, blocked_tokens, strict=True):
        assert call(stack, token).status == 403
    statuses = {json.loads(line)["status"] for s in relays.stacks for line in s.log_lines() if '"event":"relay.request"' in line}
    assert statuses <= {200, 403, 429}, statuses
