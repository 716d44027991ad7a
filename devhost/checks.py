"""The dev host's own checks of GUIDs and loopback hosts.

Written apart from the relay's (shared/header_checks.py) on purpose: a stand-in that validated with the
code it stands in front of would agree with it by construction, and a bug in one would hide in both.
"""

from __future__ import annotations

import ipaddress
import re

# The registry format Entra uses for object, tenant and client IDs: 8-4-4-4-12 hex digits.
_GUID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.IGNORECASE | re.ASCII)


def is_guid(value: str) -> bool:
    """``value`` is a whole GUID in hex digits (no braces, no surrounding space or newline)."""
    return _GUID.fullmatch(value) is not None


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, or an IPv4 or IPv6 loopback address (an IPv6 one with or without its brackets)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
