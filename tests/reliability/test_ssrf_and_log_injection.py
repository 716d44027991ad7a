"""SSRF and log injection: a caller cannot steer where the relay connects, nor forge or split its log lines."""

from __future__ import annotations

import json

import openai
import pytest

from shared.config import ConfigError, load_settings
from tests.reliability.common import client, new_id, records_for
from tests.support import rawhttp
from tests.support.chat import user
from tests.support.stack import Stack

BASE = {"AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini", "APPLICATION_NAME": "app"}


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://contoso-aoai.openai.azure.com",
        "http://169.254.169.254",
        "ftp://contoso-aoai.openai.azure.com",
        "https://contoso-aoai.openai.azure.com?x=http://evil",
        "https://contoso-aoai.openai.azure.com#frag",
        "https://",
    ],
)
def test_the_upstream_endpoint_must_be_https_except_a_loopback_emulator(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": endpoint})


@pytest.mark.parametrize(
    "model",
    [
        "../../../admin",
        "gpt-4o-mini/../../deployments/other",
        "gpt-4o-mini?api-version=2023-05-15",
        "gpt-4o-mini#",
        "http://169.254.169.254/metadata",
        "gpt-4o-mini\r\nHost: evil",
        "%2e%2e%2fgpt-4o",
        "gpt\u20114o\u2011mini",
    ],
)
def test_a_caller_cannot_steer_the_upstream_path_through_model(stack: Stack, model: str) -> None:
    request_id = new_id("ssrf")
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack, request_id).chat.completions.create(model=model, messages=user("hi"))
    assert caught.value.code == "model_not_allowed"
    assert records_for(stack, request_id) == []


def test_upstream_requests_go_only_to_the_configured_path(stack: Stack) -> None:
    request_id = new_id("path")
    client(stack, request_id).chat.completions.create(
        model="gpt-4o-mini", messages=user("hi"), extra_query={"api-version": "2020-01-01", "path": "/admin"}
    )
    (record,) = records_for(stack, request_id)
    assert record["path"] == "/openai/v1/chat/completions" and record["api_version"] is None


def test_hostile_values_cannot_forge_or_split_log_lines(stack: Stack) -> None:
    forged_line = '{"event":"relay.request","oid":"99999999-9999-4999-8999-999999999999","status":200}'
    token = stack.token(name=f"Mallory\n{forged_line}")
    before = len(stack.log_lines())
    hostile = [
        ("x-request-id", 'inj"},' + forged_line),
        ("x-request-id", "a" * 300),
        ("X-Forwarded-For", f"1.2.3.4\u2028{forged_line}"),
        ("User-Agent", forged_line),
    ]
    bodies = [
        {"model": f"x\n{forged_line}", "messages": user("hi")},
        {"messages": user("hi"), f"p\n{forged_line}": 1},
        {"messages": user(f"[emulate:status=400] \n{forged_line}")},
        {"messages": user("hi")},
    ]
    sent = 0
    for header in hostile:
        for body in bodies:
            rawhttp.request(
                stack.port,
                "POST",
                "/api/v1/chat/completions",
                [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"), header],
                json.dumps(body).encode(),
            )
            sent += 1
    new = stack.log_lines()[before:]
    request_lines = [line for line in new if '"relay.request"' in line]
    assert len(request_lines) == sent, "one log line per request, no more"
    for line in request_lines:
        record = json.loads(line)
        assert record["oid"] != "99999999-9999-4999-8999-999999999999"
        assert "Mallory" not in line and forged_line not in line
