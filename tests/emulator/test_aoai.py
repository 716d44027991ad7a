"""The Azure OpenAI emulator through the official SDK: answers, streaming, auth and validation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import openai
import pytest

from tests.support.chat import user
from tests.support.emulator import API_KEY, Emulator, running_emulator

DATED = "2025-01-01-preview"


async def streamed_text(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[str, list[Any]]:
    stream = await client.chat.completions.create(stream=True, **kwargs)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


async def test_streamed_text_equals_non_streamed_text(client: openai.AsyncOpenAI) -> None:
    request = {"model": "gpt-4o-mini", "messages": user("Tell me about relays")}
    whole = await client.chat.completions.create(**request)
    text, chunks = await streamed_text(client, **request)
    assert whole.choices[0].message.content == text
    assert text.startswith("Emulated gpt-4o-mini") and "relays" in text
    assert len(text.split()) == 20 == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert whole.choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_completion_carries_azure_filter_results(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model="gpt-4o", messages=user("hi"))
    prompt_results = whole.model_extra["prompt_filter_results"]  # type: ignore[index]
    assert prompt_results[0]["prompt_index"] == 0
    assert prompt_results[0]["content_filter_results"]["jailbreak"] == {"filtered": False, "detected": False}
    choice_results = whole.choices[0].model_extra["content_filter_results"]  # type: ignore[index]
    assert choice_results["hate"] == {"filtered": False, "severity": "safe"}


async def test_stream_is_in_azure_chunk_format(http: httpx2.AsyncClient, emulator: Emulator) -> None:
    body = {"model": "gpt-4o", "messages": user("one two [emulate:words=5]"), "stream": True, "stream_options": {"include_usage": True}}
    response = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": API_KEY})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    payloads = [json.loads(e) for e in events[:-1]]
    assert payloads[0]["choices"] == [] and "prompt_filter_results" in payloads[0]
    assert payloads[1]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    content = [p["choices"][0]["delta"]["content"] for p in payloads[2:7]]
    assert content == ["Emulated", " gpt-4o", " answer", " to:", " one"]
    assert payloads[7]["choices"][0]["finish_reason"] == "stop"
    assert payloads[8]["choices"] == [] and payloads[8]["usage"]["completion_tokens"] == 5
    assert all(p["object"] == "chat.completion.chunk" for p in payloads[1:])


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
async def test_token_cap_cuts_the_answer_with_length(client: openai.AsyncOpenAI, cap: str) -> None:
    request: dict[str, Any] = {"model": "gpt-4o", "messages": user("hello"), cap: 3}
    whole = await client.chat.completions.create(**request)
    text, chunks = await streamed_text(client, **request)
    assert whole.choices[0].message.content == text == "Emulated gpt-4o answer"
    assert whole.choices[0].finish_reason == "length"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


async def test_dated_path_with_azure_client_and_api_key(emulator: Emulator) -> None:
    async with openai.AsyncAzureOpenAI(azure_endpoint=emulator.base, api_key=API_KEY, api_version=DATED, max_retries=0) as azure:
        whole = await azure.chat.completions.create(model="gpt-4o", messages=user("dated path"))
    assert whole.choices[0].message.content.startswith("Emulated gpt-4o answer to: dated path")  # type: ignore[union-attr]
    [record] = emulator.requests()
    assert record["path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert record["api_version"] == DATED and record["deployment"] == "gpt-4o"


async def test_dated_path_without_api_version_is_not_found(http: httpx2.AsyncClient) -> None:
    response = await http.post("/openai/deployments/gpt-4o/chat/completions", json={"messages": user("x")}, headers={"api-key": API_KEY})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


async def test_unknown_deployment(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-5-nope", messages=user("x"))
    assert caught.value.code == "DeploymentNotFound"


async def test_wrong_audience_is_401(emulator: Emulator) -> None:
    vault_token = emulator.token("https://vault.azure.net")
    async with openai.AsyncOpenAI(base_url=f"{emulator.base}/openai/v1/", api_key=vault_token, max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError, match="audience is incorrect"):
            await sdk.chat.completions.create(model="gpt-4o", messages=user("x"))
    [record] = emulator.requests()
    assert record["auth"]["aud"] == "https://vault.azure.net" and record["auth"]["valid"] is False
    assert record["outcome"] == "rejected" and record["status"] == 401


async def test_tampered_token_is_401(emulator: Emulator, http: httpx2.AsyncClient) -> None:
    header, payload, signature = emulator.token().split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    response = await http.post(
        "/openai/v1/chat/completions",
        json={"model": "gpt-4o", "messages": user("x")},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize("headers", [{"api-key": "wrong"}, {}, {"Authorization": "Basic abc"}])
async def test_bad_or_missing_key_is_401(http: httpx2.AsyncClient, headers: dict[str, str]) -> None:
    response = await http.post("/openai/v1/chat/completions", json={"model": "gpt-4o", "messages": user("x")}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "401"


async def test_expired_token_is_401(tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_emulator(tmp_path_factory.mktemp("short"), EMULATOR_TOKEN_LIFETIME_S="1") as short_lived:
        token = short_lived.token()
        await asyncio.sleep(1.1)
        async with openai.AsyncOpenAI(base_url=f"{short_lived.base}/openai/v1/", api_key=token, max_retries=0) as sdk:
            with pytest.raises(openai.AuthenticationError):
                await sdk.chat.completions.create(model="gpt-4o", messages=user("x"))


async def test_key_rotation_through_control_endpoint(emulator: Emulator, http: httpx2.AsyncClient) -> None:
    body = {"model": "gpt-4o", "messages": user("x")}
    emulator.control("POST", "config", {"api_key": "rotated"})
    old = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": API_KEY})
    new = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": "rotated"})
    assert (old.status_code, new.status_code) == (401, 200)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": [{"content": "no role"}]}, "messages"),
        ({"messages": user("x")}, "model"),
        ({"model": "gpt-4o", "messages": user("x"), "user_security_context": "me"}, "user_security_context"),
        ({"model": "gpt-4o", "messages": user("x"), "user_security_context": {"end_user_id": 7}}, "user_security_context.end_user_id"),
        ({"model": "gpt-4o", "messages": user("x"), "max_tokens": "3"}, "max_tokens"),
        ({"model": "gpt-4o", "messages": user("[emulate:no_such_thing]")}, "messages"),
        ({"model": "gpt-4o", "messages": user("[emulate:words=lots]")}, "messages"),
    ],
)
async def test_invalid_bodies_are_400(http: httpx2.AsyncClient, body: dict[str, Any], param: str) -> None:
    response = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": API_KEY})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_user_security_context_misspelled_field_is_accepted(client: openai.AsyncOpenAI) -> None:
    context = {"application_name": "spa", "end_user_idd": "typo", "source_ip": "203.0.113.7"}
    whole = await client.chat.completions.create(model="gpt-4o", messages=user("x"), extra_body={"user_security_context": context})
    assert whole.choices[0].finish_reason == "stop"


async def test_user_security_context_needs_a_recent_dated_version(http: httpx2.AsyncClient) -> None:
    body = {"messages": user("x"), "user_security_context": {"end_user_id": "u"}}
    old = await http.post("/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", json=body, headers={"api-key": API_KEY})
    assert old.status_code == 400 and "user_security_context" in old.json()["error"]["message"]
