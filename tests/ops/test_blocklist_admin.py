"""ops.blocklist_admin: who a block is recorded as added by, from the Azure CLI's token; the old entry point."""

from __future__ import annotations

import base64
import getpass
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from ops import blocklist_admin
from ops.blocklist_admin import _signed_in_as
from shared.blocklist import BlockEntry, row_for, row_key_for


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


class Table:
    """A block list table holding ``rows``, as the command sees it."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def list_entities(self, *, format: str) -> list[dict[str, Any]]:
        return self.rows


def listing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rows: list[dict[str, Any]], *options: str) -> list[str]:
    monkeypatch.setattr(blocklist_admin, "open_table", lambda args, settings: (Table(rows), getpass.getuser))
    assert blocklist_admin.main(["--azurite", "list", *options], env={}) == 0
    return capsys.readouterr().out.splitlines()


def expired_block() -> dict[str, Any]:
    now = datetime.now(UTC)
    entry = BlockEntry(
        kind="oid", target="5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b", row_key=row_key_for("5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b"),
        reason="test", added_by="ada", added_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1), alert_id=None,
    )  # fmt: skip
    return row_for(entry)


def test_an_empty_list_says_so_instead_of_printing_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert listing(monkeypatch, capsys, []) == ["no blocks in force"]
    assert listing(monkeypatch, capsys, [expired_block()]) == ["no blocks in force"]
    assert listing(monkeypatch, capsys, [], "--all") == ["no rows in the block list table"]
    [expired] = listing(monkeypatch, capsys, [expired_block()], "--all")
    assert expired.startswith("oid    5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b")
