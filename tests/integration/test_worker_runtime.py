"""The Functions Python worker behind the local host (``DEVHOST_RUNTIME=worker``), over real sockets.

The contract tests run once per runtime (the ``stack`` fixture); these tests make sure that "worker" really
means the worker: the request's record comes over ``FunctionRpc`` as an ``RpcLog`` naming the invocation the host
forwarded to the worker's ``HttpUri``.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.stack import Stack, run_stack

STATUS_PATH = "/_dev/functions-host"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def functions_host_status(stack: Stack) -> dict[str, Any] | None:
    status, body = get(f"{stack.base_url}{STATUS_PATH}")
    return json.loads(body) if status == 200 else None


def relay_log_lines(stack: Stack, request_id: str, timeout: float = 5.0) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The host's status and the worker's ``RpcLog`` lines for the request (they travel apart from the response)."""
    deadline = time.monotonic() + timeout
    while True:
        status = functions_host_status(stack)
        if status is None:
            return None, []
        lines = [entry for entry in status["rpc_log"] if entry["log_category"] == "User" and f'"{request_id}"' in entry["message"]]
        if lines or time.monotonic() > deadline:
            return status, lines
        time.sleep(0.05)


def runtime_that_served(stack: Stack, request_id: str) -> str:
    """``worker`` when the worker, serving HTTP itself, logged the request over FunctionRpc in the invocation's name."""
    status, relay_lines = relay_log_lines(stack, request_id)
    if status is None:
        served_here = [line for line in stack.log_lines() if f'"{request_id}"' in line]
        return "in-process" if served_here else "nobody"
    if len(relay_lines) != 1 or not relay_lines[0]["invocation_id"]:
        return "nobody"
    return "worker" if status["worker"]["http_uri"] else "nobody"


def test_the_runtime_under_test_is_the_one_that_served(stack: Stack) -> None:
    request_id = f"runtime-probe-{uuid.uuid4().hex[:12]}"
    status, body = get(f"{stack.api}/me", {"Authorization": f"Bearer {stack.token()}", "x-request-id": request_id})
    assert status == 200, body
    assert runtime_that_served(stack, request_id) == stack.runtime


def test_the_worker_library_sends_no_info_lines_per_invocation_only_the_relays_record(stack: Stack) -> None:
    """Its three INFO lines a request ("Received HTTP request for invocation ...") would be three more RpcLog messages."""
    if stack.runtime != "worker":
        pytest.skip("the worker runtime only")
    request_id = f"quiet-probe-{uuid.uuid4().hex[:12]}"
    status, body = get(f"{stack.api}/me", {"Authorization": f"Bearer {stack.token()}", "x-request-id": request_id})
    assert status == 200, body
    host, relay_lines = relay_log_lines(stack, request_id)
    assert host is not None and len(relay_lines) == 1
    invocation_id = relay_lines[0]["invocation_id"]
    named = [entry for entry in host["rpc_log"] if invocation_id in (entry["invocation_id"], *entry["message"].split())]
    assert named == relay_lines


def test_the_worker_serves_from_its_own_http_server_with_the_functions_it_indexed(stack: Stack) -> None:
    if stack.runtime != "worker":
        pytest.skip("the worker runtime only")
    status = functions_host_status(stack)
    assert status is not None
    worker = status["worker"]
    uri = urlsplit(worker["http_uri"])
    assert (uri.scheme, uri.hostname) == ("http", "127.0.0.1")
    assert uri.port != urlsplit(stack.base_url).port
    assert worker["init_error"] is None
    assert {"HttpUri", "RequiresRouteParameters", "RpcHttpTriggerMetadataRemoved"} <= set(worker["capabilities"])
    routes = {f["name"]: (f["route"], f["methods"], f["load_error"]) for f in status["functions"]}
    assert routes == {
        "chat_completions": ("api/v1/chat/completions", ["POST"], None),
        "models": ("api/v1/models", ["GET"], None),
        "responses_create": ("api/v1/responses", ["POST"], None),
        "responses_retrieve_or_delete": ("api/v1/responses/{response_id}", ["DELETE", "GET"], None),
        "responses_cancel": ("api/v1/responses/{response_id}/cancel", ["POST"], None),
        "responses_input_items": ("api/v1/responses/{response_id}/input_items", ["GET"], None),
        "conversations_create": ("api/v1/conversations", ["POST"], None),
        "conversations_retrieve_or_delete": ("api/v1/conversations/{conversation_id}", ["DELETE", "GET"], None),
        "conversations_items": ("api/v1/conversations/{conversation_id}/items", ["GET"], None),
        "unsupported_v1_route": ("api/v1/{*path}", ["DELETE", "GET", "PATCH", "POST", "PUT"], None),
        "me": ("api/me", ["GET"], None),
        "healthz": ("api/healthz", ["GET"], None),
    }


def test_a_start_up_configuration_error_is_reported_as_the_worker_reports_it(tmp_path: Path) -> None:
    """The worker fails to index function_app.py: the host logs why, finds no functions, and every route is 404."""
    with run_stack(tmp_path, {"DEVHOST_RUNTIME": "worker", "APPLICATION_NAME": ""}) as stack:
        token = stack.token()
        health, _ = get(f"{stack.api}/healthz")
        chat = urllib.request.Request(
            f"{stack.api}/v1/chat/completions",
            data=b'{"messages":[{"role":"user","content":"hi"}]}',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(chat, timeout=20)
            chat_status = 200
        except urllib.error.HTTPError as err:
            chat_status = err.code
        status = functions_host_status(stack)
        requests_seen = stack.requests()
        log = "\n".join(stack.log_lines())
    assert (health, chat_status) == (404, 404)
    assert requests_seen == []
    assert status is not None and status["functions"] == []
    assert "APPLICATION_NAME is required" in status["worker"]["init_error"]
    assert "Initializing worker process failed: " in log and "APPLICATION_NAME is required" in log
    assert "0 functions found (Worker)" in log


def _stream(stack: Stack, token: str, words: int, chunk_delay_ms: int, first_event: threading.Event) -> bytes:
    """A streamed chat completion as the caller receives it, cut short or whole; ``first_event`` is set at its first bytes."""
    body = {"stream": True, "messages": [{"role": "user", "content": f"[emulate:words={words}] [emulate:chunk_delay_ms={chunk_delay_ms}]"}]}
    request = urllib.request.Request(
        f"{stack.api}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    received = b""
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            while chunk := resp.read1(65536):
                received += chunk
                first_event.set()
    except (http.client.IncompleteRead, ConnectionError) as exc:
        received += getattr(exc, "partial", b"")
    return received


def test_an_invocation_id_sent_by_an_anonymous_caller_times_out_and_restarts_the_worker_ending_its_streams(tmp_path: Path) -> None:
    """As the Functions host: a caller's x-ms-invocation-id is kept, so the host's own invocation never gets its
    request; after functionTimeout it fails with the host's log line and the worker restarts, ending every stream."""
    env = {"DEVHOST_RUNTIME": "worker", "AzureFunctionsJobHost__functionTimeout": "00:00:06"}
    with run_stack(tmp_path, env) as stack, ThreadPoolExecutor(2) as pool:
        before = functions_host_status(stack)
        assert before is not None
        token = stack.token()
        started = time.monotonic()
        forged = pool.submit(get, f"{stack.api}/healthz", {"x-ms-invocation-id": str(uuid.uuid4())})
        time.sleep(1.5)
        # A legitimate stream of about 12 s, started while the forged invocation hangs (and timed out, if at all, later).
        first_event = threading.Event()
        stream = pool.submit(_stream, stack, token, 120, 100, first_event)
        assert first_event.wait(timeout=20) and not forged.done(), "the stream did not start before the forged invocation ended"
        forged_status, _ = forged.result(timeout=30)
        waited = time.monotonic() - started
        streamed = stream.result(timeout=30)
        # Served once the new worker runs (the host holds invocations while it restarts).
        health, _ = get(f"{stack.api}/healthz")
        me, _ = get(f"{stack.api}/me", {"Authorization": f"Bearer {token}"})
        # Nothing left executing (an invocation ends a moment after its response, when the worker's result is in).
        deadline = time.monotonic() + 10
        while (after := functions_host_status(stack)) is not None and after["executing_invocations"] and time.monotonic() < deadline:
            time.sleep(0.1)
        log = "\n".join(stack.log_lines())
    assert forged_status == 502 and 6 <= waited < 20, (forged_status, waited)
    assert b"data: " in streamed and b"[DONE]" not in streamed
    assert after is not None and after["worker"]["restarts"] >= 1 and after["worker"]["pid"] != before["worker"]["pid"]
    assert after["executing_invocations"] == 0
    assert (health, me) == (200, 200)
    timed_out = re.search(
        r"Timeout value of 00:00:06 exceeded by function 'Functions\.healthz' \(Id: '([0-9a-f-]{36})'\)\. Initiating cancellation\.", log
    )
    assert timed_out is not None, log[-3000:]
    assert f"A function timeout has occurred. Restarting worker process executing invocationId '{timed_out.group(1)}'." in log
    assert re.search(
        rf"Executed 'Functions\.healthz' \(Failed: Timeout value of 00:00:06 was exceeded by function: Functions\.healthz, Id={timed_out.group(1)}",
        log,
    )
    assert "Restart of language worker process(es) completed." in log
