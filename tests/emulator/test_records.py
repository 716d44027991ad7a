"""Observability: request records (redacted), cancellation detection, counters and resets."""

from __future__ import annotations

import asyncio
import time

import httpx2
import openai

from devhost.emulator.records import RecordStore
from tests.support.chat import user
from tests.support.emulator import API_KEY, Emulator


async def test_records_describe_the_request_without_secrets(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    context = {"application_name": "spa", "end_user_id": "u-1", "source_ip": "203.0.113.7"}
    await client.chat.completions.create(
        model="gpt-4o",
        messages=user("hello"),
        extra_body={"user_security_context": context},
        extra_headers={"x-request-id": "abc"},
    )
    [record] = emulator.requests()
    assert record["path"] == "/openai/v1/chat/completions" and record["api_version"] is None
    assert record["deployment"] == "gpt-4o" and record["stream"] is False
    assert record["user_security_context"] == context and record["body"]["user_security_context"] == context
    assert record["status"] == 200 and record["outcome"] == "completed"
    assert record["received_at"] <= record["finished_at"]
    auth = record["auth"]
    assert auth["scheme"] == "bearer" and auth["aud"] == "https://cognitiveservices.azure.com" and auth["valid"]
    assert {"oid", "appid", "exp"} <= set(auth)
    assert record["headers"]["x-request-id"] == "abc" and "authorization" not in record["headers"]
    assert emulator.token().split(".")[0] not in str(emulator.requests())


async def test_api_key_is_recorded_as_a_hash_prefix(http: httpx2.AsyncClient, emulator: Emulator) -> None:
    await http.post("/openai/v1/chat/completions", json={"model": "gpt-4o", "messages": user("x")}, headers={"api-key": API_KEY})
    [record] = emulator.requests()
    assert record["auth"]["scheme"] == "api-key" and len(record["auth"]["key_sha256"]) == 12
    assert "api-key" not in record["headers"] and API_KEY not in str(record)


async def test_client_that_leaves_mid_stream_is_recorded_as_cancelled(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=user("[emulate:chunk_delay_ms=200] [emulate:words=50]"), stream=True
    )
    async for _ in stream:
        break
    await stream.close()
    left = time.time()
    for _ in range(200):
        [record] = emulator.requests()
        if record["outcome"]:
            break
        await asyncio.sleep(0.025)
    assert record["outcome"] == "cancelled" and record["status"] == 200
    # The stream would run another 10 s; a loaded machine may take a second or two to notice.
    assert record["finished_at"] - left < 3
    assert emulator.stats()["cancelled_streams"] == 1


async def test_stats_reset_and_delete(client: openai.AsyncOpenAI, emulator: Emulator) -> None:
    await client.chat.completions.create(model="gpt-4o", messages=user("x"))
    stats = emulator.stats()
    assert stats["chat_requests"] == 1 and stats["token_requests"] == 1
    assert set(stats) == {
        "token_requests",
        "chat_requests",
        "responses_requests",
        "cancelled_streams",
        "keyvault_requests",
        "keyvault_secret_reads",
    }
    emulator.control("DELETE", "requests")
    assert emulator.requests() == [] and emulator.stats()["chat_requests"] == 1
    emulator.control("POST", "reset")
    assert set(emulator.stats().values()) == {0}


async def test_config_rejects_a_bad_key(http: httpx2.AsyncClient) -> None:
    response = await http.post("/_emulator/config", json={"api_key": ""})
    assert response.status_code == 400


def test_records_are_bounded() -> None:
    store = RecordStore(limit=3)
    for _ in range(5):
        store.add("/p", None, {"scheme": "none"}, {})
    assert [r["id"] for r in store.as_list()] == [3, 4, 5]


async def test_every_answer_carries_azures_request_ids_and_the_record_keeps_them_beside_the_traceparent(
    http: httpx2.AsyncClient, emulator: Emulator
) -> None:
    traceparent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    body = {"model": "gpt-4o", "messages": user("hi")}
    answered = await http.post("/openai/v1/chat/completions", json=body, headers={"traceparent": traceparent, "api-key": API_KEY})
    refused = await http.post("/openai/v1/chat/completions", json=body)  # no credentials: 401
    assert (answered.status_code, refused.status_code) == (200, 401)
    first, second = emulator.requests()
    for response, record in ((answered, first), (refused, second)):
        assert response.headers["apim-request-id"] == record["apim_request_id"]
        assert response.headers["x-request-id"] == record["x_request_id"]
    assert first["headers"]["traceparent"] == traceparent
    assert len({first["apim_request_id"], second["apim_request_id"], first["x_request_id"]}) == 3
