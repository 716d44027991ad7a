"""shared.responses_relay: the Responses routes, off without a project endpoint, and no foreign id ever going upstream."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.access_controls import AccessControls
from shared.config import Settings, load_settings
from shared.errors import RelayError, UpstreamRejected
from shared.logs import RequestLog, UpstreamNotes
from shared.relay import Relay
from shared.responses_ids import IdSeal, Owner
from shared.responses_relay import ResponsesAction, ResponsesRelay
from shared.upstream import Upstream
from shared.upstream_errors import relay_error_for
from tests.support.app_settings import REQUIRED_SETTINGS
from tests.support.asgi import make_request
from tests.support.identities import OTHER_OID
from tests.support.strategies import CALLER, CALLER_HEADERS
from tests.support.tables import EtagTable, KeyTable

KEY = b"r" * 32
PROJECT = {
    "AZURE_AI_PROJECT_ENDPOINT": "https://contoso.services.ai.azure.com/api/projects/chat",
    "RELAY_RESPONSES_SEAL_KEY": base64.b64encode(KEY).decode(),
}
OTHERS_ID = IdSeal(KEY).seal(Owner(OTHER_OID, CALLER.principal.tenant_id), "resp_1")


async def no_upstream(settings: Settings) -> Upstream:
    raise AssertionError("the upstream must not be reached")


def relay(env: dict[str, str]) -> Relay:
    return Relay(
        load_settings({**REQUIRED_SETTINGS, "WEBSITE_AUTH_ENABLED": "true", **env}), no_upstream, project_upstream_factory=no_upstream
    )


def answer(r: Relay, action: ResponsesAction, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
    response = asyncio.run(r.responses(make_request(method, path, CALLER_HEADERS, body), action))
    return response.status_code, json.loads(bytes(response.body))


def test_without_a_project_endpoint_the_responses_api_is_the_guiding_404() -> None:
    status, body = answer(relay({}), "create", "POST", "/api/v1/responses", b'{"input":"hi"}')
    assert (status, body["error"]["code"]) == (404, "unsupported_route")
    assert "openai.chat(" in body["error"]["message"]


@pytest.mark.parametrize(
    ("action", "method", "path"),
    [
        ("retrieve", "GET", f"/api/v1/responses/{OTHERS_ID}"),
        ("delete", "DELETE", f"/api/v1/responses/{OTHERS_ID}"),
        ("cancel", "POST", f"/api/v1/responses/{OTHERS_ID}/cancel"),
        ("input_items", "GET", f"/api/v1/responses/{OTHERS_ID}/input_items"),
        ("retrieve", "GET", "/api/v1/responses/resp_1"),
        ("conversation_retrieve", "GET", f"/api/v1/conversations/{OTHERS_ID}"),
        ("conversation_delete", "DELETE", f"/api/v1/conversations/{OTHERS_ID}"),
        ("conversation_items", "GET", f"/api/v1/conversations/{OTHERS_ID}/items"),
    ],
)
def test_another_users_or_an_unsealed_id_is_a_404_before_anything_goes_upstream(action: ResponsesAction, method: str, path: str) -> None:
    status, body = answer(relay(PROJECT), action, method, path)
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_a_create_continuing_another_users_response_is_a_404_before_anything_goes_upstream() -> None:
    body = json.dumps({"input": "hi", "previous_response_id": OTHERS_ID}).encode()
    status, payload = answer(relay(PROJECT), "create", "POST", "/api/v1/responses", body)
    assert (status, payload["error"]["code"], payload["error"]["param"]) == (404, "not_found", "previous_response_id")


class Project:
    """A Foundry project that answers every create with ``usage`` and every retrieve with the response it made."""

    def __init__(self, usage: dict[str, int]) -> None:
        self.usage = usage
        self.sent: list[tuple[str, str, Any]] = []
        self.notes: list[UpstreamNotes | None] = []
        self._content = b""

    async def send(self, method: str, url: str, payload: bytes | None, request_id: str, notes: UpstreamNotes | None = None) -> Project:
        self.sent.append((method, url, json.loads(payload) if payload else None))
        self.notes.append(notes)
        self._content = json.dumps({"id": "resp_1", "object": "response", "output": [], "usage": self.usage}).encode()
        return self

    async def read(self) -> bytes:
        return self._content

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class Tables:
    def __init__(self) -> None:
        self.budget = EtagTable()

    def table(self, name: str) -> EtagTable:
        return self.budget

    async def aclose(self) -> None:
        pass


BUDGET = {**PROJECT, "RELAY_TABLE_ENDPOINT": "https://strelay.table.core.windows.net", "RELAY_BUDGET_USER_TOKENS_PER_MINUTE": "2000"}


def serving(project: Project) -> Callable[[Settings], Awaitable[Upstream]]:
    async def factory(settings: Settings) -> Upstream:
        return project  # type: ignore[return-value]

    return factory


def budgeted_relay(project: Project, tables: Tables) -> Relay:
    settings = load_settings({**REQUIRED_SETTINGS, "WEBSITE_AUTH_ENABLED": "true", **BUDGET})
    r = Relay(settings, no_upstream, project_upstream_factory=serving(project))
    r.controls = AccessControls(r.settings, lambda settings: tables)  # type: ignore[arg-type,return-value]
    return r


async def create(r: Relay, body: dict[str, Any]) -> dict[str, Any]:
    response = await r.responses(make_request("POST", "/api/v1/responses", CALLER_HEADERS, json.dumps(body).encode()), "create")
    assert response.status_code == 200, bytes(response.body)
    return dict(json.loads(bytes(response.body)))


async def test_a_continuation_reserves_the_whole_chain_it_continues_not_just_its_small_body() -> None:
    project, tables = Project({"input_tokens": 880, "output_tokens": 20, "total_tokens": 900}), Tables()
    r = budgeted_relay(project, tables)
    try:
        first = await create(r, {"input": "a long document"})
        await create(r, {"input": "and?", "previous_response_id": first["id"]})
        # 2000 a minute, 900 used: the continuation holds its 900 tokens of context, so its answer may take at most ~200.
        continued_cap = project.sent[-1][2]["max_output_tokens"]
        assert 180 < continued_cap < 2000 - 900 - 900 + 10
        assert project.sent[-1][2]["previous_response_id"] == "resp_1"
        # Each create's call is noted in its own record (retries, Azure's ids, the traceparent), as chat's is.
        assert all(isinstance(notes, UpstreamNotes) for notes in project.notes) and project.notes[0] is not project.notes[1]
    finally:
        await r.aclose()


async def test_a_chain_this_instance_did_not_relay_is_sized_by_reading_its_previous_response_once() -> None:
    project, tables = Project({"input_tokens": 880, "output_tokens": 20, "total_tokens": 900}), Tables()
    first_instance, second_instance = budgeted_relay(project, tables), budgeted_relay(project, tables)
    try:
        first = await create(first_instance, {"input": "a long document"})
        await create(second_instance, {"input": "and?", "previous_response_id": first["id"]})
        await create(second_instance, {"input": "more?", "previous_response_id": first["id"]})
        methods = [method for method, _, _ in project.sent]
        assert methods == ["POST", "GET", "POST", "POST"]
        assert project.sent[1][1].endswith("/openai/v1/responses/resp_1")
        # This instance has used nothing of its 2000 a minute: the 900 tokens of context leave the answer ~1100.
        assert 1000 < project.sent[2][2]["max_output_tokens"] < 2000 - 900
    finally:
        await first_instance.aclose()
        await second_instance.aclose()


async def test_instances_without_a_seal_key_share_the_one_the_first_put_in_the_table() -> None:
    key_table = KeyTable()
    env = {**PROJECT, "RELAY_RESPONSES_SEAL_KEY": "", "RELAY_TABLE_ENDPOINT": "https://strelay.table.core.windows.net"}
    instances = []
    for _ in range(2):
        project = Project({"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})

        async def factory(settings: Settings, project: Project = project) -> Upstream:
            return project  # type: ignore[return-value]

        r = Relay(
            load_settings({**REQUIRED_SETTINGS, "WEBSITE_AUTH_ENABLED": "true", **env}), no_upstream, project_upstream_factory=factory
        )
        r.controls = AccessControls(r.settings, lambda settings: KeyTables(key_table))  # type: ignore[arg-type,return-value]
        instances.append((r, project))
    try:
        first = await create(instances[0][0], {"input": "hi"})
        await create(instances[1][0], {"input": "go on", "previous_response_id": first["id"]})
        assert instances[1][1].sent[-1][2]["previous_response_id"] == "resp_1"
        assert len(key_table.rows) == 1
    finally:
        for r, _ in instances:
            await r.aclose()


class KeyTables:
    def __init__(self, table: KeyTable) -> None:
        self.key_table = table

    def table(self, name: str) -> KeyTable:
        assert name == "relayresponses"
        return self.key_table

    async def aclose(self) -> None:
        pass


class FailedResponseProject(Project):
    """A project whose responses failed, their error message naming the response's id and another of the service's."""

    RAW_ID = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"

    async def send(self, method: str, url: str, payload: bytes | None, request_id: str, notes: UpstreamNotes | None = None) -> Project:
        await super().send(method, url, payload, request_id, notes)
        message = f"Response {self.RAW_ID} failed: item msg_0123456789abcdef0123 was too large."
        failed = {"id": self.RAW_ID, "object": "response", "status": "failed", "error": {"code": "server_error", "message": message}}
        self._content = json.dumps(failed).encode()
        return self


async def test_a_retrieved_failed_responses_message_names_its_id_sealed_and_no_other_id_of_the_services() -> None:
    project = FailedResponseProject({"input_tokens": 1, "output_tokens": 1, "total_tokens": 2})
    r = budgeted_relay(project, Tables())
    sealed = IdSeal(KEY).seal(Owner.of(CALLER), FailedResponseProject.RAW_ID)
    try:
        response = await r.responses(make_request("GET", f"/api/v1/responses/{sealed}", CALLER_HEADERS), "retrieve")
    finally:
        await r.aclose()
    assert response.status_code == 200
    body = json.loads(bytes(response.body))
    assert body["id"] == sealed
    assert body["error"]["message"] == f"Response {sealed} failed: item <id> was too large."
    assert FailedResponseProject.RAW_ID not in bytes(response.body).decode().replace(sealed, "")


class RefusingProject(Project):
    """A project that refuses every create as Foundry does a continuation of a response it does not have."""

    async def send(self, method: str, url: str, payload: bytes | None, request_id: str, notes: UpstreamNotes | None = None) -> Project:
        await super().send(method, url, payload, request_id, notes)
        message = f"Previous response with id '{FailedResponseProject.RAW_ID}' not found."
        self.cause = UpstreamRejected(400, {"error": {"message": message, "param": "previous_response_id"}}, {})
        raise relay_error_for(self.cause) from self.cause


async def test_a_refusal_naming_the_continued_response_is_raised_with_its_id_sealed_in_its_text_too() -> None:
    project = RefusingProject({"input_tokens": 1, "output_tokens": 1, "total_tokens": 2})
    r = budgeted_relay(project, Tables())
    sealed = IdSeal(KEY).seal(Owner.of(CALLER), FailedResponseProject.RAW_ID)
    body = json.dumps({"input": "go on", "previous_response_id": sealed}).encode()
    try:
        answered = await r.responses(make_request("POST", "/api/v1/responses", CALLER_HEADERS, body), "create")
        responses = ResponsesRelay(r, serving(project), 30.0)
        record = RequestLog("r1", "responses.create")
        with pytest.raises(RelayError) as raised:
            await responses.handle(make_request("POST", "/api/v1/responses", CALLER_HEADERS, body), record, "create")
    finally:
        await r.aclose()
    expected = f"Previous response with id '{sealed}' not found."
    assert answered.status_code == 400
    assert json.loads(bytes(answered.body))["error"] == {
        "message": expected,
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "invalid_request",
    }
    error = raised.value
    assert (error.status, error.code, error.message, str(error)) == (400, "invalid_request", expected, expected)
    assert error.cause is project.cause and error.__cause__ is project.cause
