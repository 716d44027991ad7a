"""The Functions Python worker behind the local host (``DEVHOST_RUNTIME=worker``), over real sockets.

The contract tests run once per runtime (the ``stack`` fixture); these tests make sure that "worker" really
means the worker: its ``RpcLog`` lines name the invocation the host forwarded to its ``HttpUri``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
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
    """``worker`` when the worker logged the request over FunctionRpc for the invocation its HTTP server received."""
    status, relay_lines = relay_log_lines(stack, request_id)
    if status is None:
        served_here = [line for line in stack.log_lines() if f'"{request_id}"' in line]
        return "in-process" if served_here else "nobody"
    if len(relay_lines) != 1 or not relay_lines[0]["invocation_id"]:
        return "nobody"
    logs = status["rpc_log"]
    invocation_id = relay_lines[0]["invocation_id"]
    received = f"Received HTTP request for invocation {invocation_id}"
    worker_http = [entry for entry in logs if entry["category"] == "azure.functions" and entry["message"] == received]
    return "worker" if worker_http else "nobody"


def test_the_runtime_under_test_is_the_one_that_served(stack: Stack) -> None:
    request_id = f"runtime-probe-{uuid.uuid4().hex[:12]}"
    status, body = get(f"{stack.api}/me", {"Authorization": f"Bearer {stack.token()}", "x-request-id": request_id})
    assert status == 200, body
    assert runtime_that_served(stack, request_id) == stack.runtime


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
