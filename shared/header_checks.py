"""Checks on the strings headers and settings carry (GUIDs, loopback hosts), and every value of a repeated header.

Neutral on purpose: nothing here knows about Easy Auth, client IPs or settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_guid(value: str) -> bool:
    """A GUID in ASCII hex only; ``fullmatch``, so a trailing newline does not pass."""
    return _GUID.fullmatch(value) is not None


def same_guid(value: str, guid: str) -> bool:
    """``value`` is a GUID equal to ``guid``, ignoring case."""
    return is_guid(value) and value.lower() == guid.lower()


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``, bracketed or not)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name`` (lower-case), whatever the mapping's key case.

    ``items()`` yields repeated headers one by one for Starlette ``Headers`` and
    different-case keys for a plain dict, so neither can hide a second value.
    """
    return [value for key, value in headers.items() if key.lower() == name]
