"""shared.responses_relay: the Responses routes, off without a project endpoint, and no foreign id ever going upstream."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from shared.config import Settings, load_settings
from shared.relay import Relay
from shared.responses_ids import IdSeal, Owner
from shared.responses_relay import ResponsesAction
from shared.upstream import Upstream
from tests.support.app_settings import REQUIRED_SETTINGS
from tests.support.asgi import make_request
from tests.support.identities import OTHER_OID
from tests.support.strategies import CALLER, CALLER_HEADERS

KEY = b"r" * 32
PROJECT = {
    "AZURE_AI_PROJECT_ENDPOINT": "https://contoso.services.ai.azure.com/api/projects/chat",
    "RELAY_RESPONSES_SEAL_KEY": base64.b64encode(KEY).decode(),
}
OTHERS_ID = IdSeal(KEY).seal(Owner(OTHER_OID, CALLER.principal.tenant_id), "resp_1")


async def no_upstream(settings: Settings) -> Upstream:
    raise AssertionError("the upstream must not be reached")


def relay(env: dict[str, str]) -> Relay:
    return Relay(load_settings({**REQUIRED_SETTINGS, "WEBSITE_AUTH_ENABLED": "true", **env}), no_upstream, no_upstream)


def answer(r: Relay, action: ResponsesAction, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    response = asyncio.run(r.responses(make_request(method, path, CALLER_HEADERS, body), action))
    return response.status_code, json.loads(bytes(response.body))


def test_without_a_project_endpoint_the_responses_api_is_the_guiding_404() -> None:
    status, body = answer(relay({}), "create", "POST", "/api/v1/responses", b'{"input":"hi"}')
    assert (status, body["error"]["code"]) == (404, "unsupported_route")
    assert "openai.chat(" in body["error"]["message"]


@pytest.mark.parametrize(
    ("action", "method", "path"),
    [
        ("retrieve", "GET", f"/api/v1/responses/{OTHERS_ID}"),
        ("delete", "DELETE", f"/api/v1/responses/{OTHERS_ID}"),
        ("cancel", "POST", f"/api/v1/responses/{OTHERS_ID}/cancel"),
        ("input_items", "GET", f"/api/v1/responses/{OTHERS_ID}/input_items"),
        ("retrieve", "GET", "/api/v1/responses/resp_1"),
    ],
)
def test_another_users_or_an_unsealed_id_is_a_404_before_anything_goes_upstream(action: ResponsesAction, method: str, path: str) -> None:
    status, body = answer(relay(PROJECT), action, method, path)
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_a_create_continuing_another_users_response_is_a_404_before_anything_goes_upstream() -> None:
    body = json.dumps({"input": "hi", "previous_response_id": OTHERS_ID}).encode()
    status, payload = answer(relay(PROJECT), "create", "POST", "/api/v1/responses", body)
    assert (status, payload["error"]["code"], payload["error"]["param"]) == (404, "not_found", "previous_response_id")
