"""Structured outputs and JSON mode through the official SDK against the emulator process."""

from __future__ import annotations

import enum
import json
from typing import Any

import httpx2
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.support.chat import user
from tests.support.emulator import API_KEY


class Unit(enum.StrEnum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Day(BaseModel):
    date: str
    high: float


class Forecast(BaseModel):
    city: str
    unit: Unit
    days: list[Day]
    note: str | None


EXPECTED = Forecast(city="city", unit=Unit.CELSIUS, days=[Day(date="date", high=1)], note="note")
REPORT_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 12},
        "score": {"type": "number", "minimum": 40, "exclusiveMaximum": 41},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 3, "maxItems": 3},
        "author": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}, "required": ["email"]},
    },
    "required": ["title", "score"],
}


async def test_parse_helper_returns_the_model(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.parse(model="gpt-4o", messages=user("Forecast for Oslo"), response_format=Forecast)
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert message.parsed == EXPECTED
    assert json.loads(message.content or "") == EXPECTED.model_dump(mode="json")


async def test_streamed_structured_output_is_parsed_by_the_sdk_helper(client: openai.AsyncOpenAI) -> None:
    async with client.chat.completions.stream(model="gpt-4o", messages=user("Forecast"), response_format=Forecast) as stream:
        deltas = [event.delta async for event in stream if event.type == "content.delta"]
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == EXPECTED
    assert len(deltas) > 1 and "".join(deltas) == final.choices[0].message.content


async def test_non_strict_schema_bounds_are_honoured(client: openai.AsyncOpenAI) -> None:
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "report", "schema": REPORT_SCHEMA}}
    whole = await client.chat.completions.create(model="gpt-4o", messages=user("report"), response_format=response_format)
    report = json.loads(whole.choices[0].message.content or "")
    jsonschema.validate(report, REPORT_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert report == {"title": "titletitleti", "score": 40, "tags": ["a", "a", "a"], "author": {"email": "user@example.com"}}


async def test_json_mode_answers_a_json_object(client: openai.AsyncOpenAI) -> None:
    request: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": user("Reply in JSON: hello there"),
        "response_format": {"type": "json_object"},
    }
    whole = await client.chat.completions.create(**request)
    stream = await client.chat.completions.create(stream=True, **request)
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert streamed == whole.choices[0].message.content
    document = json.loads(streamed)
    assert list(document) == ["answer"]
    assert document["answer"].startswith("Emulated gpt-4o-mini answer to: Reply in JSON hello there")


async def test_structured_output_after_a_tool_result(client: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Forecast for Oslo"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "Day", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    tools = [openai.pydantic_function_tool(Day)]
    completion = await client.chat.completions.parse(model="gpt-4o", messages=messages, tools=tools, response_format=Forecast)
    assert completion.choices[0].message.parsed == EXPECTED and not completion.choices[0].message.tool_calls


@pytest.mark.parametrize(
    ("response_format", "messages", "message", "param", "code"),
    [
        (
            {"type": "json_object"},
            user("hello"),
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
            "messages",
            None,
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "out", "strict": True, "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            },
            user("x"),
            "Invalid schema for response_format 'out': In context=(), 'additionalProperties' is required to be supplied and to be false.",
            "response_format",
            None,
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "out",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"n": {"type": "integer", "minimum": 1}},
                        "required": ["n"],
                        "additionalProperties": False,
                    },
                },
            },
            user("x"),
            "Invalid schema for response_format 'out': In context=('properties', 'n'), 'minimum' is not permitted.",
            "response_format",
            None,
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "string", "pattern": "^[a-z]+$"}}},
            user("x"),
            "Invalid schema for response_format 'out': In context=(), 'pattern' is not supported by the emulator "
            "(docs/emulators.md lists what it supports).",
            "response_format",
            "emulator_unsupported",
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
            user("x"),
            "Missing required parameter: 'response_format.json_schema.name'.",
            "response_format.json_schema.name",
            "missing_required_parameter",
        ),
        (
            {"type": "yaml"},
            user("x"),
            "Invalid value: 'yaml'. Supported values are: 'text', 'json_object', and 'json_schema'.",
            "response_format.type",
            "invalid_value",
        ),
    ],
)
async def test_bad_response_formats_get_a_clear_400(
    http: httpx2.AsyncClient, response_format: dict[str, Any], messages: list[dict[str, Any]], message: str, param: str, code: str | None
) -> None:
    body = {"model": "gpt-4o", "messages": messages, "response_format": response_format}
    response = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": API_KEY})
    assert response.status_code == 400
    assert response.json() == {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
