"""Token budgets under bursts, on one relay over real sockets: the emulator's bill is the measure.

``python -m devhost`` with its own emulator and Azurite, a user day budget of ``DAY_LIMIT`` and
a tenant day budget of ``TENANT_LIMIT``, the counts written every ``FLUSH_S``. Each test sends
waves of concurrent requests for long answers until the relay refuses them for the rest of the
day, then adds up what the emulator billed for them (docs/design.md, "Block list and token
budgets", for the bounds checked here). Three relays on one Azurite:
tests/integration/test_shared_controls.py.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from shared.budget import ALLOWANCE_DIVISOR, PROMPT_BYTES_PER_TOKEN
from tests.support import rawhttp
from tests.support.bursts import billed, burst, chat_body, code_of, post, refused_for_the_day
from tests.support.stack import Stack, run_stack

DAY_LIMIT = 2000
TENANT_LIMIT = 20000
FLUSH_S = 0.5
BURST = 25
WORDS = 400  # a long answer: 400 tokens, five times what the allowance of one instance lets a request hold here


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("budgets")
    env = {
        "RELAY_BUDGET_USER_TOKENS_PER_DAY": str(DAY_LIMIT),
        "RELAY_BUDGET_TENANT_TOKENS_PER_DAY": str(TENANT_LIMIT),
        "RELAY_BUDGET_FLUSH_S": str(FLUSH_S),
        "RELAY_USER_MAX_IN_FLIGHT": str(BURST),
        "AZURITE_DIR": str(tmp / "azurite"),
    }
    with run_stack(tmp, env) as running:
        yield running


def new_oid() -> str:
    return str(uuid.uuid4())


def waves_until_refused_for_the_day(
    stack: Stack, tokens: list[str], body: bytes, per_user: int, timeout_s: float = 90.0
) -> list[rawhttp.RawResponse]:
    """Bursts of ``per_user`` concurrent requests from each user, until a whole burst is refused for the rest of the day."""
    answered: list[rawhttp.RawResponse] = []
    start = time.monotonic()
    while True:
        assert time.monotonic() - start < timeout_s, f"still admitted after {timeout_s} s"
        responses = burst([(stack.port, token, body) for token in tokens for _ in range(per_user)])
        for response in responses:
            assert response.status in (200, 429), response.body[:300]
            if response.status == 429:
                assert code_of(response) == "user_quota_exceeded"
        answered += [response for response in responses if response.status == 200]
        if all(refused_for_the_day(response) for response in responses):
            return answered
        time.sleep(0.05)


def test_a_burst_of_long_answers_from_one_user_spends_at_most_the_day_budget_plus_ten_percent(budgeted: Stack) -> None:
    marker = f"burst-{uuid.uuid4().hex}"
    token = budgeted.token(oid=new_oid())
    answered = waves_until_refused_for_the_day(budgeted, [token], chat_body(marker, WORDS), BURST)
    spent = billed(budgeted.requests(), marker)
    print(f"user day budget {DAY_LIMIT}: {len(answered)} answers, the emulator billed {spent} tokens")
    assert DAY_LIMIT * 0.9 <= spent <= DAY_LIMIT * 1.1
    finishes = [json.loads(response.body)["choices"][0]["finish_reason"] for response in answered]
    assert set(finishes) == {"length"}, "a 400-word answer was served whole past what the budget left"


def test_many_users_of_one_tenant_bursting_spend_at_most_the_tenant_budget_plus_ten_percent(budgeted: Stack) -> None:
    marker = f"tenant-{uuid.uuid4().hex}"
    tenant = str(uuid.uuid4())
    tokens = [budgeted.token(oid=new_oid(), tid=tenant) for _ in range(15)]  # 15 x 2,000 would be 30,000
    waves_until_refused_for_the_day(budgeted, tokens, chat_body(marker, WORDS), 2)
    spent = billed(budgeted.requests(), marker)
    print(f"tenant day budget {TENANT_LIMIT}: the emulator billed {spent} tokens to 15 users")
    assert TENANT_LIMIT * 0.9 <= spent <= TENANT_LIMIT * 1.1


def test_a_burst_whose_prompts_cost_more_than_the_estimate_stays_within_the_stated_bound(budgeted: Stack) -> None:
    marker = f"underestimated-{uuid.uuid4().hex}"
    billed_prompt = 300
    body = chat_body(marker, WORDS, prompt_tokens=billed_prompt)
    estimate = -(-len(body) // PROMPT_BYTES_PER_TOKEN)
    assert estimate < billed_prompt / 4, "the relay's estimate must be well below what the prompt is billed"
    token = budgeted.token(oid=new_oid())
    answered = waves_until_refused_for_the_day(budgeted, [token], body, BURST)
    spent = billed(budgeted.requests(), marker)
    # docs/design.md: beyond the limit, at most the requests admitted at once, each by what its prompt cost over
    # its estimate; at once, an instance admits no more than its allowance holds (each at least estimate + 1).
    at_once = min(BURST, (DAY_LIMIT // ALLOWANCE_DIVISOR) // (estimate + 1))
    bound = DAY_LIMIT + at_once * (billed_prompt - estimate)
    print(f"prompts billed {billed_prompt} tokens, estimated {estimate}: {len(answered)} answers, billed {spent}, bound {bound}")
    assert spent <= bound


def test_one_user_holding_many_streams_does_not_make_another_users_request_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    env = {"RELAY_UPSTREAM_CONNECTIONS": "8", "RELAY_USER_MAX_IN_FLIGHT": "4", "RELAY_BUSY_TIMEOUT_S": "0.5"}
    with run_stack(tmp_path_factory.mktemp("in-flight"), env) as stack:
        hog = stack.token(oid=new_oid())
        body = json.dumps({"messages": [{"role": "user", "content": "[emulate:think=20]"}], "stream": True}).encode()
        held: list[socket.socket] = []
        statuses = []
        try:
            for _ in range(12):
                sock = rawhttp.connect(stack.port, timeout=10)
                held.append(sock)
                rawhttp.send_request(
                    sock,
                    "POST",
                    "/api/v1/chat/completions",
                    [("Authorization", f"Bearer {hog}"), ("Content-Type", "application/json")],
                    body,
                )
                status, headers = rawhttp.ResponseReader(sock).head()
                statuses.append((status, dict((k.lower(), v) for k, v in headers).get("retry-after")))
            assert statuses.count((200, None)) == 4
            assert statuses.count((429, "1")) == 8
            other = post(stack.port, stack.token(oid=new_oid()), json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode())
            assert other.status == 200, other.body[:300]
        finally:
            for sock in held:
                sock.close()
