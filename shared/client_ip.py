"""The caller's IP address, from headers set by trusted front ends (docs/design.md, "Client IP").

Every mode promises an address: App Service's front end always sets
``client-ip``, Front Door always sends ``X-Azure-SocketIP``, and N trusted
proxies always leave N ``X-Forwarded-For`` entries. So a missing, repeated or
garbled value means the request did not come the way the mode says, and it is
refused (403) rather than served anonymously to Defender for Cloud.

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
from shared.errors import forbidden, source_ip_unavailable
from shared.header_checks import header_values, same_guid

MAX_ADDRESS_CHARS = 64  # "[" + 45-char IPv6 + "]:65535", with room to spare

_IPV4_WITH_PORT = re.compile(r"([0-9.]+):([0-9]{1,5})")
_BRACKETED = re.compile(r"\[([^\]]+)\](?::([0-9]{1,5}))?")


def client_ip_from_headers(headers: Mapping[str, str], policy: ClientIpPolicy) -> str:
    """The caller's address as ``policy`` finds it; raises a 403 :class:`RelayError` when it cannot be established."""
    if policy.kind == "front-door":
        fdids = {value.strip(" \t").lower() for value in header_values(headers, "x-azure-fdid")}
        if len(fdids) != 1 or policy.front_door_id is None or not same_guid(fdids.pop(), policy.front_door_id):
            raise forbidden("request did not come through the configured Azure Front Door")
        return _single_ip(headers, "x-azure-socketip")
    if policy.kind == "xff":
        return _forwarded_for(headers, policy.hops)
    return _single_ip(headers, "client-ip")


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


def _single_ip(headers: Mapping[str, str], name: str) -> str:
    values = set(header_values(headers, name))
    if not values:
        raise source_ip_unavailable(f"no {name} header")
    if len(values) > 1:
        raise source_ip_unavailable(f"conflicting {name} headers")
    address = parse_ip(values.pop())
    if address is None:
        raise source_ip_unavailable(f"{name} is not an IP address")
    return address


def _forwarded_for(headers: Mapping[str, str], hops: int) -> str:
    """The ``hops``-th entry from the right of all X-Forwarded-For headers, in order.

    Read from the right, the end the trusted proxies wrote, however long the
    rest is. Empty entries keep their position: each trusted proxy appends
    exactly one entry.
    """
    values = header_values(headers, "x-forwarded-for")
    entries = ",".join(values).rsplit(",", hops) if values else []
    if len(entries) < hops:
        raise source_ip_unavailable(f"X-Forwarded-For has fewer than {hops} entries")
    address = parse_ip(entries[-hops])
    if address is None:
        raise source_ip_unavailable(f"X-Forwarded-For entry {hops} from the right is not an IP address")
    return address
