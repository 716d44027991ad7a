"""shared.header_checks: the GUID, loopback and header checks that the relay and the local host share."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from shared.header_checks import header_values, is_guid, is_loopback_host, same_guid

GUID = "5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b"


@pytest.mark.parametrize("value", [GUID, GUID.upper()])
def test_a_guid_in_either_case_is_a_guid(value: str) -> None:
    assert is_guid(value)


@pytest.mark.parametrize(
    "value",
    ["", GUID + "\n", " " + GUID, GUID[:-1], GUID.replace("-", ""), "{" + GUID + "}", GUID[:-1] + "g", GUID[:-1] + "\uff10"],
)
def test_anything_else_is_not_a_guid(value: str) -> None:
    assert not is_guid(value)


def test_same_guid_ignores_case_but_needs_a_guid() -> None:
    assert same_guid(GUID.upper(), GUID)
    assert not same_guid(GUID + "\n", GUID)
    assert not same_guid("not-a-guid", "not-a-guid")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", [None, "", "10.0.0.1", "localhost.example.com", "example.com", "[2001:db8::1]", "0.0.0.0"])
def test_other_hosts_are_not_loopback(host: str | None) -> None:
    assert not is_loopback_host(host)


def test_header_values_sees_every_copy_of_a_header_whatever_its_case() -> None:
    assert header_values({"Client-IP": "1.2.3.4", "client-ip": "5.6.7.8", "other": "x"}, "client-ip") == ["1.2.3.4", "5.6.7.8"]
    repeated = Headers(raw=[(b"client-ip", b"1.2.3.4"), (b"client-ip", b"5.6.7.8")])
    assert header_values(repeated, "client-ip") == ["1.2.3.4", "5.6.7.8"]
