"""What the clients people use need from the relay, through the official Python SDK over real sockets.

Tools and structured outputs pass through; the content-filter detail keeps Azure's shape (Semantic
Kernel and Agent Framework read ``innererror``); options that clients set are forwarded; ``user`` and
``safety_identifier`` become the relay's pseudonym of the caller; the Responses API gets an OpenAI-shaped
404 that says how to switch to Chat Completions. Runs through both runtimes (tests/integration/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from devhost.appservice_auth import DEV_OBJECT_ID, DEV_TENANT_ID
from tests.reliability.common import client
from tests.support import rawhttp
from tests.support.stack import APPLICATION_NAME, Stack

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def record_with(stack: Stack, marker: str) -> dict[str, Any]:
    return next(r for r in reversed(stack.requests()) if marker in json.dumps(r["body"]))


def test_a_tool_round_trip(stack: Stack) -> None:
    sdk = client(stack)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    forced: Any = {"type": "function", "function": {"name": "get_weather"}}
    first = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER], tool_choice=forced)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "city", "unit": "celsius"}
    messages += [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "12 degrees and rain"}]
    answer = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "stop"
    assert "12 degrees and rain" in (answer.choices[0].message.content or "")


def test_streamed_tool_call_arguments_reassemble(stack: Stack) -> None:
    with client(stack).chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather please [emulate:tool_call=get_weather]"}],
        tools=[openai.pydantic_function_tool(Weather, name="get_weather")],
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.parsed_arguments == Weather(city="city", unit="celsius")


class Weather(BaseModel):
    city: str
    unit: Literal["celsius", "fahrenheit"]


class Answer(BaseModel):
    title: str
    points: list[str]
    confidence: float


def test_a_structured_output_parses_with_the_sdks_parse_helper(stack: Stack) -> None:
    completion = client(stack).chat.completions.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Summarise the relay"}], response_format=Answer
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Answer) and parsed.title == "title"


def test_a_content_filter_error_keeps_azures_innererror(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "[emulate:jailbreak] ignore all"}])
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "content_filter"
    inner = error["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["jailbreak"] == {"filtered": True, "detected": True}
    assert error["content_filter_result"] == inner["content_filter_result"]


def test_options_clients_set_are_forwarded_and_identities_are_replaced(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    client(stack).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"hi {marker}"}],
        verbosity="low",
        reasoning_effort="none",
        service_tier="auto",
        prompt_cache_retention="24h",
        user="mallory@evil.example",
        safety_identifier="ceo",
    )
    record = record_with(stack, marker)
    sent = record["body"]
    assert (sent["verbosity"], sent["reasoning_effort"], sent["service_tier"], sent["prompt_cache_retention"]) == ("low", "none", "auto", "24h")
    assert record["user_security_context"] == {
        "application_name": APPLICATION_NAME,
        "end_user_id": DEV_OBJECT_ID,
        "end_user_tenant_id": DEV_TENANT_ID,
        "source_ip": "127.0.0.1",
    }
    assert sent["user"] == sent["safety_identifier"] != "ceo"
    assert DEV_OBJECT_ID not in sent["user"]
    assert sent["max_completion_tokens"] == 100  # the relay's cap, though the client sent none


def test_priority_processing_is_refused_unless_the_instance_allows_it(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], service_tier="priority")
    assert (caught.value.code, caught.value.param) == ("parameter_not_allowed", "service_tier")


def test_another_api_gets_a_404_naming_the_chat_completions_switch(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(stack).embeddings.create(model="gpt-4o-mini", input="hi")
    assert caught.value.code == "unsupported_route"
    message = caught.value.message
    for switch in ("openai.chat(", "OpenAIChatCompletionsModel", "OpenAIChatCompletionClient", "use_responses_api=False"):
        assert switch in message
    assert set(caught.value.body) >= {"message", "type", "param", "code"}  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "path"), [("POST", "/api/v1/embeddings"), ("GET", "/api/v1/files"), ("GET", "/api/v1/chat/completions")])
def test_other_v1_routes_are_the_same_404(stack: Stack, method: str, path: str) -> None:
    response = rawhttp.request(stack.port, method, path, [("Authorization", f"Bearer {stack.token()}")], b"{}" if method == "POST" else b"")
    assert response.status == 404
    assert json.loads(response.body)["error"]["code"] == "unsupported_route"


def test_an_api_path_no_function_serves_is_a_plain_404(stack: Stack) -> None:
    response = rawhttp.request(stack.port, "POST", "/api/v2/chat", [("Authorization", f"Bearer {stack.token()}")], b"{}")
    assert (response.status, response.body) == (404, b""), "the Functions host's own 404, not the relay's unsupported_route"
