"""Azure OpenAI chat completions: v1 and dated (deployments) paths, auth, validation, answers.

Paths, auth and the ``user_security_context`` schema follow "Azure OpenAI in Azure AI
Foundry Models REST API reference" (v1 and 2025-01-01-preview) and "Use Azure OpenAI with
Microsoft Defender for Cloud / user security context" (learn.microsoft.com); the field is
accepted from 2025-01-01-preview and in v1, an older dated version rejects it as an
unrecognized argument. A dated path without ``api-version`` is a 404 "Resource not found"
(MicrosoftDocs/azure-docs#114602). Response shapes: :mod:`devhost.emulator.aoai_wire`;
what is answered (text, JSON, tool calls): :mod:`devhost.emulator.model`;
behaviours on demand: :mod:`devhost.emulator.directives`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devhost.emulator import aoai_wire
from devhost.emulator.directives import DirectiveError, Directives, parse_directives
from devhost.emulator.generation import Answer, last_user_text
from devhost.emulator.model import parse_features, plan_reply
from devhost.emulator.records import Outcome, RequestRecord
from devhost.emulator.request_errors import InvalidRequest
from devhost.emulator.service_auth import authenticate, security_context_problem
from devhost.emulator.state import EmulatorState, get_state
from devhost.emulator.transport import (
    DropConnection,
    EventStream,
    StreamAbort,
    sleep_unless_disconnected,
)

COGNITIVE_SERVICES_AUDIENCE = "https://cognitiveservices.azure.com"
USC_FIRST_DATED_VERSION = "2025-01-01"
MIDSTREAM_FAIL_AFTER_PIECES = 3


class _Rejected(Exception):
    def __init__(
        self,
        status: int,
        payload: dict[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status, self.payload, self.headers = status, payload, headers


async def chat_v1(request: Request) -> Response:
    return await _chat(request, path_deployment=None, api_version=None)


async def chat_dated(request: Request) -> Response:
    deployment = request.path_params["deployment"]
    return await _chat(
        request,
        path_deployment=deployment,
        api_version=request.query_params.get("api-version", ""),
    )


async def _chat(request: Request, path_deployment: str | None, api_version: str | None) -> Response:
    state = get_state(request)
    state.stats.chat_requests += 1
    auth, auth_error = authenticate(request.headers, state, COGNITIVE_SERVICES_AUDIENCE, aoai_wire.BEARER_REJECTED_MESSAGE)
    record = state.records.add(request.url.path, api_version or None, auth, request.headers)
    response = await _answer_chat(request, record, state, auth_error, path_deployment, api_version)
    # Every Azure OpenAI answer, refusals included, carries its API Management request id and the
    # service's own request id; Azure OpenAI's diagnostic logs name the first as correlationId.
    record.apim_request_id, record.x_request_id = str(uuid.uuid4()), str(uuid.uuid4())
    response.headers["apim-request-id"], response.headers["x-request-id"] = record.apim_request_id, record.x_request_id
    return response


async def _answer_chat(
    request: Request,
    record: RequestRecord,
    state: EmulatorState,
    auth_error: dict[str, Any] | None,
    path_deployment: str | None,
    api_version: str | None,
) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    record.body = body
    try:
        if api_version == "":
            raise _Rejected(404, aoai_wire.azure_error("404", "Resource not found"))
        if auth_error is not None:
            raise _Rejected(401, auth_error)
        deployment = _validate(body, path_deployment, api_version, record, state.config.deployments)
        directives = _directives(body["messages"])
        answer = _answer(deployment, body, directives)
        # A non-streamed answer comes when it is complete: a think before it is a wait for the headers.
        wait_s = directives.slow_s + (0.0 if record.stream else directives.think_s)
        if await sleep_unless_disconnected(request.receive, wait_s):
            record.finish(None, "cancelled")
            return Response(status_code=499)
        _raise_for_directives(directives, api_version)
    except _Rejected as rejected:
        record.finish(rejected.status, "rejected")
        return JSONResponse(rejected.payload, status_code=rejected.status, headers=rejected.headers)
    # Generation has begun: what Azure bills for it (all of it, even if the client leaves before the end).
    record.usage = answer.usage()
    if directives.disconnect:
        record.finish(None, "failed")
        return DropConnection()
    if record.stream:
        return _stream(state, record, deployment, answer, directives, body)
    return _complete(record, deployment, answer, directives)


def _validate(
    body: Any,
    path_deployment: str | None,
    api_version: str | None,
    record: RequestRecord,
    known: tuple[str, ...],
) -> str:
    """The deployment to answer with; raises _Rejected as Azure does for a bad body."""
    if not isinstance(body, dict):
        raise _Rejected(
            400,
            aoai_wire.openai_error("We could not parse the JSON body of your request."),
        )
    deployment = path_deployment if path_deployment is not None else body.get("model")
    if not isinstance(deployment, str) or not deployment:
        raise _Rejected(400, aoai_wire.openai_error("you must provide a model parameter", "model"))
    record.deployment = deployment
    record.stream = body.get("stream") is True
    record.user_security_context = body.get("user_security_context")
    if deployment not in known:
        raise _Rejected(
            404,
            aoai_wire.azure_error("DeploymentNotFound", aoai_wire.DEPLOYMENT_NOT_FOUND_MESSAGE),
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Rejected(400, aoai_wire.openai_error("'messages' must be a non-empty array", "messages"))
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _Rejected(
                400,
                aoai_wire.openai_error(f"messages[{index}] must be an object with a role", "messages"),
            )
    for name in ("stream", "max_tokens", "max_completion_tokens"):
        expected = bool if name == "stream" else int
        value = body.get(name)
        if value is not None and (type(value) is not expected or (expected is int and value < 1)):
            raise _Rejected(400, aoai_wire.openai_error(f"Invalid value for '{name}'", name))
    if "user_security_context" in body:
        _validate_usc(body["user_security_context"], api_version)
    return deployment


def _validate_usc(context: Any, api_version: str | None) -> None:
    if api_version is not None and api_version[:10] < USC_FIRST_DATED_VERSION:
        raise _Rejected(
            400,
            aoai_wire.openai_error("Unrecognized request argument supplied: user_security_context", None),
        )
    problem = security_context_problem(context)
    if problem is not None:
        raise _Rejected(400, aoai_wire.openai_error(*problem))


def _directives(messages: list[dict[str, Any]]) -> Directives:
    try:
        return parse_directives(last_user_text(messages))
    except DirectiveError as exc:
        raise _Rejected(400, aoai_wire.openai_error(str(exc), "messages")) from None


def _raise_for_directives(directives: Directives, api_version: str | None) -> None:
    if directives.rate_limit_s is not None:
        seconds = directives.rate_limit_s
        headers = {"Retry-After": str(seconds), "retry-after-ms": str(seconds * 1000)}
        raise _Rejected(429, aoai_wire.rate_limited(api_version, seconds), headers)
    if directives.status is not None:
        raise _Rejected(directives.status, aoai_wire.status_error(directives.status))
    if directives.content_filter or directives.jailbreak:
        raise _Rejected(400, aoai_wire.prompt_filtered(jailbreak=directives.jailbreak))


def _answer(deployment: str, body: dict[str, Any], directives: Directives) -> Answer:
    try:
        answer = plan_reply(deployment, body, parse_features(body), directives)
    except InvalidRequest as invalid:
        raise _Rejected(400, aoai_wire.openai_error(invalid.message, invalid.param, invalid.code)) from None
    except DirectiveError as exc:
        raise _Rejected(400, aoai_wire.openai_error(str(exc), "messages")) from None
    if directives.output_filter:
        kept = answer.pieces[: max(1, len(answer.pieces) // 2)]
        answer = dataclasses.replace(answer, pieces=kept, finish_reason="content_filter")
    if directives.prompt_tokens is not None:
        answer = dataclasses.replace(answer, prompt_tokens=directives.prompt_tokens)
    return answer


def _complete(record: RequestRecord, deployment: str, answer: Answer, directives: Directives) -> Response:
    payload = aoai_wire.completion(_completion_id(), int(time.time()), deployment, answer)
    data = json.dumps(payload).encode()
    if directives.midstream_fail:
        return EventStream(
            _truncated(data),
            lambda outcome: record.finish(200, outcome),
            media_type="application/json",
        )
    record.finish(200, "completed")
    if directives.bad_json:
        data = data[: len(data) // 2]
    return Response(data, media_type="application/json")


async def _truncated(data: bytes) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    raise StreamAbort


def _stream(
    state: EmulatorState,
    record: RequestRecord,
    deployment: str,
    answer: Answer,
    directives: Directives,
    body: dict[str, Any],
) -> Response:
    def on_end(outcome: Outcome) -> None:
        record.finish(200, outcome)
        if outcome == "cancelled":
            state.stats.cancelled_streams += 1

    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    events = _events(deployment, answer, directives, include_usage)
    return EventStream(events, on_end, headers={"Cache-Control": "no-cache"})


async def _events(deployment: str, answer: Answer, directives: Directives, include_usage: bool) -> AsyncIterator[bytes]:
    completion_id, created = _completion_id(), int(time.time())
    delay = directives.chunk_delay_ms / 1000

    def chunk(choice: dict[str, Any] | None) -> bytes:
        return aoai_wire.sse(aoai_wire.chunk(completion_id, created, deployment, choice))

    yield aoai_wire.sse(aoai_wire.stream_prologue())
    if directives.think_s:
        await asyncio.sleep(directives.think_s)
    role, *deltas = aoai_wire.stream_deltas(answer)
    yield chunk(role)
    for index, delta in enumerate(deltas[:MIDSTREAM_FAIL_AFTER_PIECES] if directives.midstream_fail else deltas):
        if directives.bad_json and index == 1:
            yield b'data: {"id": "chatcmpl-broken", "choices": [\n\n'
        yield chunk(delta)
        if delay:
            await asyncio.sleep(delay)
    if directives.midstream_fail:
        raise StreamAbort
    filtered = answer.finish_reason == "content_filter"
    yield chunk(
        {
            "delta": {},
            "finish_reason": answer.finish_reason,
            "content_filter_results": aoai_wire.filter_results("violence") if filtered else {},
        }
    )
    if include_usage:
        yield aoai_wire.sse(
            {
                **aoai_wire.chunk(completion_id, created, deployment, None),
                "usage": answer.usage(),
            }
        )
    yield b"data: [DONE]\n\n"


def _completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"
