"""shared.responses_upstream: the project's URLs (its token's audience is tested against the emulator, tests/integration/test_responses.py)."""

from __future__ import annotations

import dataclasses

from shared.config import ResponsesSettings
from shared.responses_upstream import project_url
from tests.support.strategies import BODY_SETTINGS

SETTINGS = dataclasses.replace(
    BODY_SETTINGS, responses=ResponsesSettings("https://contoso.services.ai.azure.com/api/projects/chat", b"k" * 32)
)


def test_the_routes_are_under_the_projects_openai_v1() -> None:
    base = "https://contoso.services.ai.azure.com/api/projects/chat/openai/v1/responses"
    assert project_url(SETTINGS) == base
    assert project_url(SETTINGS, "responses", "resp_1") == f"{base}/resp_1"
    assert project_url(SETTINGS, "responses", "resp_1", "input_items") == f"{base}/resp_1/input_items"
    assert project_url(SETTINGS, "responses", "a/b?c") == f"{base}/a%2Fb%3Fc"
    assert project_url(SETTINGS, "conversations", "conv_1", "items") == base.replace("/responses", "/conversations/conv_1/items")
