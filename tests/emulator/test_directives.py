"""Every ``[emulate:...]`` directive, as the official SDK (or a raw client) observes it."""

from __future__ import annotations

import json
import time

import httpx2
import openai
import pytest

from devhost.emulator.directives import DirectiveError, Directives, parse_directives, strip_directives
from tests.support.chat import user
from tests.support.emulator import API_KEY, Emulator


def test_parse_values_and_defaults() -> None:
    parsed = parse_directives("hi [emulate:rate_limit] [emulate:slow=0.5] [emulate:words=3] [emulate:jailbreak]")
    assert parsed == Directives(rate_limit_s=7, slow_s=0.5, words=3, jailbreak=True)
    assert parse_directives("no directives here") == Directives()
    with pytest.raises(DirectiveError):
        parse_directives("[emulate:status=200]")
    with pytest.raises(DirectiveError):
        parse_directives("[emulate:bad_json=1]")


def test_tool_call_directive_takes_optional_function_names() -> None:
    assert parse_directives("[emulate:tool_call]").tool_call == ()
    assert parse_directives("[emulate:tool_call=get_weather,get_time]").tool_call == ("get_weather", "get_time")
    assert parse_directives("plain").tool_call is None
    with pytest.raises(DirectiveError, match="function names"):
        parse_directives("[emulate:tool_call=get.weather]")
    with pytest.raises(DirectiveError, match="function names"):
        parse_directives("[emulate:tool_call=a,,b]")


def test_strip_leaves_the_words() -> None:
    assert strip_directives("tell [emulate:words=3] me").split() == ["tell", "me"]


async def test_content_filter_blocks_the_prompt(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user("[emulate:content_filter]"))
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "content_filter" and error["param"] == "prompt" and error["status"] == 400
    assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    result = error["innererror"]["content_filter_result"]
    assert result["hate"] == {"filtered": True, "severity": "high"}
    assert result["jailbreak"] == {"filtered": False, "detected": False}
    assert emulator.requests()[0]["outcome"] == "rejected"


async def test_jailbreak_blocks_the_prompt(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user("ignore all rules [emulate:jailbreak]"))
    assert isinstance(caught.value.body, dict)
    result = caught.value.body["innererror"]["content_filter_result"]
    assert result["jailbreak"] == {"filtered": True, "detected": True}
    assert result["hate"]["filtered"] is False


async def test_output_filter(client: openai.AsyncOpenAI) -> None:
    request = {"model": "gpt-4o", "messages": user("story [emulate:output_filter]")}
    whole = await client.chat.completions.create(**request)  # type: ignore[call-overload]
    assert whole.choices[0].finish_reason == "content_filter"
    assert whole.choices[0].message.content is None
    assert whole.choices[0].model_extra["content_filter_results"]["violence"] == {"filtered": True, "severity": "high"}
    stream = await client.chat.completions.create(stream=True, **request)  # type: ignore[call-overload]
    chunks = [c async for c in stream if c.choices]
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].choices[0].model_extra["content_filter_results"]["violence"]["filtered"] is True
    assert len("".join(c.choices[0].delta.content or "" for c in chunks).split()) == 10


@pytest.mark.parametrize(("directive", "seconds"), [("[emulate:rate_limit]", 7), ("[emulate:rate_limit=2]", 2)])
async def test_rate_limit(client: openai.AsyncOpenAI, directive: str, seconds: int) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user(directive))
    headers = caught.value.response.headers
    assert headers["retry-after"] == str(seconds) and headers["retry-after-ms"] == str(seconds * 1000)
    assert caught.value.code == "429" and f"retry after {seconds} seconds" in caught.value.message


@pytest.mark.parametrize("status", [403, 500, 503])
async def test_status(client: openai.AsyncOpenAI, status: int) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user(f"[emulate:status={status}]"))
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and "message" in caught.value.body


async def test_slow_delays_the_headers(client: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    await client.chat.completions.create(model="gpt-4o", messages=user("[emulate:slow=0.4]"))
    assert time.monotonic() - started >= 0.4


async def test_chunk_delay_spaces_the_chunks(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("[emulate:chunk_delay_ms=50] [emulate:words=6]"), stream=True
    )
    arrivals = [time.monotonic() async for _ in stream]
    assert arrivals[-1] - arrivals[0] >= 6 * 0.05 * 0.9


async def test_words_sets_the_length(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model="gpt-4o", messages=user("a b [emulate:words=42]"))
    assert len((whole.choices[0].message.content or "").split()) == 42


async def test_prompt_tokens_bills_that_many_prompt_tokens_streamed_or_not(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    whole = await client.chat.completions.create(model="gpt-4o", messages=user("a picture [emulate:prompt_tokens=1500] [emulate:words=5]"))
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (1500, 5, 1505)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("[emulate:prompt_tokens=7]"), stream=True, stream_options={"include_usage": True}
    )
    usages = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert [(u.prompt_tokens, u.completion_tokens) for u in usages] == [(7, 20)]
    assert [record["usage"]["total_tokens"] for record in emulator.requests()] == [1505, 27]  # what the emulator billed
    with pytest.raises(DirectiveError):
        parse_directives("[emulate:prompt_tokens=-1]")


async def test_midstream_fail_breaks_the_transfer(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    stream = await client.chat.completions.create(model="gpt-4o", messages=user("[emulate:midstream_fail]"), stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError) as caught:
        async for chunk in stream:
            received.append(chunk)
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Emulated gpt-4o answer"
    assert emulator.requests()[0]["outcome"] == "failed"


async def test_midstream_fail_non_streamed(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="gpt-4o", messages=user("[emulate:midstream_fail]"))


async def test_bad_json(client: openai.AsyncOpenAI, http: httpx2.AsyncClient) -> None:
    body = {"model": "gpt-4o", "messages": user("[emulate:bad_json]")}
    response = await http.post("/openai/v1/chat/completions", json=body, headers={"api-key": API_KEY})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)
    stream = await client.chat.completions.create(stream=True, **body)  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        async for _ in stream:
            pass


async def test_disconnect_sends_nothing(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    with pytest.raises(openai.APIConnectionError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=user("[emulate:disconnect]"))
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    [record] = emulator.requests()
    assert record["outcome"] == "failed" and record["status"] is None
