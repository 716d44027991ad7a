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
import tracemalloc
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from shared.errors import RelayError
from shared.request_policy import (
    ALLOWED_PARAMETERS,
    MAX_JSON_CONTAINERS,
    ChatRequest,
    containers_outside_strings,
    parse_body,
    prepare_chat_request,
)
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


USC = {"application_name": "evil", "end_user_id": "mallory", "end_user_tenant_id": "t", "source_ip": "6.6.6.6"}
FUNCTION = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi", "user_security_context": USC}]}, "messages[0].user_security_context"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "user_security_context": USC}],
                    }
                ]
            },
            "messages[0].content[1].user_security_context",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x", "data_sources": []}}]}]},
            "messages[0].content[0].image_url.data_sources",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}", "user_security_context": USC}}
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.user_security_context",
        ),
        ({"tools": [FUNCTION, {**FUNCTION, "data_sources": [{"type": "azure_search"}]}]}, "tools[1].data_sources"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "user_security_context": USC}}]},
            "tools[0].function.user_security_context",
        ),
        ({"functions": [{"name": "f", "data_sources": []}]}, "functions[0].data_sources"),
        (
            {"tool_choice": {"type": "function", "function": {"name": "f", "user_security_context": USC}}},
            "tool_choice.function.user_security_context",
        ),
        ({"response_format": {"type": "json_object", "user_security_context": USC}}, "response_format.user_security_context"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}, "data_sources": []}}},
            "response_format.json_schema.data_sources",
        ),
        ({"audio": {"voice": "alloy", "format": "wav", "user_security_context": USC}}, "audio.user_security_context"),
        (
            {"prediction": {"type": "content", "content": [{"type": "text", "text": "x", "data_sources": []}]}},
            "prediction.content[0].data_sources",
        ),
        ({"stream": True, "stream_options": {"include_usage": True, "user_security_context": USC}}, "stream_options.user_security_context"),
        ({"metadata": {"user_security_context": "mallory"}}, "metadata.user_security_context"),
        (
            {"messages": [{"role": "user", "content": "hi", "extra": {"deeper": [{"user_security_context": USC}]}}]},
            "messages[0].extra.deeper[0].user_security_context",
        ),
        # Other spellings a lenient parser might take for the same key.
        ({"messages": [{"role": "user", "content": "hi", "User_Security_Context": USC}]}, "messages[0].User_Security_Context"),
        ({"messages": [{"role": "user", "content": "hi", "userSecurityContext": USC}]}, "messages[0].userSecurityContext"),
        ({"audio": {"voice": "alloy", "DATA-SOURCES": []}}, "audio.DATA-SOURCES"),
        ({"audio": {"voice": "alloy", "\uff55ser_security_context": USC}}, "audio.\uff55ser_security_context"),
    ],
)
def test_identity_and_data_sources_are_refused_as_keys_of_the_requests_own_objects(params: dict[str, Any], param: str) -> None:
    error = refused(json.dumps(chat(**params)).encode())
    assert (error.status, error.code, error.param) == (400, "parameter_not_allowed", param)
    assert param in error.message


def test_a_json_schema_may_name_a_property_user_security_context_or_data_sources_and_is_sent_untouched() -> None:
    schema = {
        "type": "object",
        "properties": {"user_security_context": {"type": "object", "properties": {"data_sources": {"type": "array"}}}},
        "required": ["user_security_context"],
    }
    params = {
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
        "functions": [{"name": "g", "parameters": schema}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": schema}},
    }
    sent = prepare(chat(**params))
    for name, value in params.items():
        assert sent[name] == value
    assert sent["user_security_context"] == CALLER_CONTEXT


def test_a_key_deeper_than_the_path_limit_is_named_by_its_start() -> None:
    deep: Any = {"user_security_context": USC}
    for _ in range(200):
        deep = {"nested": deep}
    error = refused(json.dumps(chat(audio=deep)).encode())
    assert error.code == "parameter_not_allowed" and error.param is not None
    assert error.param.startswith("audio.nested.nested") and len(error.param) <= 256


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


MIB = 1024 * 1024


def _tiny_containers(item: bytes) -> bytes:
    """About 4 MiB of ``item`` repeated in one list, inside a chat request."""
    count = (4 * MIB - 100) // (len(item) + 1)
    return b'{"messages": [{"role": "user", "content": "hi"}], "tools": [' + b",".join([item] * count) + b"]}"


@pytest.mark.parametrize("item", [b"{}", b"[]", b"[{}]", b'{"a":[]}'], ids=["objects", "arrays", "arrays-of-objects", "objects-of-arrays"])
def test_a_body_of_many_tiny_objects_or_arrays_is_refused_at_the_container_limit_before_it_is_built(item: bytes) -> None:
    raw = _tiny_containers(item)
    assert len(raw) <= 4 * MIB
    tracemalloc.start()
    started = time.process_time()
    try:
        error = refused(raw)
        cpu = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (error.status, error.code) == (400, "invalid_request")
    assert f"more than {MAX_JSON_CONTAINERS} JSON objects and arrays" in error.message
    # Parsing 1.4 million empty lists takes over 100 MB; refusing the body costs a few copies of its text.
    assert peak < 6 * len(raw), f"{peak / MIB:.0f} MiB at peak"
    assert cpu < 2  # generous (tracemalloc slows every allocation); the memory bound is the point


def test_a_large_body_whose_brackets_are_text_is_accepted_and_sent_whole() -> None:
    code = "def f(x): return [x[i] for i in {1: [2], 3: [4]}]\n" * 25
    conversation = [{"role": "user" if i % 2 == 0 else "assistant", "content": code} for i in range(2000)]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBORw0KGgo" * 100_000}}
    conversation[-2]["content"] = [{"type": "text", "text": "and this?"}, image]
    enum = [f"[{i}]" for i in range(60_000)]  # more strings than the bound, each holding a bracket
    tool = {"type": "function", "function": {"name": "pick", "parameters": {"type": "object", "properties": {"k": {"enum": enum}}}}}
    for body in ({"messages": conversation}, chat(tools=[tool])):
        raw = json.dumps(body).encode()
        assert raw.count(b"[") + raw.count(b"{") > MAX_JSON_CONTAINERS and len(raw) <= 4 * MIB
        sent = json.loads(prepare_chat_request(raw, SETTINGS, CALLER).payload)
        assert sent["messages"] == body["messages"] and sent.get("tools") == body.get("tools")


def test_a_body_nested_past_the_parsers_depth_is_refused_as_such_and_a_deep_schema_is_sent() -> None:
    def nested(depth: int) -> bytes:
        schema = b'{"a":' * depth + b"1" + b"}" * depth
        return b'{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":' + schema + b"}}]}"

    error = refused(nested(40_000))
    assert (error.status, error.code) == (400, "invalid_request") and "nested too deeply" in error.message
    sent = json.loads(prepare_chat_request(nested(500), SETTINGS, CALLER).payload)
    assert json.dumps(sent["tools"][0]["function"]["parameters"]).count("{") == 500


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


def _containers(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_containers(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(_containers(item) for item in value)
    return 0


@FAST
@given(value=body_json, ascii_only=st.booleans(), stop_after=st.integers(0, 20), chunk=st.integers(1, 40))
def test_the_containers_outside_strings_are_counted_exactly_up_to_the_bound(
    value: Any, ascii_only: bool, stop_after: int, chunk: int
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert containers_outside_strings(text, 10**6, chunk) == _containers(value)
    assert (containers_outside_strings(text, stop_after, chunk) > stop_after) == (_containers(value) > stop_after)


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
