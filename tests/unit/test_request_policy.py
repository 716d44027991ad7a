"""shared.request_policy: whatever the body, the exact bytes Azure OpenAI receives, or a 400 naming the problem.

Examples first, then properties: what ``prepare_chat_request`` sends holds only
parameters Azure accepts, an allowed model, an output cap, identity fields the
relay derived, the relay's ``user_security_context``, and is valid UTF-8 JSON
with finite numbers; anything else is a 400.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from shared.errors import RelayError
from shared.request_policy import ALLOWED_PARAMETERS, MAX_JSON_OBJECTS, ChatRequest, parse_body, prepare_chat_request
from tests.support.strategies import BODY_SETTINGS as SETTINGS
from tests.support.strategies import CALLER, CALLER_CONTEXT, FAST, bodies, body_json, raw_bodies

PSEUDONYM = CALLER.pseudonym(SETTINGS.application_name)


def prepare(body: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    request = prepare_chat_request(json.dumps(body).encode(), dataclasses.replace(SETTINGS, **overrides), CALLER)
    sent: dict[str, Any] = json.loads(request.payload)
    return sent


def refused(raw: bytes, **overrides: Any) -> RelayError:
    with pytest.raises(RelayError) as caught:
        prepare_chat_request(raw, dataclasses.replace(SETTINGS, **overrides), CALLER)
    return caught.value


def chat(**params: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **params}


# --- the output cap --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "field"),
    [("v1", "max_completion_tokens"), ("2025-04-01-preview", "max_completion_tokens"), ("2024-06-01", "max_tokens")],
)
def test_a_request_without_a_cap_gets_the_relays_cap_in_the_field_its_api_version_knows(api_version: str, field: str) -> None:
    sent = prepare(chat(), api_version=api_version)
    assert sent[field] == SETTINGS.max_tokens
    assert {"max_tokens", "max_completion_tokens"} & set(sent) == {field}


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_callers_cap_is_kept_below_the_relays(field: str) -> None:
    assert prepare(chat(**{field: 10}))[field] == 10
    assert prepare(chat(**{field: 10**9}))[field] == SETTINGS.max_tokens
    assert {"max_tokens", "max_completion_tokens"} & set(prepare(chat(**{field: 10}))) == {field}


# --- identity fields -------------------------------------------------------------------------


def test_the_security_context_is_the_relays_and_user_and_safety_identifier_become_its_pseudonym() -> None:
    sent = prepare(chat(user="ceo@contoso.example", safety_identifier=CALLER_CONTEXT["end_user_id"]))
    assert sent["user_security_context"] == CALLER_CONTEXT
    assert sent["user"] == sent["safety_identifier"] == PSEUDONYM
    assert CALLER_CONTEXT["end_user_id"] not in PSEUDONYM and len(PSEUDONYM) == 32
    assert "user" not in prepare(chat()) and "safety_identifier" not in prepare(chat())


def test_the_pseudonym_is_stable_per_caller_and_application() -> None:
    other_app = dataclasses.replace(SETTINGS, application_name="another-spa")
    sent = json.loads(prepare_chat_request(json.dumps(chat(user="x")).encode(), other_app, CALLER).payload)
    assert prepare(chat(user="y"))["user"] == PSEUDONYM != sent["user"]


@pytest.mark.parametrize("name", ["user_security_context", "data_sources", "web_search_options", "moderation"])
def test_identity_data_sources_and_what_azure_does_not_take_are_refused(name: str) -> None:
    error = refused(json.dumps(chat(**{name: {"x": 1}})).encode())
    assert (error.status, error.code, error.param) == (400, "parameter_not_allowed", name)


# --- what Azure accepts is forwarded ---------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"verbosity": "low"},
        {"reasoning_effort": "none"},
        {"reasoning_effort": "xhigh"},
        {"prompt_cache_retention": "24h"},
        {"prompt_cache_key": "tenant-a"},
        {"service_tier": "auto"},
        {"service_tier": "flex"},
        {"store": False, "metadata": {"team": "helpdesk"}},
        {"functions": [{"name": "f"}], "function_call": "auto"},
        {"stream": True, "stream_options": {"include_obfuscation": False}},
        {"stop": None},
    ],
)
def test_parameters_azure_accepts_are_forwarded_as_sent(params: dict[str, Any]) -> None:
    sent = prepare(chat(**params))
    for name, value in params.items():
        if name != "stream_options":
            assert sent[name] == value


@pytest.mark.parametrize(("params", "param"), [({"verbosity": 3}, "verbosity"), ({"reasoning_effort": ["high"]}, "reasoning_effort")])
def test_open_ended_values_are_checked_for_their_type(params: dict[str, Any], param: str) -> None:
    error = refused(json.dumps(chat(**params)).encode())
    assert (error.status, error.code, error.param) == (400, "invalid_request", param)


# --- cost and retention levers ---------------------------------------------------------------


def test_store_is_refused_unless_the_instance_allows_it() -> None:
    error = refused(json.dumps(chat(store=True, metadata={"k": "v"})).encode())
    assert (error.status, error.code, error.param) == (400, "parameter_not_allowed", "store")
    assert "RELAY_ALLOW_STORE" in error.message
    assert prepare(chat(store=True), allow_store=True)["store"] is True


def test_a_service_tier_that_costs_more_is_refused_unless_allowed() -> None:
    error = refused(json.dumps(chat(service_tier="priority")).encode())
    assert (error.status, error.code, error.param) == (400, "parameter_not_allowed", "service_tier")
    assert "RELAY_ALLOWED_SERVICE_TIERS" in error.message
    assert prepare(chat(service_tier="priority"), allowed_service_tiers=frozenset({"priority"}))["service_tier"] == "priority"


def test_a_stream_always_asks_for_usage_and_says_whether_the_caller_did() -> None:
    asked = prepare_chat_request(json.dumps(chat(stream=True, stream_options={"include_usage": True})).encode(), SETTINGS, CALLER)
    not_asked = prepare_chat_request(json.dumps(chat(stream=True)).encode(), SETTINGS, CALLER)
    for request, hidden in ((asked, False), (not_asked, True)):
        assert json.loads(request.payload)["stream_options"] == {"include_usage": True}
        assert (request.stream, request.hide_usage) == (True, hidden)


# --- bodies that parse but cannot be sent ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"messages": [{"role": "user", "content": "ok"}], "metadata": {"\\udfff": "x"}}',
        b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udbffb"}]}]}',
    ],
)
def test_a_lone_surrogate_is_a_400(raw: bytes) -> None:
    error = refused(raw)
    assert (error.status, error.code) == (400, "invalid_request") and "surrogate" in error.message


@pytest.mark.parametrize("number", [b"1e999", b"-1E+400", b"2e308"])
def test_a_number_too_large_for_a_double_is_a_400(number: bytes) -> None:
    error = refused(b'{"messages": [{"role": "user", "content": "hi"}], "temperature": ' + number + b"}")
    assert (error.status, error.code) == (400, "invalid_request")


def test_a_valid_surrogate_pair_is_sent_as_the_character_it_encodes() -> None:
    request = prepare_chat_request(b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}', SETTINGS, CALLER)
    assert "\U0001f600".encode() in request.payload


# --- bounded work ----------------------------------------------------------------------------


def test_a_body_of_many_tiny_objects_is_refused_after_the_object_limit() -> None:
    raw = json.dumps(chat(tools=[{"type": "function"}] * (MAX_JSON_OBJECTS + 10))).encode()
    started = time.process_time()
    error = refused(raw)
    assert (error.status, error.code) == (400, "invalid_request") and str(MAX_JSON_OBJECTS) in error.message
    assert time.process_time() - started < 5  # generous: the point is that parsing stopped at the limit


def test_messages_and_content_parts_are_counted_and_parts_need_a_type() -> None:
    many = refused(json.dumps({"messages": [{"role": "user", "content": "x"}] * 2049}).encode())
    parts = refused(json.dumps(chat(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}] * 2049}])).encode())
    untyped = refused(json.dumps(chat(messages=[{"role": "user", "content": [{"text": "x"}]}])).encode())
    for error in (many, parts, untyped):
        assert (error.status, error.code, error.param) == (400, "invalid_request", "messages")


# --- properties ------------------------------------------------------------------------------


@FAST
@given(raw=st.binary(max_size=200) | body_json.map(lambda v: json.dumps(v).encode()))
def test_parse_body_returns_an_object_or_a_400(raw: bytes) -> None:
    try:
        body = parse_body(raw)
    except RelayError as error:
        assert (error.status, error.code) == (400, "invalid_request")
    else:
        assert isinstance(body, dict)


def _strict_json(payload: bytes) -> dict[str, Any]:
    """What Azure would parse: UTF-8 (no lone surrogates), finite numbers only."""

    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} sent upstream")

    sent: dict[str, Any] = json.loads(payload.decode("utf-8", errors="strict"), parse_constant=no_constants)
    json.dumps(sent, ensure_ascii=False).encode("utf-8")  # a lone surrogate sent as a \\udXXX escape fails here
    return sent


@FAST
@given(raw=raw_bodies | bodies.map(lambda b: json.dumps(b).encode()))
def test_what_azure_receives_holds_only_what_the_policy_allows(raw: bytes) -> None:
    try:
        request = prepare_chat_request(raw, SETTINGS, CALLER)
    except RelayError as error:
        event(f"refused: {error.code}")
        assert error.status == 400
        assert error.code in {"invalid_request", "parameter_not_allowed", "model_not_allowed"}
        assert "Traceback" not in error.message
        return
    event("sent")
    assert isinstance(request, ChatRequest)
    sent = _strict_json(request.payload)
    assert set(sent) - {"user_security_context"} <= ALLOWED_PARAMETERS and "data_sources" not in sent
    assert sent["user_security_context"] == CALLER_CONTEXT
    assert sent["model"] == request.deployment and request.deployment in SETTINGS.deployments
    caps = [sent[name] for name in ("max_tokens", "max_completion_tokens") if name in sent]
    assert caps and all(1 <= cap <= SETTINGS.max_tokens for cap in caps)
    assert sent.get("n", 1) <= SETTINGS.max_n
    assert sent.get("store", False) is False
    for name in ("user", "safety_identifier"):
        assert sent.get(name, PSEUDONYM) == PSEUDONYM
    assert isinstance(sent["messages"], list) and sent["messages"]


def test_a_budget_lowers_the_output_caps_at_the_end_of_the_payload_and_leaves_the_rest_as_it_was() -> None:
    raw = json.dumps(chat(max_tokens=90, max_completion_tokens=70, temperature=0.5)).encode()
    request = prepare_chat_request(raw, SETTINGS, CALLER)
    assert (request.output_cap, request.prompt_bytes) == (70, len(raw))
    lowered = request.with_output_cap(12)
    sent, before = json.loads(lowered.payload), json.loads(request.payload)
    assert (sent["max_tokens"], sent["max_completion_tokens"], lowered.output_cap) == (12, 12, 12)
    assert {k: v for k, v in sent.items() if not k.startswith("max_")} == {k: v for k, v in before.items() if not k.startswith("max_")}
    assert request.with_output_cap(500) is request  # a budget never raises a cap
