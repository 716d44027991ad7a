"""devhost.checks: the dev host's own GUID and loopback checks, which the stand-ins use instead of the relay's."""

from __future__ import annotations

import pytest

from devhost.checks import is_guid, is_loopback_host


@pytest.mark.parametrize("value", ["5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b", "5F1B6C2E-3A4D-4E8F-9B0A-1C2D3E4F5A6B"])
def test_a_guid_in_either_case_is_a_guid(value: str) -> None:
    assert is_guid(value)


@pytest.mark.parametrize(
    "value",
    [
        "5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b\n",
        "{5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b}",
        "5f1b6c2e3a4d4e8f9b0a1c2d3e4f5a6b",
        "5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6",
        "5f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6g",
        "\u0665f1b6c2e-3a4d-4e8f-9b0a-1c2d3e4f5a6b",  # an Arabic-Indic five
        "",
    ],
)
def test_anything_else_is_not(value: str) -> None:
    assert not is_guid(value)


LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost"]
NOT_LOOPBACK = ["10.0.0.1", "::2", "localhost.contoso.com", "", None, "[127.0.0.1"]


@pytest.mark.parametrize(("host", "loopback"), [*((host, True) for host in LOOPBACK), *((host, False) for host in NOT_LOOPBACK)])
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
