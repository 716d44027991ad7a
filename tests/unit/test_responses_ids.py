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
