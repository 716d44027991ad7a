"""Agent frameworks on the relay's Responses API through the local host: the OpenAI Agents SDK and Microsoft Agent Framework.

Each runs a weather tool loop as its quickstart writes it, pointed at the relay with the caller's token:
the tool runs with the city from the question, the answer comes after the tool's result, and the
Foundry project (the emulator) receives every request with the caller's ``user_security_context``.
Agent Framework continues by ``previous_response_id``, so it needs stored responses: without them
(``store: False``, or RELAY_RESPONSES_STORE=false) the tests show what it is told, and the client
that works instead (README.md, "The Responses API").
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from agent_framework import Content, Message, tool
from agent_framework.exceptions import ChatClientException
from agent_framework.openai import OpenAIChatClient, OpenAIChatCompletionClient
from agents import Agent, RunConfig, Runner, function_tool
from agents.models import get_default_model
from agents.models.openai_provider import OpenAIProvider
from pydantic import BaseModel

from devhost.appservice_auth import DEV_TENANT_ID
from tests.reliability.common import client
from tests.support.stack import APPLICATION_NAME, Stack, run_stack

DEPLOYMENT = "gpt-4o-mini"
QUESTION = "What is the weather in Oslo?"


class Forecast(BaseModel):
    city: str
    sky: str


@pytest.fixture
def caller(stack: Stack) -> tuple[str, str]:
    """A user of its own (object ID, token), so that the project's records name this test's caller."""
    oid = str(uuid.uuid4())
    return oid, stack.token(oid=oid)


@pytest.fixture
def marker() -> str:
    """Put in an agent's instructions, which every request of its run carries: it finds the run's records."""
    return uuid.uuid4().hex


@pytest.fixture
def default_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The Agents SDK's documented switch for its default model's name: the relay serves deployments by their names."""
    monkeypatch.setenv("OPENAI_DEFAULT_MODEL", DEPLOYMENT)
    yield


def security_context(oid: str) -> dict[str, str]:
    return {"application_name": APPLICATION_NAME, "end_user_id": oid, "end_user_tenant_id": DEV_TENANT_ID, "source_ip": "127.0.0.1"}


def project_records(stack: Stack, marker: str) -> list[dict[str, Any]]:
    """What the Foundry project received for the run whose instructions hold ``marker``, oldest first."""
    return [r for r in stack.requests() if r["path"].endswith("/openai/v1/responses") and marker in json.dumps(r["body"])]


def tool_outputs(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in record["body"]["input"] if isinstance(item, dict) and item.get("type") == "function_call_output"]


# The OpenAI Agents SDK -----------------------------------------------------------------------------


def run_config(stack: Stack, token: str) -> RunConfig:
    """The relay as the run's model provider (its Responses model by default), with tracing off: nothing goes to OpenAI."""
    client = openai.AsyncOpenAI(base_url=f"{stack.api}/v1", api_key=token, max_retries=0, timeout=20)
    return RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True)


def weather_agent(marker: str, cities: list[str]) -> Agent[Any]:
    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"Sunny and 21 degrees in {city}"

    return Agent(name="Weather", instructions=f"Answer weather questions with the tool. ({marker})", tools=[get_weather])


@pytest.mark.usefixtures("default_model")
def test_the_agents_sdks_default_model_runs_a_tool_loop_and_a_next_turn(stack: Stack, caller: tuple[str, str], marker: str) -> None:
    oid, token = caller
    cities: list[str] = []
    agent = weather_agent(marker, cities)
    assert agent.model is None  # the SDK's default: its Responses model, named by OPENAI_DEFAULT_MODEL

    result = Runner.run_sync(agent, QUESTION, run_config=run_config(stack, token))

    assert cities == ["Oslo"]
    assert [item.type for item in result.new_items] == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    assert isinstance(result.final_output, str) and "Sunny and 21 degrees in Oslo" in result.final_output
    first, second = project_records(stack, marker)
    assert first["user_security_context"] == second["user_security_context"] == security_context(oid)
    assert first["body"]["model"] == DEPLOYMENT and [t["name"] for t in first["body"]["tools"]] == ["get_weather"]
    [output] = tool_outputs(second)
    assert output["output"] == "Sunny and 21 degrees in Oslo"

    assert result.last_response_id is not None
    Runner.run_sync(agent, "And in Bergen?", previous_response_id=result.last_response_id, run_config=run_config(stack, token))
    third = project_records(stack, marker)[2]
    # The relay hands out the service's id sealed to its caller (<service id>_<MAC>) and unseals it on the way back.
    assert result.last_response_id.startswith(f"{third['body']['previous_response_id']}_")
    assert third["user_security_context"] == security_context(oid)


@pytest.mark.usefixtures("default_model")
async def test_a_streamed_agents_sdk_run_streams_the_call_then_the_answer(stack: Stack, caller: tuple[str, str], marker: str) -> None:
    oid, token = caller
    cities: list[str] = []
    result = Runner.run_streamed(weather_agent(marker, cities), QUESTION, run_config=run_config(stack, token))
    events = [event async for event in result.stream_events()]

    names = [event.name for event in events if event.type == "run_item_stream_event"]
    deltas = [
        event.data.delta for event in events if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]
    assert names[:2] == ["tool_called", "tool_output"] and names[-1] == "message_output_created"
    assert cities == ["Oslo"]
    assert "".join(deltas) == result.final_output and "Sunny and 21 degrees in Oslo" in result.final_output
    records = project_records(stack, marker)
    assert [r["stream"] for r in records] == [True, True]
    assert all(r["user_security_context"] == security_context(oid) for r in records)


@pytest.mark.usefixtures("default_model")
def test_an_agents_sdk_run_keeps_its_turns_in_a_conversation_of_the_callers(stack: Stack, caller: tuple[str, str], marker: str) -> None:
    oid, token = caller
    conversation = client(stack, token=token).conversations.create()
    cities: list[str] = []
    agent = weather_agent(marker, cities)
    Runner.run_sync(agent, QUESTION, conversation_id=conversation.id, run_config=run_config(stack, token))
    later = Runner.run_sync(agent, "And tomorrow?", conversation_id=conversation.id, run_config=run_config(stack, token))

    assert cities == ["Oslo"] and "And tomorrow" in later.final_output
    records = project_records(stack, marker)
    assert len(records) == 3 and all(conversation.id.startswith(f"{r['body']['conversation']}_") for r in records)
    assert all(r["user_security_context"] == security_context(oid) for r in records)


@pytest.mark.usefixtures("default_model")
def test_an_agent_without_tools_is_answered_and_its_output_type_parsed(stack: Stack, caller: tuple[str, str], marker: str) -> None:
    _, token = caller
    hello = Agent(name="Assistant", instructions=f"You are a helpful assistant ({marker})")
    assert Runner.run_sync(hello, "Write a haiku about recursion", run_config=run_config(stack, token)).final_output
    forecaster = Agent(name="Forecaster", instructions=f"Forecast ({marker})", output_type=Forecast)
    forecast = Runner.run_sync(forecaster, "Oslo tomorrow", run_config=run_config(stack, token)).final_output
    assert isinstance(forecast, Forecast)
    # The SDK sends an empty tools list for an agent without tools; the Responses API takes it as none.
    assert [r["body"]["tools"] for r in project_records(stack, marker)] == [[], []]


def test_the_agents_sdks_own_default_model_name_is_refused_naming_it(
    stack: Stack, caller: tuple[str, str], marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_DEFAULT_MODEL", raising=False)
    with pytest.raises(openai.BadRequestError) as caught:
        Runner.run_sync(weather_agent(marker, []), QUESTION, run_config=run_config(stack, caller[1]))
    assert (caught.value.code, caught.value.param) == ("model_not_allowed", "model")
    assert f"The model '{get_default_model()}' is not available on this relay. See GET /api/v1/models." in str(caught.value)
    assert project_records(stack, marker) == []


# Microsoft Agent Framework --------------------------------------------------------------------------


def framework_weather(cities: list[str]) -> Any:
    """An Agent Framework tool that notes each city it is asked about."""

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"Rain and 9 degrees in {city}"

    return get_weather


def framework_agent(stack: Stack, token: str, marker: str, cities: list[str], **options: Any) -> Any:
    """Agent Framework's Responses client (``OpenAIChatClient``) pointed at the relay, as an agent with a weather tool."""
    client = OpenAIChatClient(model=DEPLOYMENT, base_url=f"{stack.api}/v1", api_key=token)
    return client.as_agent(
        name="Weather",
        instructions=f"Answer weather questions with the tool. ({marker})",
        tools=[framework_weather(cities)],
        default_options=options or None,
    )


def function_call(messages: Sequence[Message]) -> Content:
    [call] = [content for message in messages for content in message.contents if content.type == "function_call"]
    return call


async def test_agent_framework_continues_its_tool_loop_and_its_session_by_previous_response_id(
    stack: Stack, caller: tuple[str, str], marker: str
) -> None:
    oid, token = caller
    cities: list[str] = []
    agent = framework_agent(stack, token, marker, cities)
    session = agent.create_session()

    response = await agent.run(QUESTION, session=session)

    assert cities == ["Oslo"]
    assert "Rain and 9 degrees in Oslo" in response.text
    first, second = project_records(stack, marker)
    assert first["user_security_context"] == second["user_security_context"] == security_context(oid)
    assert "previous_response_id" not in first["body"]
    # The tool result goes alone, on the stored response that asked for it (the project refuses an output without its call).
    assert second["body"]["previous_response_id"].startswith("resp_")
    assert second["body"]["input"] == [
        {"call_id": function_call(response.messages).call_id, "type": "function_call_output", "output": "Rain and 9 degrees in Oslo"}
    ]

    sealed = session.service_session_id
    assert isinstance(sealed, str)
    again = await agent.run("And tomorrow?", session=session)
    third = project_records(stack, marker)[2]
    assert sealed.startswith(f"{third['body']['previous_response_id']}_")
    assert third["body"]["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]}]
    assert third["user_security_context"] == security_context(oid)
    assert "And tomorrow" in again.text and cities == ["Oslo"]


async def test_agent_framework_streams_its_tool_loop(stack: Stack, caller: tuple[str, str], marker: str) -> None:
    oid, token = caller
    cities: list[str] = []
    stream = framework_agent(stack, token, marker, cities).run(QUESTION, stream=True)
    updates = [update async for update in stream]
    response = await stream.get_final_response()

    assert cities == ["Oslo"]
    assert len(updates) > 5 and "Rain and 9 degrees in Oslo" in response.text
    records = project_records(stack, marker)
    assert [r["stream"] for r in records] == [True, True]
    assert all(r["user_security_context"] == security_context(oid) for r in records)


async def test_agent_framework_with_store_false_is_told_which_id_the_relay_never_handed_out(
    stack: Stack, caller: tuple[str, str], marker: str
) -> None:
    """Unstored, the framework replays a session's history, a tool call under an id of its own making (``fc_<call_id>``).

    The relay forwards no id it did not hand to the caller (README, "State belongs to its owner"): the
    turn is a 404 naming that id, before anything goes upstream. The first turn's tool loop works.
    """
    _, token = caller
    cities: list[str] = []
    agent = framework_agent(stack, token, marker, cities, store=False)
    session = agent.create_session()
    first = await agent.run(QUESTION, session=session)
    assert "Rain and 9 degrees in Oslo" in first.text

    with pytest.raises(ChatClientException) as caught:
        await agent.run("And in Bergen?", session=session)

    refusal = caught.value.__cause__
    assert isinstance(refusal, openai.NotFoundError) and refusal.code == "not_found"
    made_up = f"fc_{function_call(first.messages).call_id}"
    assert f"No response, item or conversation with id '{made_up}' was found." in str(refusal)
    assert [r["body"]["store"] for r in project_records(stack, marker)] == [False, False]


def test_without_stored_responses_agent_framework_runs_on_its_chat_completions_client(tmp_path: Path) -> None:
    """With RELAY_RESPONSES_STORE=false the Responses client's continuation has nothing to continue; Chat Completions needs no state."""

    async def both(unstored: Stack) -> None:
        token, cities = unstored.token(), list[str]()
        with pytest.raises(ChatClientException) as caught:
            await framework_agent(unstored, token, uuid.uuid4().hex, cities).run(QUESTION)
        refusal = caught.value.__cause__
        assert isinstance(refusal, openai.BadRequestError) and "Previous response with id" in str(refusal)
        assert (refusal.code, refusal.param) == ("invalid_request", "previous_response_id")
        # The message names the id as the client holds it (sealed), never the service's own.
        named = re.search(r"id '([^']+)'", str(refusal))
        assert named and re.fullmatch(r"resp_[0-9a-f]{48}_[0-9a-f]{24}", named.group(1)), str(refusal)

        chat = OpenAIChatCompletionClient(model=DEPLOYMENT, base_url=f"{unstored.api}/v1", api_key=token)
        response = await chat.as_agent(name="Weather", tools=[framework_weather(cities)]).run(QUESTION)
        assert "Rain and 9 degrees in Oslo" in response.text and cities == ["Oslo", "Oslo"]

    with run_stack(tmp_path, {"RELAY_RESPONSES_STORE": "false", "RELAY_MAX_TOKENS": "100"}) as unstored:
        asyncio.run(both(unstored))
