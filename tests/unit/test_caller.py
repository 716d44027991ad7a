"""shared.caller: who is calling, as Easy Auth and the front end vouched for it; no Easy Auth, no caller."""

from __future__ import annotations

import pytest

from devhost.appservice_auth import principal_headers
from shared.caller import identify_caller
from shared.config import Settings, load_settings
from shared.errors import RelayError

OID = "1b2c3d4e-0000-4000-8000-000000000003"
OTHER_OID = "1b2c3d4e-0000-4000-8000-000000000004"
TID = "72f988bf-0000-4000-8000-000000000002"
ENV = {
    "AZURE_OPENAI_ENDPOINT": "https://contoso-aoai.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini",
    "APPLICATION_NAME": "contoso-chat-spa",
    "WEBSITE_AUTH_ENABLED": "True",
}


def headers(oid: str = OID, client_ip: str = "203.0.113.7:51234") -> dict[str, str]:
    claims = {"aud": "api://relay", "oid": oid, "tid": TID, "name": "Ada", "scp": "user_impersonation"}
    return {**{name.decode(): value.decode() for name, value in principal_headers(claims)}, "client-ip": client_ip}


@pytest.fixture
def settings() -> Settings:
    return load_settings(ENV)


def test_the_caller_is_the_easy_auth_principal_at_the_front_ends_client_ip(settings: Settings) -> None:
    caller = identify_caller(headers(), settings)
    assert (caller.principal.object_id, caller.principal.tenant_id, caller.source_ip) == (OID, TID, "203.0.113.7")
    assert caller.security_context("contoso-chat-spa") == {
        "application_name": "contoso-chat-spa",
        "end_user_id": OID,
        "end_user_tenant_id": TID,
        "source_ip": "203.0.113.7",
    }


def test_without_easy_auth_no_caller_is_identified_however_good_the_headers() -> None:
    settings = load_settings({k: v for k, v in ENV.items() if k != "WEBSITE_AUTH_ENABLED"})
    with pytest.raises(RelayError) as caught:
        identify_caller(headers(), settings)
    assert (caught.value.status, caught.value.code) == (503, "easy_auth_disabled")


def test_the_pseudonym_is_stable_per_caller_and_application_and_hides_the_object_id(settings: Settings) -> None:
    caller = identify_caller(headers(), settings)
    pseudonym = caller.pseudonym("contoso-chat-spa")
    assert pseudonym == identify_caller(headers(client_ip="198.51.100.9"), settings).pseudonym("contoso-chat-spa")
    assert len(pseudonym) == 32 and OID not in pseudonym and OID.replace("-", "") not in pseudonym
    assert pseudonym != caller.pseudonym("fabrikam-spa")
    assert pseudonym != identify_caller(headers(oid=OTHER_OID), settings).pseudonym("contoso-chat-spa")
