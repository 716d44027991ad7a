"""The Responses API through the local host, the emulator playing the Foundry project: the Python SDK, and state bound to its owner.

Every id the first user gets back (a response, its output items) is tried by a second user on every
route and in every field that takes one: each is a 404, and the first user's state is untouched.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from devhost.appservice_auth import DEV_OBJECT_ID, DEV_TENANT_ID
from tests.reliability.common import client
from tests.support import rawhttp
from tests.support.identities import OTHER_OID
from tests.support.stack import APPLICATION_NAME, Stack

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    "strict": True,
}


def project_record(stack: Stack, marker: str) -> dict[str, Any]:
    return next(r for r in reversed(stack.requests()) if "/api/projects/" in r["path"] and marker in json.dumps(r["body"]))


def other_user(stack: Stack) -> openai.OpenAI:
    return client(stack, token=stack.token(oid=OTHER_OID))


def test_a_create_reaches_the_project_with_the_callers_context_a_cap_and_the_projects_token(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    response = client(stack).responses.create(model="gpt-4o-mini", input=f"hello {marker}", user="ceo")
    assert response.status == "completed" and marker in response.output_text
    record = project_record(stack, marker)
    assert record["user_security_context"] == {
        "application_name": APPLICATION_NAME,
        "end_user_id": DEV_OBJECT_ID,
        "end_user_tenant_id": DEV_TENANT_ID,
        "source_ip": "127.0.0.1",
    }
    assert record["auth"]["aud"] == "https://ai.azure.com"
    assert record["body"]["max_output_tokens"] == 100  # the stack's RELAY_MAX_TOKENS
    assert record["body"]["user"] != "ceo"


def test_a_stream_arrives_whole_with_usage_and_its_ids_are_the_callers(stack: Stack) -> None:
    sdk = client(stack)
    with sdk.responses.stream(model="gpt-4o-mini", input="stream a few words [emulate:words=6]") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 6
    assert final.usage is not None and final.usage.output_tokens > 0
    assert sdk.responses.retrieve(final.id).output_text == final.output_text


class Weather(BaseModel):
    city: str


def test_parse_gives_the_schemas_instance(stack: Stack) -> None:
    parsed = client(stack).responses.parse(model="gpt-4o-mini", input="Oslo weather as JSON", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)


def test_a_tool_loop_continues_with_previous_response_id_and_the_tool_result(stack: Stack) -> None:
    sdk = client(stack)
    first = sdk.responses.create(model="gpt-4o-mini", input="What is the weather in Oslo?", tools=[WEATHER], tool_choice="required")  # type: ignore[list-item]
    (call,) = [item for item in first.output if item.type == "function_call"]
    second = sdk.responses.create(
        model="gpt-4o-mini",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert "get_weather" in second.output_text
    assert second.usage is not None and first.usage is not None and second.usage.input_tokens > first.usage.input_tokens


def test_a_second_user_gets_a_404_for_every_id_and_route_of_the_first(stack: Stack) -> None:
    owner = client(stack)
    conversation = owner.conversations.create(items=[{"type": "message", "role": "user", "content": "my plans so far"}])
    first = owner.responses.create(model="gpt-4o-mini", input="my secret plans", conversation=conversation.id)
    message_id = first.output[0].id
    other = other_user(stack)
    attempts = {
        "conversation": lambda: other.responses.create(model="gpt-4o-mini", input="go on", conversation=conversation.id),
        "conversation retrieve": lambda: other.conversations.retrieve(conversation.id),
        "conversation delete": lambda: other.conversations.delete(conversation.id),
        "conversation items": lambda: other.conversations.items.list(conversation.id),
        "retrieve": lambda: other.responses.retrieve(first.id),
        "delete": lambda: other.responses.delete(first.id),
        "cancel": lambda: other.responses.cancel(first.id),
        "input_items": lambda: other.responses.input_items.list(first.id),
        "previous_response_id": lambda: other.responses.create(model="gpt-4o-mini", input="go on", previous_response_id=first.id),
        "item_reference": lambda: other.responses.create(model="gpt-4o-mini", input=[{"type": "item_reference", "id": message_id}]),
        "an item's id": lambda: other.responses.create(
            model="gpt-4o-mini", input=[{"type": "message", "role": "assistant", "id": message_id, "content": "x"}]
        ),
    }
    for name, attempt in attempts.items():
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        assert caught.value.code == "not_found", name
    assert owner.responses.retrieve(first.id).output_text == first.output_text
    assert owner.conversations.retrieve(conversation.id).id == conversation.id
    assert [item.id for item in owner.conversations.items.list(conversation.id, order="asc")][-1] == message_id
    referenced = owner.responses.create(
        model="gpt-4o-mini", input=[{"type": "item_reference", "id": message_id}, {"role": "user", "content": "and?"}]
    )
    assert referenced.status == "completed"


def test_the_owner_deletes_and_then_the_id_is_a_404(stack: Stack) -> None:
    sdk = client(stack)
    response = sdk.responses.create(model="gpt-4o-mini", input="forget me")
    sdk.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.retrieve(response.id)
    assert caught.value.code == "not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"background": True}, "background"),
        ({"extra_body": {"agent_reference": {"name": "a"}}}, "agent_reference"),
    ],
)
def test_what_the_relay_cannot_bind_or_that_reaches_out_is_refused(stack: Stack, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack).responses.create(model="gpt-4o-mini", input="hi", **extra)
    assert (caught.value.code, caught.value.param) == ("parameter_not_allowed", param)


def stream_raw(stack: Stack, prompt: str, request_id: str) -> bytes:
    body = json.dumps({"model": "gpt-4o-mini", "input": prompt, "stream": True}).encode()
    headers = [("Authorization", f"Bearer {stack.token()}"), ("Content-Type", "application/json"), ("x-request-id", request_id)]
    response = rawhttp.request(stack.port, "POST", "/api/v1/responses", headers, body)
    assert response.status == 200
    return response.body


def test_a_streams_usage_from_its_terminal_event_is_in_the_requests_log_line(stack: Stack) -> None:
    with client(stack, request_id="responses-log-probe").responses.stream(model="gpt-4o-mini", input="count [emulate:words=6]") as stream:
        usage = stream.get_final_response().usage
    assert usage is not None
    [line] = [json.loads(line) for line in stack.log_lines_once('"responses-log-probe"') if '"responses-log-probe"' in line]
    assert (line["route"], line["status"], line["stream"]) == ("responses.create", 200, True)
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (
        usage.input_tokens,
        usage.output_tokens,
        usage.total_tokens,
    )


def test_a_stream_that_breaks_off_ends_with_an_error_event_after_whole_events(stack: Stack) -> None:
    body = stream_raw(stack, "fail please [emulate:midstream_fail]", "responses-broken")
    *events, last = body.removesuffix(b"\n\n").split(b"\n\n")
    assert events and all(event.startswith(b"event: response.") for event in events)
    assert last.startswith(b"event: error\ndata: ")
    sent = json.loads(last.split(b"data: ", 1)[1])
    assert sent["error"]["code"] == "upstream_error"
    # The Responses API's own error event, numbered after the events before it.
    assert (sent["type"], sent["code"], sent["sequence_number"]) == ("error", "upstream_error", len(events))
    [line] = [json.loads(line) for line in stack.log_lines_once('"responses-broken"') if '"responses-broken"' in line]
    assert line["status"] == 502


def test_a_long_think_is_kept_alive_with_comments_the_sdk_ignores(stack: Stack) -> None:
    body = stream_raw(stack, "ponder [emulate:think=1.6] [emulate:words=3]", "responses-think")
    assert b": keep-alive\n\n" in body  # the stack sends one after 0.5 s of silence
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"event: response.completed")


def test_a_conversation_carries_its_items_into_the_next_response(stack: Stack) -> None:
    sdk = client(stack)
    conversation = sdk.conversations.create(items=[{"type": "message", "role": "user", "content": "remember the word heron"}])
    first = sdk.responses.create(model="gpt-4o-mini", input="what was the word?", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    second = sdk.responses.create(model="gpt-4o-mini", input="and again", conversation={"id": conversation.id})
    assert second.usage is not None and first.usage is not None and second.usage.input_tokens > first.usage.input_tokens
    assert sdk.conversations.delete(conversation.id).deleted is True
