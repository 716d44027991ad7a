"""shared.security_context: the ``user_security_context`` Azure OpenAI receives, from configuration, identity and IP only."""

from __future__ import annotations

from shared.security_context import build_security_context

OID = "1b2c3d4e-0000-4000-8000-000000000003"
TID = "72f988bf-0000-4000-8000-000000000002"


def test_every_field_of_the_end_user_context_is_sent_when_known() -> None:
    assert build_security_context("contoso-chat-spa", OID, TID, "203.0.113.7") == {
        "application_name": "contoso-chat-spa",
        "end_user_id": OID,
        "end_user_tenant_id": TID,
        "source_ip": "203.0.113.7",
    }


def test_a_value_that_is_missing_or_empty_is_left_out_not_sent_empty() -> None:
    assert build_security_context("contoso-chat-spa", None, "", "2001:db8::1") == {"application_name": "contoso-chat-spa", "source_ip": "2001:db8::1"}
    assert build_security_context("contoso-chat-spa", None, None, None) == {"application_name": "contoso-chat-spa"}
