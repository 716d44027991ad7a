"""What the platform in front of the relay enforces, as the local host emulates it, over real sockets.

DNS rebinding (only loopback host names), Kestrel's header, body and timing limits,
and Easy Auth's refusal of cookie-authenticated cross-site requests. The stack runs
with short timeouts so the slow-client cases finish in seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import rawhttp
from tests.support.stack import Stack, run_stack

HEADER_TIMEOUT_S = 1.0
CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"DEVHOST_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "DEVHOST_BODY_GRACE_S": "0.5", "DEVHOST_MIN_BODY_RATE": "1000"}
    with run_stack(Path(tmp_path_factory.mktemp("limits")), env) as running:
        yield running


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7071", "127.0.0.1.nip.io", "localhost.evil.example", "10.0.0.5"])
def test_a_rebound_host_name_gets_no_dev_token_and_reaches_nothing(stack: Stack, host: str) -> None:
    for target in ("/_dev/token", "/api/healthz", "/"):
        response = rawhttp.request(stack.port, "GET", target, [], host=host)
        assert response.status == 403, (host, target)
        assert b"access_token" not in response.body


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
def test_loopback_host_names_are_served_with_or_without_the_port(stack: Stack, host: str) -> None:
    for value in (host, f"{host}:{stack.port}"):
        assert rawhttp.request(stack.port, "GET", "/_dev/token", [], host=value).status == 200


def test_headers_over_32_kib_are_431(stack: Stack) -> None:
    big = [("X-Padding", "x" * 33_000)]
    assert rawhttp.request(stack.port, "GET", "/api/healthz", big).status == 431
    assert rawhttp.request(stack.port, "GET", "/api/healthz", [("X-Padding", "x" * 30_000)]).status == 200


def test_a_declared_body_over_the_hosts_limit_is_413_before_it_is_read(stack: Stack) -> None:
    with rawhttp.connect(stack.port) as sock:
        sock.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 30000001\r\n\r\n")
        status, _ = rawhttp.ResponseReader(sock).head()
    assert status == 413


def test_headers_trickled_slower_than_the_header_timeout_end_the_connection(stack: Stack) -> None:
    with rawhttp.connect(stack.port, timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /api/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        try:
            for _ in range(80):  # 8 s of trickle: a timeout that restarted with each line would answer after it
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert HEADER_TIMEOUT_S <= elapsed < HEADER_TIMEOUT_S + 5


def test_a_body_slower_than_the_minimum_rate_is_408_and_never_reaches_azure(stack: Stack) -> None:
    before = stack.stats()["chat_requests"]
    token = stack.token()
    with rawhttp.connect(stack.port, timeout=10) as sock:
        head = f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        sock.sendall(f"{head}Content-Type: application/json\r\nContent-Length: {len(CHAT)}\r\n\r\n".encode() + CHAT[:10])
        status, _ = rawhttp.ResponseReader(sock).head()
    assert status == 408
    assert stack.stats()["chat_requests"] == before


def sign_in(stack: Stack) -> str:
    form = b"oid=1b2c3d4e-0000-4000-8000-000000000003&tid=72f988bf-0000-4000-8000-000000000002&name=Ada"
    response = rawhttp.request(stack.port, "POST", "/.auth/login/aad", [("Content-Type", "application/x-www-form-urlencoded")], form)
    cookie = response.header("set-cookie") or ""
    return cookie.split(";", 1)[0]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param([("User-Agent", BROWSER), ("Origin", "https://evil.example")], 403, id="browser-from-another-site"),
        pytest.param([("User-Agent", BROWSER)], 403, id="browser-without-origin"),
        pytest.param([("User-Agent", BROWSER), ("Origin", "http://127.0.0.1")], 200, id="browser-from-the-app-itself"),
        pytest.param([("User-Agent", "curl/8.5")], 200, id="not-a-browser"),
    ],
)
def test_a_cookie_authenticated_post_from_another_site_is_refused(stack: Stack, headers: list[tuple[str, str]], status: int) -> None:
    cookie = sign_in(stack)
    before = stack.stats()["chat_requests"]
    response = rawhttp.request(
        stack.port, "POST", "/api/v1/chat/completions", [("Cookie", cookie), ("Content-Type", "application/json"), *headers], CHAT
    )
    assert response.status == status, response.body[:200]
    assert stack.stats()["chat_requests"] == before + (status == 200)


def test_a_bearer_token_caller_is_not_subject_to_the_cookie_check(stack: Stack) -> None:
    headers = [("Authorization", f"Bearer {stack.token()}"), ("User-Agent", BROWSER), ("Origin", "https://spa.example")]
    response = rawhttp.request(stack.port, "POST", "/api/v1/chat/completions", [*headers, ("Content-Type", "application/json")], CHAT)
    assert response.status == 200
