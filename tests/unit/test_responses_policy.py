"""shared.responses_policy: the exact bytes the Foundry project receives for a Responses create, or the caller's error."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from shared.config import ResponsesSettings
from shared.errors import RelayError
from shared.responses_ids import IdSeal, Owner
from shared.responses_policy import MIN_OUTPUT_TOKENS, prepare_conversation, prepare_responses_request
from tests.support.identities import OTHER_OID
from tests.support.strategies import BODY_SETTINGS, CALLER, CALLER_CONTEXT

SEAL = IdSeal(b"s" * 32)
OWNER = Owner.of(CALLER)
OTHER = Owner(OTHER_OID, OWNER.tenant_id)
SETTINGS = dataclasses.replace(BODY_SETTINGS, responses=ResponsesSettings("https://x.services.ai.azure.com/api/projects/p", b"s" * 32))
PSEUDONYM = CALLER.pseudonym(SETTINGS.application_name)


def prepare(body: dict[str, Any], **responses: Any) -> dict[str, Any]:
    settings = dataclasses.replace(SETTINGS, responses=dataclasses.replace(SETTINGS.responses, **responses))
    request = prepare_responses_request(json.dumps(body).encode(), settings, CALLER, SEAL.for_owner(OWNER))
    sent: dict[str, Any] = json.loads(request.payload)
    return sent


def refused(body: dict[str, Any], **responses: Any) -> RelayError:
    with pytest.raises(RelayError) as caught:
        prepare(body, **responses)
    return caught.value


def test_a_plain_create_gets_the_context_a_cap_and_the_default_store() -> None:
    sent = prepare({"model": "gpt-4o", "input": "hi", "user": "ceo", "safety_identifier": "ceo@contoso"})
    assert sent["user_security_context"] == CALLER_CONTEXT
    assert sent["max_output_tokens"] == SETTINGS.max_tokens
    assert list(sent)[-1] == "max_output_tokens"
    assert sent["user"] == sent["safety_identifier"] == PSEUDONYM
    assert sent["store"] is True
    assert sent["model"] == "gpt-4o"


def test_the_model_defaults_to_the_first_deployment_and_the_cap_is_the_relays_at_most() -> None:
    sent = prepare({"input": "hi", "max_output_tokens": 10**6})
    assert (sent["model"], sent["max_output_tokens"]) == ("gpt-4o-mini", SETTINGS.max_tokens)
    assert prepare({"input": "hi", "max_output_tokens": 32})["max_output_tokens"] == 32
    assert refused({"input": "hi", "max_output_tokens": 8}).param == "max_output_tokens"


def test_store_follows_the_setting_and_the_caller_may_only_lower_it() -> None:
    assert prepare({"input": "hi", "store": False})["store"] is False
    assert prepare({"input": "hi"}, store=False)["store"] is False
    error = refused({"input": "hi", "store": True}, store=False)
    assert (error.code, error.param) == ("parameter_not_allowed", "store")


@pytest.mark.parametrize(
    "body",
    [
        {"background": True},
        {"prompt": {"id": "pmpt_1"}},
        {"agent_reference": {"name": "helper", "type": "agent_reference"}},
        {"conversation_id": "x"},
    ],
)
def test_what_the_relay_cannot_bind_to_its_caller_is_refused(body: dict[str, Any]) -> None:
    error = refused({"input": "hi", **body})
    assert (error.status, error.code, error.param) == (400, "parameter_not_allowed", next(iter(body)))


@pytest.mark.parametrize(
    "body",
    [
        {"agent_session_id": "s1"},
        {"structured_inputs": {"city": "Oslo"}},
        {"context_management": [{"type": "compaction"}]},
        {"moderation": {"mode": "off"}},
        {"prompt_cache_options": {}},
    ],
)
def test_the_projects_own_fields_the_relay_does_not_forward_are_refused_by_name(body: dict[str, Any]) -> None:
    # The Foundry v1 OpenAPI's createResponse accepts these; the relay's allow-list names none of them.
    error = refused({"input": "hi", **body})
    assert (error.status, error.code, error.param) == (400, "parameter_not_allowed", next(iter(body)))


@pytest.mark.parametrize(
    "kind", ["web_search", "web_search_preview", "file_search", "code_interpreter", "mcp", "computer_use_preview", "image_generation"]
)
def test_server_side_tools_are_refused_unless_allowed(kind: str) -> None:
    body = {"input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {}}, {"type": kind}]}
    error = refused(body)
    assert (error.code, error.param) == ("parameter_not_allowed", "tools")
    assert "tools[1]" in error.message
    assert prepare(body, allowed_tools=frozenset({kind}))["tools"] == body["tools"]


def test_a_file_id_part_is_refused() -> None:
    item = {"role": "user", "content": [{"type": "input_file", "file_id": "assistant-123"}]}
    error = refused({"input": [item]})
    assert (error.code, error.param) == ("parameter_not_allowed", "input")


def test_the_callers_own_ids_go_upstream_unsealed() -> None:
    body = {
        "previous_response_id": SEAL.seal(OWNER, "resp_1"),
        "input": [
            {"type": "item_reference", "id": SEAL.seal(OWNER, "msg_1")},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call", "id": SEAL.seal(OWNER, "fc_1"), "call_id": "call_1", "name": "f", "arguments": "{}"},
        ],
    }
    sent = prepare(body)
    assert sent["previous_response_id"] == "resp_1"
    assert [item.get("id") for item in sent["input"]] == ["msg_1", None, "fc_1"]
    conversation = prepare({"input": "hi", "conversation": {"id": SEAL.seal(OWNER, "conv_1")}})["conversation"]
    assert conversation == {"id": "conv_1"}
    assert prepare({"input": "hi", "conversation": SEAL.seal(OWNER, "conv_1")})["conversation"] == "conv_1"


@pytest.mark.parametrize(
    "body",
    [
        {"input": "hi", "previous_response_id": SEAL.seal(OTHER, "resp_1")},
        {"input": "hi", "previous_response_id": "resp_1"},
        {"input": [{"type": "item_reference", "id": SEAL.seal(OTHER, "msg_1")}]},
        {"input": [{"type": "message", "role": "assistant", "id": SEAL.seal(OTHER, "msg_1"), "content": "x"}]},
        {"input": "hi", "conversation": SEAL.seal(OTHER, "conv_1")},
        {"input": "hi", "conversation": {"id": "conv_1"}},
    ],
)
def test_an_id_that_is_not_the_callers_is_a_404_that_does_not_confirm_it_exists(body: dict[str, Any]) -> None:
    error = refused(body)
    assert (error.status, error.code) == (404, "not_found")
    assert error.message.startswith("No response, item or conversation with id")


def test_a_budget_lowers_the_cap_without_a_reparse_but_not_below_the_services_minimum() -> None:
    request = prepare_responses_request(b'{"input":"hi"}', SETTINGS, CALLER, SEAL.for_owner(OWNER))
    assert json.loads(request.with_output_cap(40).payload)["max_output_tokens"] == 40
    assert request.with_output_cap(1).output_cap == MIN_OUTPUT_TOKENS
    assert request.with_output_cap(10**6) is request


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": 3}, "input"),
        ({"input": []}, "input"),
        ({"input": ["x"]}, "input"),
        ({"input": "hi", "temperature": 3}, "temperature"),
        ({"input": "hi", "stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"input": "hi", "previous_response_id": SEAL.seal(OWNER, "r"), "conversation": SEAL.seal(OWNER, "c")}, "conversation"),
        ({"input": "hi", "model": "gpt-5"}, "model"),
        ({"input": "hi", "service_tier": "priority"}, "service_tier"),
    ],
)
def test_bad_values_are_a_400_naming_the_parameter(body: dict[str, Any], param: str) -> None:
    error = refused(body)
    assert (error.status, error.param) == (400, param)


def conversation(body: dict[str, Any], **responses: Any) -> dict[str, Any]:
    settings = dataclasses.replace(SETTINGS, responses=dataclasses.replace(SETTINGS.responses, **responses))
    sent: dict[str, Any] = json.loads(prepare_conversation(json.dumps(body).encode(), settings, SEAL.for_owner(OWNER)))
    return sent


def test_a_new_conversations_items_are_checked_as_input_items_are() -> None:
    item = {"type": "item_reference", "id": SEAL.seal(OWNER, "msg_1")}
    assert conversation({"items": [item], "metadata": {"topic": "x"}}) == {
        "items": [{"type": "item_reference", "id": "msg_1"}],
        "metadata": {"topic": "x"},
    }
    assert json.loads(prepare_conversation(b"", SETTINGS, SEAL.for_owner(OWNER))) == {}
    with pytest.raises(RelayError) as caught:
        conversation({"items": [{"type": "item_reference", "id": SEAL.seal(OTHER, "msg_1")}]})
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    for body, param in (
        ({"items": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input"),
        ({"tools": []}, "tools"),
    ):
        with pytest.raises(RelayError) as caught:
            conversation(body)
        assert (caught.value.code, caught.value.param) == ("parameter_not_allowed", param)


def test_conversations_keep_items_in_the_project_so_they_follow_the_store_setting() -> None:
    with pytest.raises(RelayError) as caught:
        conversation({"items": []}, store=False)
    assert caught.value.code == "parameter_not_allowed"
