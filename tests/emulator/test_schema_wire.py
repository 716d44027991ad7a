"""Schemas drawn by hypothesis, answered by the emulator process: valid JSON, identical streamed or not."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
from hypothesis import HealthCheck, given, settings

from tests.support.chat import user
from tests.support.emulator import Emulator
from tests.support.strategies import json_schemas

WIRE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
OBJECTS = json_schemas(strict=False).map(lambda child: {"type": "object", "properties": {"value": child}, "required": ["value"]})


def streamed(sdk: openai.OpenAI, **request: Any) -> tuple[str, str]:
    """The streamed content and the streamed arguments of the first tool call."""
    content, arguments = "", ""
    for chunk in sdk.chat.completions.create(stream=True, **request):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            arguments += "".join((call.function and call.function.arguments) or "" for call in choice.delta.tool_calls or [])
    return content, arguments


@WIRE
@given(schema=OBJECTS)
def test_structured_output_and_tool_arguments_match_the_schema_on_the_wire(emulator: Emulator, schema: dict[str, Any]) -> None:
    with openai.OpenAI(base_url=f"{emulator.base}/openai/v1/", api_key=emulator.token(), max_retries=0, timeout=10) as sdk:
        structured: dict[str, Any] = {
            "model": "gpt-4o",
            "messages": user("x"),
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
        }
        content = sdk.chat.completions.create(**structured).choices[0].message.content or ""
        assert streamed(sdk, **structured) == (content, "")
        jsonschema.validate(json.loads(content), schema)

        tool = {"type": "function", "function": {"name": "act", "parameters": schema}}
        called: dict[str, Any] = {"model": "gpt-4o", "messages": user("x"), "tools": [tool], "tool_choice": "required"}
        [call] = sdk.chat.completions.create(**called).choices[0].message.tool_calls or []
        assert streamed(sdk, **called) == ("", call.function.arguments)
        assert json.loads(call.function.arguments) == json.loads(content)
