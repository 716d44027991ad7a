"""ops.blocklist_admin: who a block is recorded as added by, from the Azure CLI's token; the old entry point."""

from __future__ import annotations

import base64
import getpass
import json
from types import SimpleNamespace

from ops.blocklist_admin import _signed_in_as


class Credential:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str) -> SimpleNamespace:
        return SimpleNamespace(token=self.token)


def jwt(claims: dict[str, str]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJSUzI1NiJ9.{payload}.signature"


def test_the_analyst_is_named_by_the_upn_in_the_cli_token() -> None:
    assert _signed_in_as(Credential(jwt({"upn": "ada@contoso.com", "oid": "x"}))) == "ada@contoso.com"
    assert _signed_in_as(Credential(jwt({"oid": "1b2c3d4e-0000-4000-8000-000000000003"}))) == "1b2c3d4e-0000-4000-8000-000000000003"


def test_a_token_that_is_not_a_jwt_names_the_local_user_instead_of_failing() -> None:
    for token in ("opaque-token", "a.!!!.c", jwt({})):
        assert _signed_in_as(Credential(token)) == getpass.getuser()
