"""shared.relay: the handlers without a server, the Easy Auth gate, identity policy, input errors, and how a stream ends.

Examples first; then properties: whatever the body, the answer is never a 500
and the ``user_security_context`` sent upstream is exactly the one built from
the Easy Auth principal and the front end's ``client-ip``; whatever the
upstream stream does, it is closed and the request's log line written.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devhost.appservice_auth import principal_headers
from shared.config import Settings, load_settings
from shared.errors import RelayError, UpstreamBroken, UpstreamFailure, UpstreamTimeout
from shared.relay import Relay
from shared.upstream import Upstream
from shared.upstream_errors import as_caller_errors
from tests.support.app_settings import REQUIRED_SETTINGS
from tests.support.asgi import call, make_request, run_response
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.strategies import BODY_SETTINGS as SETTINGS
from tests.support.strategies import CALLER, CALLER_CONTEXT, CALLER_HEADERS, FAST, any_stream, raw_bodies, split, upstream_endings

OTHER_TID = "0badf00d-0000-4000-8000-000000000009"
BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()

BASE_ENV = {**REQUIRED_SETTINGS, "WEBSITE_AUTH_ENABLED": "True"}


async def no_upstream(settings: Settings) -> Upstream:
    raise AssertionError("the upstream must not be reached")


def relay(env: dict[str, str] | None = None, **policy: Any) -> Relay:
    settings = load_settings({**BASE_ENV, **(env or {})})
    if policy:
        settings = dataclasses.replace(settings, auth_policy=dataclasses.replace(settings.auth_policy, **policy))
    return Relay(settings, no_upstream)


def user_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": "api://relay",
        "oid": OID,
        "tid": TID,
        "name": "Ada",
        "scp": "user_impersonation",
        "roles": ["Relay.User"],
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def headers_for(claims: dict[str, Any], client_ip: str = "203.0.113.7:51234") -> dict[str, str]:
    """What App Service's front end and Easy Auth hand the relay for a caller with these claims."""
    return {**{name.decode(): value.decode() for name, value in principal_headers(claims)}, "client-ip": client_ip}


async def chat(r: Relay, headers: dict[str, str], body: bytes = BODY) -> tuple[int, Any]:
    status, payload, _ = await call(r.chat_completions, "POST", "/api/v1/chat/completions", headers, body)
    return status, payload


def assert_error(status: int, payload: Any, expected_status: int, code: str) -> None:
    assert status == expected_status
    assert set(payload["error"]) >= {"message", "type", "param", "code"}
    assert payload["error"]["code"] == code


@pytest.mark.parametrize("enabled", [None, "false", "False", "0"])
async def test_easy_auth_disabled_fails_closed(enabled: str | None) -> None:
    env = dict(BASE_ENV)
    env.pop("WEBSITE_AUTH_ENABLED")
    if enabled is not None:
        env["WEBSITE_AUTH_ENABLED"] = enabled
    r = Relay(load_settings(env), no_upstream)
    for handler, method, path in (
        (r.chat_completions, "POST", "/api/v1/chat/completions"),
        (r.models, "GET", "/api/v1/models"),
        (r.me, "GET", "/api/me"),
    ):
        status, payload, headers = await call(handler, method, path, headers_for(user_claims()), BODY)
        assert_error(status, payload, 503, "easy_auth_disabled")
        assert headers["x-request-id"]


async def test_healthz_needs_no_auth_and_costs_no_log_line(caplog: pytest.LogCaptureFixture) -> None:
    r = Relay(load_settings({k: v for k, v in BASE_ENV.items() if k != "WEBSITE_AUTH_ENABLED"}), no_upstream)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            status, payload, _ = await call(r.healthz, "GET", "/api/healthz", {"x-request-id": "probe-7"})
            assert (status, payload) == (200, {"status": "ok"})
    assert caplog.records == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-principal"),
        pytest.param({"X-MS-CLIENT-PRINCIPAL": "%%%not-base64%%%"}, id="garbled-base64"),
        pytest.param({"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"[1,2,3]").decode()}, id="not-an-object"),
        pytest.param({"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b'{"auth_typ":"aad","claims":[]}').decode()}, id="no-oid"),
        pytest.param({**headers_for(user_claims()), "x-ms-client-principal-id": "99999999-9999-4999-8999-999999999999"}, id="id-mismatch"),
        pytest.param(headers_for(user_claims(oid="not-a-guid")), id="oid-not-guid"),
    ],
)
async def test_missing_garbled_or_inconsistent_principal_is_401(headers: dict[str, str]) -> None:
    status, payload = await chat(relay(), headers)
    assert_error(status, payload, 401, "unauthenticated")


async def test_wrong_identity_provider_is_403() -> None:
    headers = headers_for(user_claims())
    principal = json.loads(base64.b64decode(headers["x-ms-client-principal"]))
    principal["auth_typ"] = "google"
    headers["x-ms-client-principal"] = base64.b64encode(json.dumps(principal).encode()).decode()
    headers["x-ms-client-principal-idp"] = "google"
    status, payload = await chat(relay(), headers)
    assert_error(status, payload, 403, "forbidden")


@pytest.mark.parametrize(
    ("policy", "claims"),
    [
        pytest.param({"allowed_tenants": frozenset({OTHER_TID})}, user_claims(), id="tenant"),
        pytest.param({"required_roles": frozenset({"Relay.Admin"})}, user_claims(), id="role"),
        pytest.param({"allowed_audiences": frozenset({"api://other"})}, user_claims(), id="audience"),
        pytest.param({}, user_claims(scp=None, name=None, idtyp="app"), id="app-only-token"),
    ],
)
async def test_policy_violations_are_403(policy: dict[str, Any], claims: dict[str, Any]) -> None:
    status, payload = await chat(relay(**policy), headers_for(claims))
    assert_error(status, payload, 403, "forbidden")


async def test_policy_from_settings_admits_the_right_caller() -> None:
    env = {"RELAY_ALLOWED_TENANTS": TID, "RELAY_REQUIRED_ROLES": "Relay.User", "RELAY_ALLOWED_AUDIENCES": "api://relay"}
    headers = {**headers_for(user_claims()), "client-ip": "203.0.113.7:51234"}
    status, payload, _ = await call(relay(env).me, "GET", "/api/me", headers)
    assert status == 200
    assert payload["user_security_context"] == {
        "application_name": "contoso-chat-spa",
        "end_user_id": OID,
        "end_user_tenant_id": TID,
        "source_ip": "203.0.113.7",
    }


async def test_app_tokens_allowed_when_configured() -> None:
    status, payload, _ = await call(
        relay({"RELAY_ALLOW_APP_TOKENS": "true"}).me, "GET", "/api/me", headers_for(user_claims(scp=None, name=None, idtyp="app"))
    )
    assert status == 200 and payload["principal"]["is_app"] is True


async def test_front_door_mode_with_wrong_fdid_is_403() -> None:
    env = {"RELAY_CLIENT_IP_MODE": "front-door", "RELAY_FRONT_DOOR_ID": "a1b2c3d4-0000-4000-8000-00000000fd01"}
    headers = {**headers_for(user_claims()), "X-Azure-FDID": "a1b2c3d4-0000-4000-8000-00000000fd02", "X-Azure-SocketIP": "198.51.100.9"}
    status, payload = await chat(relay(env), headers)
    assert_error(status, payload, 403, "forbidden")


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"not json", 400, "invalid_request", None),
        (b"[]", 400, "invalid_request", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, "invalid_request", None),
        (b'{"messages": "hi"}', 400, "invalid_request", "messages"),
        (b'{"messages": [{"role": "wizard", "content": "hi"}]}', 400, "invalid_request", "messages"),
        (b'{"messages": [{"role": ["user"], "content": "hi"}]}', 400, "invalid_request", "messages"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": []}', 400, "invalid_request", "reasoning_effort"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', 400, "invalid_request", "temperature"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "n": 2}', 400, "invalid_request", "n"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "model": "gpt-5"}', 400, "model_not_allowed", "model"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "data_sources": []}', 400, "parameter_not_allowed", "data_sources"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "web_search_options": {}}', 400, "parameter_not_allowed", "web_search_options"),
    ],
)
async def test_bad_bodies_never_reach_upstream(body: bytes, status: int, code: str, param: str | None) -> None:
    got_status, payload = await chat(relay(), headers_for(user_claims()), body)
    assert_error(got_status, payload, status, code)
    assert payload["error"]["param"] == param


async def test_declared_oversize_body_is_413_before_reading() -> None:
    headers = {**headers_for(user_claims()), "content-length": str(10 * 1024 * 1024)}
    status, payload = await chat(relay(), headers)
    assert_error(status, payload, 413, "request_too_large")


async def test_an_unexpected_failure_is_a_500_in_the_openai_shape_without_a_trace() -> None:
    async def broken_upstream(settings: Settings) -> Upstream:
        raise RuntimeError("secret internal detail at /srv/relay.py line 42")

    r = Relay(load_settings(BASE_ENV), broken_upstream)
    status, payload = await chat(r, headers_for(user_claims()))
    assert_error(status, payload, 500, "internal_error")
    assert "secret internal detail" not in json.dumps(payload)


async def test_an_unexpected_failure_is_logged_as_one_json_line_without_its_message(caplog: pytest.LogCaptureFixture) -> None:
    async def broken_upstream(settings: Settings) -> Upstream:
        raise RuntimeError("secret internal detail at /srv/relay.py line 42")

    r = Relay(load_settings(BASE_ENV), broken_upstream)
    with caplog.at_level(logging.ERROR, logger="relay"):
        status, _ = await chat(r, headers_for(user_claims()))
    failures = [logging.Formatter().format(record) for record in caplog.records if record.name == "relay"]
    assert status == 500 and len(failures) == 1
    assert "\n" not in failures[0], "one line, not a multi-line traceback"
    line = json.loads(failures[0])
    assert (line["event"], line["error_type"]) == ("relay.unhandled", "RuntimeError")
    assert line["trace"].startswith("test_relay.py:") and "broken_upstream" in line["trace"]
    assert len(line["request_id"]) == 32
    assert "secret internal detail" not in failures[0]


# --- properties ------------------------------------------------------------------------------



class CapturingUpstream:
    """Records what the relay would send to Azure OpenAI, then answers 502 (nothing is streamed)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def open(self, payload: bytes, deployment: str, request_id: str, notes: object = None) -> Any:
        self.sent.append(json.loads(payload))
        raise RelayError(502, "upstream_error", "stub")

    async def aclose(self) -> None:
        pass


@FAST
@given(body=raw_bodies | st.binary(max_size=200))
def test_no_body_gets_a_500_or_changes_the_security_context(body: bytes) -> None:
    upstream = CapturingUpstream()

    async def factory(settings: Settings) -> Upstream:
        return upstream  # type: ignore[return-value]

    relay = Relay(SETTINGS, factory)
    response = asyncio.run(relay.chat_completions(make_request("POST", "/api/v1/chat/completions", CALLER_HEADERS, body)))
    assert response.status_code in {400, 413, 502}, response.body
    payload = json.loads(bytes(response.body))
    assert set(payload["error"]) >= {"message", "type", "param", "code"}
    pseudonym = CALLER.pseudonym(SETTINGS.application_name)
    for sent in upstream.sent:
        assert sent["user_security_context"] == CALLER_CONTEXT
        assert "data_sources" not in sent and sent.get("user", pseudonym) == pseudonym


class StreamingUpstream:
    """An Azure OpenAI client whose stream delivers ``pieces``, then raises ``error`` (if any)."""

    def __init__(self, pieces: list[bytes], error: BaseException | None) -> None:
        self.pieces, self.error, self.closed = pieces, error, False

    async def open(self, payload: bytes, deployment: str, request_id: str, notes: object = None) -> StreamingUpstream:
        return self

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


def ends_with_done(out: bytes) -> bool:
    """The caller's stream ends with the [DONE] event, spelled "data: [DONE]" or "data:[DONE]" (both valid SSE)."""
    last_event = out.removesuffix(b"\n\n").rpartition(b"\n\n")[2]
    return out.endswith(b"\n\n") and any(line.startswith(b"data:") and line[5:].strip() == b"[DONE]" for line in last_event.split(b"\n"))


STREAM_BODY = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


@FAST
@given(
    stream=any_stream,
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    error=upstream_endings,
)
@example(stream=b"data:[DONE]\n\n", cuts=[], error=None)
@example(stream=b"data: [DONE]\n\n\t", cuts=[], error=None)
def test_however_a_stream_ends_the_upstream_is_closed_and_its_status_logged(stream: bytes, cuts: list[int], error: BaseException | None) -> None:
    upstream = StreamingUpstream(split(stream, cuts), error)

    async def factory(settings: Settings) -> Upstream:
        return upstream  # type: ignore[return-value]

    async def run() -> tuple[bytes, list[dict[str, Any]]]:
        lines: list[dict[str, Any]] = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(json.loads(record.getMessage()))  # type: ignore[method-assign]
        request_logger = logging.getLogger("relay.request")
        request_logger.addHandler(handler)
        request_logger.setLevel(logging.INFO)
        try:
            response = await Relay(SETTINGS, factory).chat_completions(
                make_request("POST", "/api/v1/chat/completions", CALLER_HEADERS, STREAM_BODY)
            )
            _, out = await run_response(response)
        finally:
            request_logger.removeHandler(handler)
        return out, lines

    out, lines = asyncio.run(run())
    assert upstream.closed
    [line] = lines
    if ends_with_done(out) and error is None:
        assert line["status"] == 200
    else:
        assert out.count(b"event: error\n") == 1
        assert (line["status"], line["code"]) in {(502, "upstream_error"), (504, "upstream_timeout")}


class EndlessUpstream(StreamingUpstream):
    """Azure generating without end: the caller's reading is the only brake."""

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            yield b'data: {"choices":[{"delta":{"content":"more"}}]}\n\n'
            await asyncio.sleep(0)


async def test_a_caller_that_stops_reading_ends_its_stream_and_the_upstream_request(caplog: pytest.LogCaptureFixture) -> None:
    upstream = EndlessUpstream([], None)

    async def factory(settings: Settings) -> Upstream:
        return upstream  # type: ignore[return-value]

    relay = Relay(dataclasses.replace(SETTINGS, caller_write_timeout_s=0.2), factory)
    response = await relay.chat_completions(make_request("POST", "/api/v1/chat/completions", CALLER_HEADERS, STREAM_BODY))
    sent: list[Any] = []

    async def stalled_send(message: Any) -> None:
        sent.append(message)
        if len(sent) > 3:
            await asyncio.Event().wait()  # the caller's window is full and it reads nothing more

    async def stays_connected() -> Any:
        await asyncio.Event().wait()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}
    with caplog.at_level(logging.INFO, logger="relay.request"):
        await asyncio.wait_for(response(scope, stays_connected, stalled_send), 10)
    assert upstream.closed
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay.request"]
    assert (line["status"], line["code"]) == (499, "caller_stalled")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("support-ticket-42", "support-ticket-42"), ("support-ticket-42\n", None), ("x" * 129, None), ("../etc", None)],
)
async def test_the_relay_keys_each_request_by_its_own_id_and_keeps_a_sane_caller_id_beside_it(
    sent: str, kept: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    r = relay()
    with caplog.at_level(logging.INFO, logger="relay.request"):
        answers = [await call(r.me, "GET", "/api/me", {**headers_for(user_claims()), "x-request-id": sent}) for _ in range(2)]
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "relay.request"]
    assert [line["client_request_id"] for line in lines] == [kept, kept]
    assert [headers["x-request-id"] for _, _, headers in answers] == [line["request_id"] for line in lines]
    assert lines[0]["request_id"] != lines[1]["request_id"] and len(lines[0]["request_id"]) == 32


async def test_a_request_without_a_usable_client_ip_is_refused_not_served_anonymously() -> None:
    for headers in ({**headers_for(user_claims()), "client-ip": ""}, {k: v for k, v in headers_for(user_claims()).items() if k != "client-ip"}):
        status, payload = await chat(relay(), headers)
        assert_error(status, payload, 403, "source_ip_unavailable")


class SilentUpstream(StreamingUpstream):
    """Azure thinking for ever: nothing after the first event."""

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        yield b'data: {"choices":[],"prompt_filter_results":[]}\n\n'
        await asyncio.Event().wait()


async def test_a_caller_that_stops_reading_during_a_silence_is_found_by_the_keep_alive(caplog: pytest.LogCaptureFixture) -> None:
    upstream = SilentUpstream([], None)

    async def factory(settings: Settings) -> Upstream:
        return upstream  # type: ignore[return-value]

    relay = Relay(dataclasses.replace(SETTINGS, caller_write_timeout_s=0.2, stream_keepalive_s=0.1), factory)
    response = await relay.chat_completions(make_request("POST", "/api/v1/chat/completions", CALLER_HEADERS, STREAM_BODY))
    bodies: list[bytes] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if b"keep-alive" in message["body"]:
                await asyncio.Event().wait()  # the caller reads nothing more

    async def stays_connected() -> Any:
        await asyncio.Event().wait()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}
    with caplog.at_level(logging.INFO, logger="relay.request"):
        await asyncio.wait_for(response(scope, stays_connected, send), 10)
    assert upstream.closed and bodies[-1] == b": keep-alive\n\n"
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay.request"]
    assert (line["status"], line["code"]) == (499, "caller_stalled")


async def test_a_whole_answer_is_bounded_however_long_azure_keeps_it_retries_included(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.relay.NON_STREAMED_DEADLINE_S", 0.2)
    cancelled = asyncio.Event()

    class RetryingUpstream:
        """Each attempt within the read timeout, but together longer than the bound."""

        async def open(self, payload: bytes, deployment: str, request_id: str, notes: object = None) -> Any:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def aclose(self) -> None:
            pass

    async def factory(settings: Settings) -> Upstream:
        return RetryingUpstream()  # type: ignore[return-value]

    status, payload = await asyncio.wait_for(chat(Relay(load_settings(BASE_ENV), factory), headers_for(user_claims())), 5)
    assert_error(status, payload, 504, "upstream_timeout")
    assert '"stream": true' in payload["error"]["message"]
    assert cancelled.is_set()


class FailingReadUpstream:
    """A non-streamed answer that fails while being read, with ``cause``."""

    def __init__(self, cause: UpstreamFailure) -> None:
        self.cause, self.closed = cause, False

    async def open(self, payload: bytes, deployment: str, request_id: str, notes: object = None) -> FailingReadUpstream:
        return self

    async def read(self) -> bytes:
        with as_caller_errors():
            raise self.cause

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(
    ("cause", "status", "message_has"),
    [
        (UpstreamTimeout("Azure OpenAI did not answer in time."), 504, '"stream": true'),
        (UpstreamBroken("Azure OpenAI's response broke off."), 502, "Azure OpenAI's response broke off."),
    ],
)
async def test_a_whole_answer_that_timed_out_says_to_stream_and_other_failures_pass_as_they_are(
    cause: UpstreamFailure, status: int, message_has: str
) -> None:
    upstream = FailingReadUpstream(cause)

    async def factory(settings: Settings) -> Upstream:
        return upstream  # type: ignore[return-value]

    status_got, payload = await chat(Relay(load_settings(BASE_ENV), factory), headers_for(user_claims()))
    assert status_got == status and message_has in payload["error"]["message"]
    assert upstream.closed
