"""Tool calls through the official SDK against the emulator process: calls, streamed deltas, round trips, validation."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.support.chat import user
from tests.support.emulator import API_KEY

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "hourly": {"type": "boolean"},
    },
    "required": ["city", "unit"],
}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast", "parameters": WEATHER_PARAMETERS}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}
EXPECTED_WEATHER_ARGUMENTS = {"city": "city", "unit": "celsius", "days": 1, "hourly": True}


class GetWeather(BaseModel):
    city: str
    days: int


def forced(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def as_assistant_message(message: Any) -> dict[str, Any]:
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in message.tool_calls
    ]
    return {"role": "assistant", "content": message.content, "tool_calls": calls}


async def test_forced_function_is_called_with_arguments_valid_for_its_schema(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("Plan my week"), tools=[WEATHER, TIME], tool_choice=forced("get_weather")
    )
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls  # type: ignore[misc]
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.id.startswith("call_") and len(call.id) == 29
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_PARAMETERS)
    assert arguments == EXPECTED_WEATHER_ARGUMENTS
    assert whole.usage is not None and whole.usage.completion_tokens > 0


async def after_a_weather_call(client: openai.AsyncOpenAI, tool_choice: Any) -> Any:
    """The second turn of a weather round trip: the call, its result, and the model asked again with the same options."""
    messages: list[Any] = user("What is the weather in Oslo? Use get_weather.")
    options: dict[str, Any] = {"model": "gpt-4o-mini", "tools": [WEATHER, TIME], "tool_choice": tool_choice}
    first = await client.chat.completions.create(messages=messages, **options)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in message.tool_calls or []] == ["get_weather"]
    messages.append(as_assistant_message(message))
    for call in message.tool_calls or []:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "sky": "clear"})})
    return (await client.chat.completions.create(messages=messages, **options)).choices[0]


@pytest.mark.parametrize("tool_choice", [openai.omit, "auto"])
async def test_tool_round_trip_answers_in_text_from_the_tool_result(client: openai.AsyncOpenAI, tool_choice: Any) -> None:
    answer = await after_a_weather_call(client, tool_choice)
    assert answer.finish_reason == "stop" and not answer.message.tool_calls
    assert answer.message.content is not None
    assert answer.message.content.startswith("Emulated gpt-4o-mini answer from get_weather: temperature 21 sky clear")


@pytest.mark.parametrize("tool_choice", ["required", forced("get_weather")])
async def test_a_forced_choice_calls_again_after_the_tool_result(client: openai.AsyncOpenAI, tool_choice: Any) -> None:
    answer = await after_a_weather_call(client, tool_choice)
    assert answer.finish_reason == "tool_calls" and answer.message.content is None
    assert [c.function.name for c in answer.message.tool_calls or []] == ["get_weather"]


async def test_auto_calls_the_tool_a_question_is_about_with_the_place_it_names(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("What's the weather like in New York this weekend?"), tools=[TIME, WEATHER]
    )
    assert whole.choices[0].finish_reason == "tool_calls"
    [call] = whole.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {**EXPECTED_WEATHER_ARGUMENTS, "city": "New York"}


async def test_auto_chooses_by_the_words_of_a_description(client: openai.AsyncOpenAI) -> None:
    lookup = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up an order by its number",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("Where is my order? I live in Bergen."), tools=[TIME, lookup]
    )
    [call] = whole.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"location": "Bergen"})


async def test_a_named_tool_wins_over_one_the_words_are_about(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("Is the weather bad enough to call get_time?"), tools=[WEATHER, TIME]
    )
    assert [c.function.name for c in whole.choices[0].message.tool_calls or []] == ["get_time"]


async def test_a_forced_tool_keeps_the_arguments_of_its_schema(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("What is the weather in Oslo?"), tools=[WEATHER], tool_choice=forced("get_weather")
    )
    [call] = whole.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == EXPECTED_WEATHER_ARGUMENTS


async def test_auto_answers_in_text_unless_a_tool_is_selected(client: openai.AsyncOpenAI) -> None:
    plain = await client.chat.completions.create(model="gpt-4o", messages=user("Tell me a joke"), tools=[WEATHER, TIME])
    assert plain.choices[0].finish_reason == "stop" and plain.choices[0].message.tool_calls is None
    stop_words = await client.chat.completions.create(
        model="gpt-4o", messages=user("What is it, and can you get it?"), tools=[WEATHER, TIME]
    )
    assert stop_words.choices[0].finish_reason == "stop" and stop_words.choices[0].message.tool_calls is None
    named = await client.chat.completions.create(model="gpt-4o", messages=user("call get_time please"), tools=[WEATHER, TIME])
    assert [c.function.name for c in named.choices[0].message.tool_calls or []] == ["get_time"]


@pytest.mark.parametrize(("parallel", "expected"), [(True, ["get_weather", "get_time"]), (False, ["get_weather"])])
async def test_required_calls_every_named_tool_unless_parallel_calls_are_off(
    client: openai.AsyncOpenAI, parallel: bool, expected: list[str]
) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o",
        messages=user("get_time and get_weather, please"),
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=parallel,
    )
    calls = whole.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == expected
    assert len({c.id for c in calls}) == len(calls)


async def test_required_without_a_named_tool_calls_the_first(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model="gpt-4o", messages=user("anything"), tools=[TIME, WEATHER], tool_choice="required")
    assert [c.function.name for c in whole.choices[0].message.tool_calls or []] == ["get_time"]


async def test_directive_chooses_the_calls(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("two cities [emulate:tool_call=get_weather,get_weather]"), tools=[WEATHER, TIME]
    )
    calls = whole.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert calls[0].id != calls[1].id


async def test_streamed_tool_call_is_reassembled_by_the_sdk_helper(client: openai.AsyncOpenAI) -> None:
    tool = openai.pydantic_function_tool(GetWeather)
    async with client.chat.completions.stream(
        model="gpt-4o", messages=user("weather please"), tools=[tool], tool_choice=forced("GetWeather")
    ) as stream:
        deltas = [event.arguments_delta async for event in stream if event.type == "tool_calls.function.arguments.delta"]
        final = await stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.parsed_arguments == GetWeather(city="city", days=1)
    assert len(deltas) > 1 and "".join(deltas) == call.function.arguments


async def test_streamed_and_whole_calls_carry_the_same_arguments(client: openai.AsyncOpenAI) -> None:
    request: dict[str, Any] = {
        "model": "gpt-4o",
        "messages": user("[emulate:tool_call=get_weather,get_time]"),
        "tools": [WEATHER, TIME],
    }
    whole = await client.chat.completions.create(**request)
    stream = await client.chat.completions.create(stream=True, **request)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                call["name"] += (delta.function and delta.function.name) or ""
                call["arguments"] += (delta.function and delta.function.arguments) or ""
    expected = [{"name": c.function.name, "arguments": c.function.arguments} for c in whole.choices[0].message.tool_calls or []]
    assert [calls[i] for i in sorted(calls)] == expected
    assert finish == "tool_calls"


async def test_stream_wire_shape_matches_azure(http: httpx2.AsyncClient) -> None:
    body = {
        "model": "gpt-4o",
        "messages": user("x"),
        "tools": [WEATHER],
        "tool_choice": forced("get_weather"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": API_KEY})
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    payloads = [json.loads(event) for event in events[:-1]]
    assert payloads[0]["choices"] == [] and "prompt_filter_results" in payloads[0]
    opening = payloads[1]["choices"][0]
    call_id = opening["delta"]["tool_calls"][0]["id"]
    assert opening["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}],
        "refusal": None,
    }
    pieces = [p["choices"][0]["delta"]["tool_calls"][0] for p in payloads[2:-2]]
    assert all(piece.keys() == {"index", "function"} and piece["function"].keys() == {"arguments"} for piece in pieces)
    assert pieces[0]["function"]["arguments"] == '{"'
    assert json.loads("".join(piece["function"]["arguments"] for piece in pieces)) == EXPECTED_WEATHER_ARGUMENTS
    assert payloads[-2]["choices"][0]["finish_reason"] == "tool_calls" and payloads[-2]["choices"][0]["delta"] == {}
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == len(pieces)


async def test_token_cap_cuts_the_arguments(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("x"), tools=[WEATHER], tool_choice=forced("get_weather"), max_completion_tokens=3
    )
    assert whole.choices[0].finish_reason == "length"
    assert [c.function.arguments for c in whole.choices[0].message.tool_calls or []] == ['{"city":"']


async def test_output_filter_wins_over_tool_calls(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="gpt-4o", messages=user("[emulate:output_filter]"), tools=[WEATHER], tool_choice="required"
    )
    assert whole.choices[0].finish_reason == "content_filter" and whole.choices[0].message.tool_calls is None


def tool_turn(call_id: str = "call_abc") -> list[dict[str, Any]]:
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    return [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [call]}]


@pytest.mark.parametrize(
    ("messages", "message", "param"),
    [
        (
            [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_abc", "content": "21"}],
            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
            "messages.[1].role",
        ),
        (
            [*tool_turn(), {"role": "tool", "tool_call_id": "call_other", "content": "21"}],
            "Invalid parameter: 'tool_call_id' of 'call_other' not found in 'tool_calls' of previous message.",
            "messages.[2].tool_call_id",
        ),
        (
            [*tool_turn(), {"role": "tool", "content": "21"}],
            "Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.",
            "messages.[2].tool_call_id",
        ),
        (
            [*tool_turn(), {"role": "user", "content": "and?"}],
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
            "The following tool_call_ids did not have response messages: call_abc",
            "messages.[1].role",
        ),
    ],
)
async def test_broken_tool_turns_are_refused_as_azure_does(
    client: openai.AsyncOpenAI, messages: list[dict[str, Any]], message: str, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["message"], body["param"], body["type"]) == (message, param, "invalid_request_error")


STRICT_BROKEN = {
    "type": "function",
    "function": {"name": "lookup", "strict": True, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
}


@pytest.mark.parametrize(
    ("request_body", "message", "param", "code"),
    [
        (
            {"tools": [STRICT_BROKEN]},
            "Invalid schema for function 'lookup': In context=(), 'additionalProperties' is required to be supplied and to be false.",
            "tools[0].function.parameters",
            "invalid_function_parameters",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "string"}}}]},
            "Invalid schema for function 'lookup': schema must be a JSON Schema of 'type: \"object\"', got 'type: \"string\"'.",
            "tools[0].function.parameters",
            "invalid_function_parameters",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"pattern": "^a"}}}},
                    }
                ]
            },
            "Invalid schema for function 'lookup': In context=('properties', 'q'), 'pattern' is not supported by the emulator "
            "(docs/emulators.md lists what it supports).",
            "tools[0].function.parameters",
            "emulator_unsupported",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "look up"}}]},
            "Invalid 'tools[0].function.name': string does not match pattern. Expected a string that matches the pattern "
            "'^[a-zA-Z0-9_-]+$' and is at most 64 characters long.",
            "tools[0].function.name",
            "invalid_value",
        ),
        (
            {"tool_choice": "required"},
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            "tool_choice",
            None,
        ),
        (
            {"tools": [WEATHER], "tool_choice": forced("get_time")},
            "Invalid value for 'tool_choice': function 'get_time' is not one of the functions in 'tools'.",
            "tool_choice",
            "invalid_value",
        ),
        (
            {"tools": [WEATHER], "messages": user("[emulate:tool_call=get_time]")},
            "emulator directive 'tool_call' names 'get_time', which is not in 'tools'",
            "messages",
            None,
        ),
        (
            {"tools": [WEATHER], "tool_choice": "none", "messages": user("[emulate:tool_call]")},
            "emulator directive 'tool_call' conflicts with tool_choice 'none'",
            "messages",
            None,
        ),
        ({"messages": user("[emulate:tool_call]")}, "emulator directive 'tool_call' needs 'tools' in the request", "messages", None),
    ],
)
async def test_bad_tool_requests_get_a_clear_400(
    http: httpx2.AsyncClient, request_body: dict[str, Any], message: str, param: str, code: str | None
) -> None:
    body = {"model": "gpt-4o", "messages": user("x"), **request_body}
    response = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": API_KEY})
    assert response.status_code == 400
    assert response.json() == {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
