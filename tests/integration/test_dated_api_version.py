"""AZURE_OPENAI_API_VERSION set to a dated version: the deployments path, still with user_security_context."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.support.stack import APPLICATION_NAME, run_stack

API_VERSION = "2025-01-01-preview"


def test_dated_api_version_uses_the_deployments_path(tmp_path: Path) -> None:
    with run_stack(tmp_path, {"AZURE_OPENAI_API_VERSION": API_VERSION}) as stack:
        sdk = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=stack.token(), max_retries=0)
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "dated path"}]
        plain = sdk.chat.completions.create(model="gpt-4o", messages=messages).choices[0].message.content
        streamed = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(model="gpt-4o", messages=messages, stream=True) if c.choices)
        records = stack.requests()[-2:]
    assert plain and streamed == plain
    for record in records:
        assert record["path"] == "/openai/deployments/gpt-4o/chat/completions"
        assert record["api_version"] == API_VERSION
        assert record["user_security_context"]["application_name"] == APPLICATION_NAME
        assert record["user_security_context"]["source_ip"] == "127.0.0.1"
