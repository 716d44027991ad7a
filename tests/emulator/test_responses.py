"""The Foundry project endpoint's Responses API through the official SDK: text, streams, tools, structured outputs, state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
import pytest_asyncio
from pydantic import BaseModel

from tests.support.emulator import Emulator

FOUNDRY_SCOPE = "https://ai.azure.com/.default"
PROJECT = "proj-one"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    "strict": True,
}
USC = {"application_name": "spa", "end_user_id": "oid-1", "end_user_tenant_id": "tid-1", "source_ip": "203.0.113.9"}


class Forecast(BaseModel):
    city: str
    days: int


def project_client(emulator: Emulator, project: str = PROJECT, token: str | None = None) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{emulator.base}/api/projects/{project}/openai/v1/",
        api_key=token or emulator.token(FOUNDRY_SCOPE),
        max_retries=0,
        timeout=10,
    )


@pytest_asyncio.fixture
async def foundry(emulator: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with project_client(emulator) as sdk:
        yield sdk


async def test_a_text_answer_carries_usage_and_the_security_context_arrives(foundry: openai.AsyncOpenAI, emulator: Emulator) -> None:
    response = await foundry.responses.create(
        model="gpt-4o", input="Hello there", instructions="Be brief", extra_body={"user_security_context": USC}
    )
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text.startswith("Emulated gpt-4o answer to: Hello there Hello there")
    assert len(response.output_text.split()) == 20
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert response.usage is not None and response.usage.output_tokens == 20 and response.usage.input_tokens == 4
    [record] = emulator.requests()
    assert record["path"] == f"/api/projects/{PROJECT}/openai/v1/responses"
    assert record["user_security_context"] == USC
    assert record["auth"]["aud"] == "https://ai.azure.com" and record["auth"]["valid"] is True
    assert emulator.stats()["responses_requests"] == 1


async def test_a_token_for_the_azure_openai_audience_is_refused(emulator: Emulator) -> None:
    async with project_client(emulator, token=emulator.token()) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.responses.create(model="gpt-4o", input="hi")
    assert "https://ai.azure.com" in str(caught.value)


async def test_a_malformed_security_context_is_refused(foundry: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await foundry.responses.create(model="gpt-4o", input="hi", extra_body={"user_security_context": {"end_user_id": 7}})
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "user_security_context.end_user_id"


async def test_the_stream_sends_the_documented_events_in_order(foundry: openai.AsyncOpenAI) -> None:
    stream = await foundry.responses.create(model="gpt-4o", input="one two [emulate:words=3]", stream=True)
    events = [event async for event in stream]
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens == 3
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text == "Emulated gpt-4o answer"


async def test_the_stream_helper_and_the_stored_response_agree(foundry: openai.AsyncOpenAI) -> None:
    async with foundry.responses.stream(model="gpt-4o-mini", input="Stream this") as stream:
        deltas = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    stored = await foundry.responses.retrieve(final.id)
    assert "".join(deltas) == final.output_text == stored.output_text
    assert stored.status == "completed" and stored.output[0].id == final.output[0].id


async def test_the_stream_is_named_events_on_the_wire(emulator: Emulator) -> None:
    async with project_client(emulator) as sdk:
        raw = await sdk.responses.with_raw_response.create(model="gpt-4o", input="x [emulate:words=2]", stream=True)
        text = (await raw.http_response.aread()).decode()
    blocks = [block.split("\n") for block in text.strip().split("\n\n")]
    for event_line, data_line in blocks:
        assert event_line.removeprefix("event: ") == json.loads(data_line.removeprefix("data: "))["type"]
    assert raw.headers["content-type"].startswith("text/event-stream")


async def test_a_question_about_a_tool_calls_it_and_the_result_is_answered_in_text(foundry: openai.AsyncOpenAI) -> None:
    first = await foundry.responses.create(model="gpt-4o", input="What is the weather in Oslo?", tools=[WEATHER])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "Oslo"}
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "12 degrees and rain"}
    second = await foundry.responses.create(
        model="gpt-4o",
        previous_response_id=first.id,
        input=[output],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text.startswith("Emulated gpt-4o answer from get_weather: 12 degrees and rain")


async def test_a_forced_tool_is_called_again_after_its_result(foundry: openai.AsyncOpenAI) -> None:
    forced: Any = {"type": "function", "name": "get_weather"}
    first = await foundry.responses.create(model="gpt-4o", input="Plan my week", tools=[WEATHER], tool_choice=forced)  # type: ignore[list-item]
    output = {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "sunny"}  # type: ignore[union-attr]
    second = await foundry.responses.create(
        model="gpt-4o",
        previous_response_id=first.id,
        input=[output],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice=forced,
    )
    assert [item.type for item in second.output] == ["function_call"]


async def test_a_streamed_call_sends_its_arguments_in_pieces(foundry: openai.AsyncOpenAI) -> None:
    stream = await foundry.responses.create(model="gpt-4o", input="weather in Bergen", tools=[WEATHER], stream=True)  # type: ignore[list-item]
    events = [event async for event in stream]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    [done] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(deltas) > 1 and "".join(deltas) == done.arguments == '{"city":"Bergen"}'


async def test_a_call_left_without_its_output_is_refused(foundry: openai.AsyncOpenAI) -> None:
    first = await foundry.responses.create(model="gpt-4o", input="What is the weather in Oslo?", tools=[WEATHER])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError) as caught:
        await foundry.responses.create(model="gpt-4o", previous_response_id=first.id, input="and tomorrow?", tools=[WEATHER])  # type: ignore[list-item]
    assert caught.value.body == {
        "message": f"No tool output found for function call {first.output[0].call_id}.",  # type: ignore[union-attr]
        "type": "invalid_request_error",
        "param": "input",
        "code": None,
    }


async def test_an_empty_tools_list_is_no_tools(foundry: openai.AsyncOpenAI) -> None:
    # The OpenAI Agents SDK sends one for every agent without tools; Chat Completions refuses it, the Responses API does not.
    response = await foundry.responses.create(model="gpt-4o", input="Hello there", tools=[])
    assert response.status == "completed" and response.output_text.startswith("Emulated gpt-4o answer to: Hello there")
    assert response.tools == []


async def test_parse_returns_the_schema_instance(foundry: openai.AsyncOpenAI) -> None:
    parsed = await foundry.responses.parse(model="gpt-4o", input="Forecast for Oslo", text_format=Forecast)
    assert parsed.output_parsed == Forecast(city="city", days=1)


async def test_a_token_cap_makes_the_response_incomplete(foundry: openai.AsyncOpenAI) -> None:
    response = await foundry.responses.create(model="gpt-4o", input="long [emulate:words=40]", max_output_tokens=16)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert len(response.output_text.split()) == 16
    with pytest.raises(openai.BadRequestError) as caught:
        await foundry.responses.create(model="gpt-4o", input="x", max_output_tokens=5)
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "max_output_tokens"


async def test_content_filters_refuse_the_prompt_or_cut_the_answer(foundry: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await foundry.responses.create(model="gpt-4o", input="[emulate:jailbreak]")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "content_filter"
    cut = await foundry.responses.create(model="gpt-4o", input="[emulate:output_filter]")
    assert cut.status == "incomplete" and cut.incomplete_details is not None and cut.incomplete_details.reason == "content_filter"


async def test_directive_errors_and_unsupported_tools_are_clear(foundry: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await foundry.responses.create(model="gpt-4o", input="[emulate:status=503]")
    with pytest.raises(openai.BadRequestError) as caught:
        await foundry.responses.create(model="gpt-4o", input="search", tools=[{"type": "web_search"}])
    assert isinstance(caught.value.body, dict)
    assert (caught.value.body["param"], caught.value.body["code"]) == ("tools[0].type", "emulator_unsupported")


async def test_a_stored_response_is_retrieved_listed_and_deleted(foundry: openai.AsyncOpenAI) -> None:
    created = await foundry.responses.create(
        model="gpt-4o", input=[{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]
    )
    assert (await foundry.responses.retrieve(created.id)).output_text == created.output_text
    items = await foundry.responses.input_items.list(created.id)
    assert [item.content[0].text for item in items.data] == ["second", "first"]  # type: ignore[union-attr]
    ascending = await foundry.responses.input_items.list(created.id, order="asc", limit=1)
    assert [item.content[0].text for item in ascending.data] == ["first"] and ascending.has_more  # type: ignore[union-attr]
    await foundry.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await foundry.responses.retrieve(created.id)


async def test_store_false_keeps_nothing_to_continue_from(foundry: openai.AsyncOpenAI) -> None:
    created = await foundry.responses.create(model="gpt-4o", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        await foundry.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as caught:
        await foundry.responses.create(model="gpt-4o", input="again", previous_response_id=created.id)
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "previous_response_not_found"


async def test_a_continuation_sees_the_chain(foundry: openai.AsyncOpenAI) -> None:
    first = await foundry.responses.create(model="gpt-4o", input="one two three")
    second = await foundry.responses.create(model="gpt-4o", input="four", previous_response_id=first.id)
    alone = await foundry.responses.create(model="gpt-4o", input="four")
    assert second.usage is not None and alone.usage is not None and first.usage is not None
    assert second.usage.input_tokens == alone.usage.input_tokens + first.usage.input_tokens + first.usage.output_tokens
    assert second.previous_response_id == first.id


async def test_an_item_reference_brings_back_an_earlier_item(foundry: openai.AsyncOpenAI) -> None:
    first = await foundry.responses.create(model="gpt-4o", input="What is the weather in Oslo?", tools=[WEATHER])  # type: ignore[list-item]
    reference: Any = {"type": "item_reference", "id": first.output[0].id}
    output: Any = {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "warm"}  # type: ignore[union-attr]
    second = await foundry.responses.create(model="gpt-4o", input=[{"role": "user", "content": "weather?"}, reference, output])
    assert second.output_text.startswith("Emulated gpt-4o answer from get_weather: warm")
    with pytest.raises(openai.NotFoundError):
        await foundry.responses.create(model="gpt-4o", input=[{"type": "item_reference", "id": "msg_nope"}])


async def test_a_conversation_collects_the_items_of_its_responses(foundry: openai.AsyncOpenAI) -> None:
    conversation = await foundry.conversations.create(items=[{"type": "message", "role": "user", "content": "context"}])
    first = await foundry.responses.create(model="gpt-4o", input="alpha", conversation=conversation.id)
    await foundry.responses.create(model="gpt-4o", input="beta", conversation={"id": conversation.id})
    assert first.conversation is not None and first.conversation.id == conversation.id
    items = await foundry.conversations.items.list(conversation.id, order="asc")
    assert [(item.type, getattr(item, "role", None)) for item in items.data] == [
        ("message", "user"),
        *[("message", "user"), ("message", "assistant")] * 2,
    ]
    with pytest.raises(openai.BadRequestError):
        await foundry.responses.create(model="gpt-4o", input="x", conversation=conversation.id, previous_response_id=first.id)
    await foundry.conversations.delete(conversation.id)
    with pytest.raises(openai.NotFoundError):
        await foundry.responses.create(model="gpt-4o", input="gamma", conversation=conversation.id)


async def test_only_a_running_background_response_can_be_cancelled(foundry: openai.AsyncOpenAI) -> None:
    queued = await foundry.responses.create(model="gpt-4o", input="slowly [emulate:slow=30]", background=True)
    assert queued.status == "queued"
    cancelled = await foundry.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and (await foundry.responses.retrieve(queued.id)).status == "cancelled"
    quick = await foundry.responses.create(model="gpt-4o", input="now", background=True)
    for _ in range(100):
        if (await foundry.responses.retrieve(quick.id)).status == "completed":
            break
        await asyncio.sleep(0.05)
    assert (await foundry.responses.retrieve(quick.id)).output_text.startswith("Emulated gpt-4o answer to: now")
    plain = await foundry.responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.BadRequestError):
        await foundry.responses.cancel(plain.id)


async def test_state_stays_in_its_project(foundry: openai.AsyncOpenAI, emulator: Emulator) -> None:
    created = await foundry.responses.create(model="gpt-4o", input="hi")
    async with project_client(emulator, project="proj-two") as other:
        with pytest.raises(openai.NotFoundError):
            await other.responses.retrieve(created.id)


async def test_refers_to_nothing_the_emulator_cannot_hold(foundry: openai.AsyncOpenAI) -> None:
    for extra in ({"agent_reference": {"name": "a", "type": "agent_reference"}}, {"prompt": {"id": "pmpt_1"}}):
        with pytest.raises(openai.BadRequestError) as caught:
            await foundry.responses.create(model="gpt-4o", input="hi", extra_body=extra)
        assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "emulator_unsupported"


async def test_the_response_object_has_the_documented_fields(http: httpx2.AsyncClient, emulator: Emulator) -> None:
    headers = {"Authorization": f"Bearer {emulator.token(FOUNDRY_SCOPE)}"}
    body = {"model": "gpt-4o", "input": "What is the weather in Oslo?", "tools": [WEATHER], "metadata": {"k": "v"}}
    response = await http.post(f"/api/projects/{PROJECT}/openai/v1/responses", json=body, headers=headers)
    assert response.status_code == 200
    payload = response.json()
    assert set(payload) >= {"id", "object", "created_at", "status", "error", "incomplete_details", "model", "output", "usage", "store"}
    assert (payload["object"], payload["status"], payload["store"], payload["metadata"]) == ("response", "completed", True, {"k": "v"})
    [call] = payload["output"]
    assert set(call) == {"id", "type", "status", "call_id", "name", "arguments"} and call["id"].startswith("fc_")
    assert payload["usage"]["total_tokens"] == payload["usage"]["input_tokens"] + payload["usage"]["output_tokens"]
    items = await http.get(f"/api/projects/{PROJECT}/openai/v1/responses/{payload['id']}/input_items", headers=headers)
    [item] = items.json()["data"]
    assert item["content"] == [{"type": "input_text", "text": "What is the weather in Oslo?"}] and item["role"] == "user"
    assert items.json()["first_id"] == items.json()["last_id"] == item["id"]


async def test_a_stream_that_fails_midway_drops_the_connection(foundry: openai.AsyncOpenAI, emulator: Emulator) -> None:
    stream = await foundry.responses.create(model="gpt-4o", input="[emulate:midstream_fail]", stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for event in stream:
            seen.append(event.type)
    assert seen[:2] == ["response.created", "response.in_progress"] and "response.completed" not in seen
    assert emulator.requests()[-1]["outcome"] == "failed"


async def test_a_rate_limit_names_the_responses_operation(foundry: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await foundry.responses.create(model="gpt-4o", input="[emulate:rate_limit=3]")
    assert caught.value.response.headers["retry-after"] == "3"
    assert "Responses_Create" in str(caught.value)


async def test_null_optional_fields_are_the_defaults(http: httpx2.AsyncClient, emulator: Emulator) -> None:
    headers = {"Authorization": f"Bearer {emulator.token(FOUNDRY_SCOPE)}"}
    nulls = dict.fromkeys(
        ("store", "stream", "background", "parallel_tool_calls", "tool_choice", "instructions", "text", "max_output_tokens")
    )
    body = {"model": "gpt-4o", "input": "What is the weather in Oslo?", "tools": [WEATHER], **nulls}
    created = (await http.post(f"/api/projects/{PROJECT}/openai/v1/responses", json=body, headers=headers)).json()
    assert (created["store"], created["parallel_tool_calls"], created["tool_choice"]) == (True, True, "auto")
    assert [item["type"] for item in created["output"]] == ["function_call"]
    stored = await http.get(f"/api/projects/{PROJECT}/openai/v1/responses/{created['id']}", headers=headers)
    assert stored.status_code == 200


@pytest.mark.parametrize(
    ("request_body", "message", "param"),
    [
        ({"tools": [{"type": "function"}]}, "Missing required parameter: 'tools[0].name'.", "tools[0].name"),
        (
            {"text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
            "Missing required parameter: 'text.format.name'.",
            "text.format.name",
        ),
        (
            {"text": {"format": {"type": "json_object"}}},
            "Response input messages must contain the word 'json' in some form to use 'text.format' of type 'json_object'.",
            "input",
        ),
        (
            {"tools": [{"type": "function", "name": "f", "strict": True, "parameters": {"type": "object", "properties": {}}}]},
            "Invalid schema for function 'f': In context=(), 'additionalProperties' is required to be supplied and to be false.",
            "tools[0].parameters",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]},
            "No tool call found for function call output with call_id call_x.",
            "input",
        ),
    ],
)
async def test_errors_name_the_responses_fields(
    http: httpx2.AsyncClient, emulator: Emulator, request_body: dict[str, Any], message: str, param: str
) -> None:
    headers = {"Authorization": f"Bearer {emulator.token(FOUNDRY_SCOPE)}"}
    body = {"model": "gpt-4o", "input": "hi", **request_body}
    response = await http.post(f"/api/projects/{PROJECT}/openai/v1/responses", json=body, headers=headers)
    assert response.status_code == 400
    assert (response.json()["error"]["message"], response.json()["error"]["param"]) == (message, param)
