"""shared.responses_ids: an id sealed for one caller unseals for that caller only, and sealing touches ids alone."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from shared.responses_ids import IdSeal, Owner
from tests.support.strategies import FAST

SEAL = IdSeal(b"k" * 32)
ADA = Owner("a11ce000-0000-4000-8000-000000000001", "7e5a0000-0000-4000-8000-000000000001")
BOB = Owner("b0b00000-0000-4000-8000-000000000002", "7e5a0000-0000-4000-8000-000000000001")
GUEST_ADA = Owner(ADA.object_id, "0badf00d-0000-4000-8000-000000000009")


def test_an_id_sealed_for_a_caller_unseals_for_that_caller() -> None:
    sealed = SEAL.seal(ADA, "resp_123abc")
    assert sealed.startswith("resp_123abc_")
    assert SEAL.unseal(ADA, sealed) == "resp_123abc"


def test_an_id_sealed_for_one_caller_does_not_unseal_for_another_or_another_tenant() -> None:
    sealed = SEAL.seal(ADA, "resp_123abc")
    assert SEAL.unseal(BOB, sealed) is None
    assert SEAL.unseal(GUEST_ADA, sealed) is None


def test_a_service_id_a_forged_or_a_differently_keyed_id_does_not_unseal() -> None:
    sealed = SEAL.seal(ADA, "resp_123abc")
    assert SEAL.unseal(ADA, "resp_123abc") is None
    assert SEAL.unseal(ADA, "resp_999abc" + sealed[len("resp_123abc") :]) is None
    assert SEAL.unseal(ADA, sealed[:-1] + ("0" if sealed[-1] != "0" else "1")) is None
    assert IdSeal(b"x" * 32).unseal(ADA, sealed) is None
    assert SEAL.unseal(ADA, "") is None


def test_sealing_json_seals_every_id_key_and_nothing_inside_strings() -> None:
    body = {
        "id": "resp_1",
        "previous_response_id": "resp_0",
        "conversation": {"id": "conv_1"},
        "output": [{"id": "msg_1", "type": "message", "content": [{"type": "output_text", "text": '{"id": "resp_2"}'}]}],
        "arguments": '{"item_id":"x"}',
    }
    sealed = json.loads(SEAL.for_owner(ADA).seal_json(json.dumps(body, separators=(",", ":")).encode()))
    assert SEAL.unseal(ADA, sealed["id"]) == "resp_1"
    assert SEAL.unseal(ADA, sealed["previous_response_id"]) == "resp_0"
    assert SEAL.unseal(ADA, sealed["conversation"]["id"]) == "conv_1"
    assert SEAL.unseal(ADA, sealed["output"][0]["id"]) == "msg_1"
    assert sealed["output"][0]["content"][0]["text"] == '{"id": "resp_2"}'
    assert sealed["arguments"] == '{"item_id":"x"}'


def test_sealing_a_stream_event_seals_its_item_id() -> None:
    event = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_1","delta":"hi"}\n\n'
    sealed = SEAL.for_owner(ADA).seal_json(event)
    data = json.loads(sealed.split(b"data: ", 1)[1])
    assert SEAL.unseal(ADA, data["item_id"]) == "msg_1"
    assert data["delta"] == "hi"


@FAST
@given(text=st.text())
def test_whatever_a_model_writes_its_text_is_unchanged_by_sealing(text: str) -> None:
    body = {"id": "resp_1", "output": [{"id": "msg_1", "content": [{"text": text}], "arguments": text}]}
    for ensure_ascii in (True, False):
        raw = json.dumps(body, ensure_ascii=ensure_ascii).encode()
        sealed = json.loads(SEAL.for_owner(ADA).seal_json(raw))
        assert sealed["output"][0]["content"][0]["text"] == text
        assert sealed["output"][0]["arguments"] == text


def test_a_service_message_names_the_ids_the_request_named_as_the_caller_sent_them() -> None:
    service_id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    sealed = SEAL.seal(ADA, service_id)
    seal = SEAL.for_owner(ADA)
    assert seal.unseal(sealed) == service_id
    message = f"Previous response with id '{service_id}' not found."
    assert seal.seal_text(message) == f"Previous response with id '{sealed}' not found."


def test_a_service_message_never_hands_out_an_id_the_request_did_not_name() -> None:
    seal = SEAL.for_owner(ADA)
    other = "msg_0123456789abcdef0123456789abcdef"
    # Sealing it would hand the caller a seal for an id it never had; it is hidden instead.
    assert seal.seal_text(f"Item '{other}' is not in this conversation; see max_output_tokens.") == (
        "Item '<id>' is not in this conversation; see max_output_tokens."
    )
    already = SEAL.seal(ADA, "resp_0123456789abcdef0123")
    assert seal.seal_text(f"id {already}.") == f"id {already}."
