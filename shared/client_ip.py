"""The caller's IP address, from headers set by trusted front ends (docs/design.md, "Client IP").

``None`` means "no usable address": the caller omits ``source_ip`` and logs a
warning. Only the Front Door check raises, because a request that bypassed
the configured Front Door must not be served at all.

Behind Front Door the address is ``X-Azure-SocketIP``, the TCP peer Front Door
saw, never ``X-Azure-ClientIP``: Microsoft's Front Door header reference
(https://learn.microsoft.com/azure/frontdoor/front-door-http-headers-protocol)
says that value "can be arbitrarily overwritten by a user" (it is derived from
a client-sent ``X-Forwarded-For``), so it is never trusted here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from shared.config import ClientIpPolicy
from shared.errors import forbidden
from shared.values import header_values, same_guid

MAX_HEADER_CHARS = 8 * 1024
MAX_ADDRESS_CHARS = 64  # "[" + 45-char IPv6 + "]:65535", with room to spare

_IPV4_WITH_PORT = re.compile(r"([0-9.]+):([0-9]{1,5})")
_BRACKETED = re.compile(r"\[([^\]]+)\](?::([0-9]{1,5}))?")


def client_ip_from_headers(headers: Mapping[str, str], policy: ClientIpPolicy) -> str | None:
    if policy.kind == "front-door":
        fdids = {value.strip(" \t").lower() for value in header_values(headers, "x-azure-fdid")}
        if len(fdids) != 1 or policy.front_door_id is None or not same_guid(fdids.pop(), policy.front_door_id):
            raise forbidden("request did not come through the configured Azure Front Door")
        return _single_ip(headers, "x-azure-socketip")
    if policy.kind == "xff":
        return _forwarded_for(headers, policy.hops)
    if header_values(headers, "client-ip"):
        return _single_ip(headers, "client-ip")
    return _forwarded_for(headers, 1)


def parse_ip(value: str) -> str | None:
    """Normalize one address as a proxy writes it, or ``None``.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:5678``; IPv4-mapped IPv6 becomes IPv4. Unbracketed IPv6 has
    no port (``2001:db8::1:80`` is one address). IPv6 zone IDs
    (``fe80::1%eth0``) are rejected: they never survive a network hop, so one in
    a header is not a genuine remote address, and its free text must not reach
    Defender.
    """
    if len(value) > MAX_ADDRESS_CHARS or not value.isascii():
        return None
    host = value.strip(" \t")
    port: str | None = None
    bracketed = _BRACKETED.fullmatch(host)
    if match := bracketed or _IPV4_WITH_PORT.fullmatch(host):
        host, port = match.group(1), match.group(2)
    if "%" in host or (port is not None and int(port) > 65535):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if bracketed and address.version != 6:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _single_ip(headers: Mapping[str, str], name: str) -> str | None:
    values = set(header_values(headers, name))
    return parse_ip(values.pop()) if len(values) == 1 else None


def _forwarded_for(headers: Mapping[str, str], hops: int) -> str | None:
    """The ``hops``-th entry from the right of all X-Forwarded-For headers, in order.

    Empty entries keep their position: each trusted proxy appends exactly one entry.
    """
    values = header_values(headers, "x-forwarded-for")
    if sum(len(value) for value in values) > MAX_HEADER_CHARS:
        return None
    entries = ",".join(values).split(",") if values else []
    if hops < 1 or hops > len(entries):
        return None
    return parse_ip(entries[-hops])
