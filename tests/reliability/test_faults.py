"""Fault injection over real sockets: every upstream and caller failure gets its answer from the error table (docs/design.md).

openai SDK / raw socket -> local App Service front end -> relay -> (FaultProxy ->) Azure OpenAI emulator.
After each fault the relay must still be healthy: liveness answers, the next
request (streamed and not) succeeds, and no asyncio task or socket is left behind.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from devhost.emulator.generation import plan_answer
from tests.reliability.common import (
    RELAY_TIMEOUT_S,
    Proxied,
    assert_healthy,
    client,
    new_id,
    open_chat_stream,
    probe,
    records_for,
    sse_events,
    wait_for_outcomes,
    wait_until_upstream_has,
)
from tests.support import rawhttp
from tests.support.chat import user
from tests.support.stack import Stack

# A loaded two-core machine can hold a process off the CPU for a second; each regression these bounds catch
# (a wait for the next chunk, the end of a stream, a Retry-After or a stalled answer) takes longer than this.
PROMPTLY_S = 3.0


def wait_until_settled(stack: Stack, baseline: dict[str, int], timeout: float = 5.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = probe(stack)
        if now["tasks"] <= baseline["tasks"] or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


@pytest.fixture
def healthy_after(stack: Stack) -> Iterator[None]:
    """Around a fault: afterwards the relay answers, serves the next request and leaked no task."""
    assert_healthy(stack)
    before = probe(stack)
    yield
    assert_healthy(stack)
    after = wait_until_settled(stack, before)
    assert after["tasks"] <= before["tasks"], (before, after)


@pytest.fixture
def proxy_healthy_after(proxied: Proxied) -> Iterator[None]:
    proxied.proxy.set_mode("forward")
    assert_healthy(proxied.stack)
    yield
    proxied.proxy.set_mode("forward")
    assert_healthy(proxied.stack)


def expect_status_error(stack: Stack, prompt: str, status: int, code: str, **create: Any) -> tuple[openai.APIStatusError, str, float]:
    request_id = new_id("fault")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client(stack, request_id).chat.completions.create(model="gpt-4o-mini", messages=user(prompt), **create)
    elapsed = time.monotonic() - started
    error = caught.value
    assert (error.status_code, error.code) == (status, code), error.response.text
    body = error.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert error.response.headers.get("x-request-id") == stack.request_log(request_id)["request_id"]
    text = error.response.text
    assert "Traceback" not in text and "127.0.0.1" not in text and "http://" not in text
    return error, request_id, elapsed


def stream_raw(stack: Stack, prompt: str, request_id: str, **extra: Any) -> tuple[int, bytes]:
    """A streamed request with httpx: status and every byte of the body, however the stream ended."""
    body = {"model": "gpt-4o-mini", "messages": user(prompt), "stream": True, **extra}
    headers = {"Authorization": f"Bearer {stack.token()}", "x-request-id": request_id}
    received = b""
    with httpx2.Client(timeout=20) as http, http.stream("POST", f"{stack.api}/v1/chat/completions", json=body, headers=headers) as resp:
        try:
            for piece in resp.iter_raw():
                received += piece
        except httpx2.HTTPError as exc:
            raise AssertionError(f"the relay broke the stream instead of ending it with an error event: {exc!r}") from exc
        return resp.status_code, received


def assert_ends_with_error_event(raw: bytes, code: str) -> list[tuple[str | None, str]]:
    events = sse_events(raw)
    assert raw.endswith(b"\n\n"), "the relay sent half an event"
    name, data = events[-1]
    assert name == "error", events[-3:]
    assert json.loads(data)["error"]["code"] == code
    for name, data in events[:-1]:
        assert name is None and (data == "[DONE]" or isinstance(json.loads(data), dict)), "a malformed event was forwarded"
    assert all(data != "[DONE]" for _, data in events)
    return events


# --- upstream status codes ----------------------------------------------------------------------


def test_429_with_short_retry_after_is_retried_then_passed_on(stack: Stack, healthy_after: None) -> None:
    error, request_id, elapsed = expect_status_error(stack, "[emulate:rate_limit=1]", 429, "rate_limited")
    assert error.response.headers["retry-after"] == "1"
    records = records_for(stack, request_id)
    assert len(records) == 3, "bounded: the first try and two retries"
    gaps = [b["received_at"] - a["received_at"] for a, b in itertools.pairwise(records)]
    assert all(gap >= 0.95 for gap in gaps), f"Retry-After not honoured: {gaps}"
    assert elapsed - sum(gaps) < PROMPTLY_S, f"{elapsed:.2f} s, of which {sum(gaps):.2f} s waiting out Retry-After"


def test_429_with_long_retry_after_goes_straight_back(stack: Stack, healthy_after: None) -> None:
    error, request_id, elapsed = expect_status_error(stack, "[emulate:rate_limit=7]", 429, "rate_limited")
    assert error.response.headers["retry-after"] == "7"
    assert len(records_for(stack, request_id)) == 1, "a long Retry-After must not hold the caller's request"
    assert elapsed < 7 - PROMPTLY_S, f"{elapsed:.2f} s: the relay waited out the Retry-After"


def test_429_without_retry_after(stack: Stack, healthy_after: None) -> None:
    error, request_id, _ = expect_status_error(stack, "[emulate:status=429]", 429, "rate_limited")
    assert int(error.response.headers["retry-after"]) >= 1
    assert len(records_for(stack, request_id)) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_upstream_5xx_is_502_after_bounded_retries(stack: Stack, healthy_after: None, status: int) -> None:
    _, request_id, elapsed = expect_status_error(stack, f"[emulate:status={status}]", 502, "upstream_error")
    records = records_for(stack, request_id)
    assert len(records) == 3 and all(r["status"] == status for r in records)
    assert elapsed < PROMPTLY_S, f"{elapsed:.2f} s for three quick attempts"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_upstream_auth_and_not_found_are_502_without_retry(stack: Stack, healthy_after: None, status: int) -> None:
    _, request_id, _ = expect_status_error(stack, f"[emulate:status={status}]", 502, "upstream_error")
    assert len(records_for(stack, request_id)) == 1


def test_streamed_request_with_upstream_error_gets_a_plain_error_response(stack: Stack, healthy_after: None) -> None:
    expect_status_error(stack, "[emulate:status=503]", 502, "upstream_error", stream=True)
    expect_status_error(stack, "[emulate:rate_limit=9]", 429, "rate_limited", stream=True)


# --- connections ------------------------------------------------------------------------------------


def test_connection_refused_is_502(proxied: Proxied, proxy_healthy_after: None) -> None:
    proxied.proxy.set_mode("refuse")
    accepted = proxied.proxy.accepted
    expect_status_error(proxied.stack, "hello", 502, "upstream_error")
    expect_status_error(proxied.stack, "hello", 502, "upstream_error", stream=True)
    assert proxied.proxy.accepted == accepted


def test_tcp_reset_before_the_first_byte_is_502_after_bounded_retries(proxied: Proxied, proxy_healthy_after: None) -> None:
    proxied.proxy.set_mode("reset")
    accepted = proxied.proxy.accepted
    expect_status_error(proxied.stack, "hello", 502, "upstream_error")
    assert proxied.proxy.accepted - accepted == 3


def test_silent_upstream_is_504(proxied: Proxied, proxy_healthy_after: None) -> None:
    proxied.proxy.set_mode("stall")
    accepted = proxied.proxy.accepted
    _, _, elapsed = expect_status_error(proxied.stack, "hello", 504, "upstream_timeout")
    assert proxied.proxy.accepted - accepted == 1, "a timeout must not be retried into a multiple of itself"
    assert RELAY_TIMEOUT_S - 0.1 <= elapsed < RELAY_TIMEOUT_S + PROMPTLY_S


def test_connection_dropped_before_the_response_is_502_after_bounded_retries(stack: Stack, healthy_after: None) -> None:
    _, request_id, _ = expect_status_error(stack, "[emulate:disconnect]", 502, "upstream_error")
    records = records_for(stack, request_id)
    assert len(records) == 3 and {r["outcome"] for r in records} == {"failed"}


def test_connection_dropped_mid_stream_ends_with_an_error_event_and_is_never_retried(stack: Stack, healthy_after: None) -> None:
    request_id = new_id("midstream")
    status, raw = stream_raw(stack, "[emulate:midstream_fail] tell me a story", request_id)
    assert status == 200
    events = assert_ends_with_error_event(raw, "upstream_error")
    assert any('"content"' in data for _, data in events[:-1]), "the chunks before the failure reach the caller"
    assert len(wait_for_outcomes(stack, request_id)) == 1, "retried after streaming started"


def test_sdk_sees_the_mid_stream_error(stack: Stack, healthy_after: None) -> None:
    chunks = client(stack).chat.completions.create(model="gpt-4o-mini", messages=user("[emulate:midstream_fail] story"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        for _ in chunks:
            pass
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "upstream_error"


def test_connection_dropped_mid_body_is_502_and_never_retried(stack: Stack, healthy_after: None) -> None:
    _, request_id, _ = expect_status_error(stack, "[emulate:midstream_fail]", 502, "upstream_error")
    assert len(wait_for_outcomes(stack, request_id)) == 1


# --- timeouts ----------------------------------------------------------------------------------------


def test_upstream_stalled_before_headers_is_504_and_the_upstream_request_is_abandoned(stack: Stack, healthy_after: None) -> None:
    _, request_id, elapsed = expect_status_error(stack, "[emulate:slow=6]", 504, "upstream_timeout")
    assert elapsed < RELAY_TIMEOUT_S + PROMPTLY_S, "the caller waited for the stalled answer"
    records = wait_for_outcomes(stack, request_id)
    assert len(records) == 1 and records[0]["outcome"] == "cancelled", "a timeout must not be retried into a multiple of itself"


def test_streamed_request_stalled_before_headers_is_504(stack: Stack, healthy_after: None) -> None:
    expect_status_error(stack, "[emulate:slow=6]", 504, "upstream_timeout", stream=True)


def test_upstream_stalled_mid_stream_ends_with_a_timeout_event(stack: Stack, healthy_after: None) -> None:
    request_id = new_id("stall")
    started = time.monotonic()
    status, raw = stream_raw(stack, "[emulate:chunk_delay_ms=8000] words", request_id)
    assert status == 200
    assert_ends_with_error_event(raw, "upstream_timeout")
    assert time.monotonic() - started < RELAY_TIMEOUT_S + PROMPTLY_S, "the relay waited for the next chunk"
    records = wait_for_outcomes(stack, request_id)
    assert len(records) == 1 and records[0]["outcome"] == "cancelled"


# --- malformed upstream -----------------------------------------------------------------------------


def test_malformed_json_is_502(stack: Stack, healthy_after: None) -> None:
    expect_status_error(stack, "[emulate:bad_json]", 502, "upstream_error")


def test_malformed_sse_ends_with_an_error_event_without_forwarding_the_bad_event(stack: Stack, healthy_after: None) -> None:
    request_id = new_id("badsse")
    status, raw = stream_raw(stack, "[emulate:bad_json] words", request_id)
    assert status == 200
    assert_ends_with_error_event(raw, "upstream_error")
    assert b"chatcmpl-broken" not in raw


# --- callers that misbehave -------------------------------------------------------------------------


def hang_up_and_time_cancellation(stack: Stack, prompt: str) -> float:
    request_id = new_id("gone")
    sock, reader = open_chat_stream(stack, prompt, request_id)
    status, _ = reader.head()
    assert status == 200
    next(reader.body_pieces())  # the stream has started
    sock.close()
    left = time.time()
    records = wait_for_outcomes(stack, request_id, timeout=5)
    assert len(records) == 1 and records[0]["outcome"] == "cancelled", records
    return float(records[0]["finished_at"]) - left


def test_caller_hanging_up_mid_stream_cancels_the_upstream_request_long_before_it_ends(stack: Stack, healthy_after: None) -> None:
    cancelled_before = stack.stats()["cancelled_streams"]
    # The upstream stream would run another 8 s.
    assert hang_up_and_time_cancellation(stack, "[emulate:words=400] [emulate:chunk_delay_ms=20] go on") < PROMPTLY_S
    assert stack.stats()["cancelled_streams"] == cancelled_before + 1


def test_caller_hanging_up_while_the_upstream_is_quiet_cancels_it_before_the_next_chunk(stack: Stack, healthy_after: None) -> None:
    assert hang_up_and_time_cancellation(stack, "[emulate:words=3] [emulate:chunk_delay_ms=8000] go on") < PROMPTLY_S


def test_caller_hanging_up_before_the_response_started_cancels_the_upstream_request(stack: Stack, healthy_after: None) -> None:
    request_id = new_id("early")
    sock, _ = open_chat_stream(stack, f"[emulate:slow=1.4] hello {request_id}", request_id)
    wait_until_upstream_has(stack, request_id)
    sock.close()
    left = time.time()
    records = wait_for_outcomes(stack, request_id, timeout=5)
    assert len(records) == 1 and records[0]["outcome"] == "cancelled", records
    assert records[0]["status"] is None, "the upstream answered before the relay let it go"
    assert float(records[0]["finished_at"]) - left < PROMPTLY_S


def test_slow_reading_caller_gets_every_byte_and_does_not_hold_up_others(stack: Stack, healthy_after: None) -> None:
    words = 1500
    request_id = new_id("slowreader")
    sock, reader = open_chat_stream(stack, f"[emulate:words={words}] a slow reader", request_id, rcvbuf=4096)
    with sock:
        status, _ = reader.head()
        assert status == 200
        received = b""
        pieces = reader.body_pieces()
        first = next(pieces)
        received += first
        # While this caller dawdles, others are served promptly.
        started = time.monotonic()
        assert_healthy(stack)
        assert time.monotonic() - started < PROMPTLY_S
        for piece in pieces:
            received += piece
            time.sleep(0.002)
        assert reader.complete
    events = sse_events(received)
    assert events[-1] == (None, "[DONE]")
    text = "".join((choice.get("delta") or {}).get("content") or "" for _, data in events[:-1] for choice in json.loads(data)["choices"])
    assert text == plan_answer("gpt-4o-mini", user(f"[emulate:words={words}] a slow reader"), words, None).text
    records = wait_for_outcomes(stack, request_id)
    assert records[0]["outcome"] == "completed"


def test_caller_hanging_up_while_sending_the_body_is_not_an_unhandled_error(stack: Stack, healthy_after: None) -> None:
    lines_before = len(stack.log_lines())
    with rawhttp.connect(stack.port) as sock:
        head = f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {stack.token()}\r\nContent-Length: 5000\r\n\r\n"
        sock.sendall(head.encode() + b'{"messages": [')
        time.sleep(0.2)
    time.sleep(0.3)
    new_lines = "\n".join(stack.log_lines()[lines_before:])
    assert "Traceback" not in new_lines and "Exception in ASGI application" not in new_lines, new_lines
