"""shared.client_ip: the caller's IP from trusted front-end headers.

Examples first, then properties: whatever headers arrive, the result is an
IP address that was in the header trusted for it (after normalization), or a
403: ``forbidden`` for a request that bypassed the configured Front Door,
``source_ip_unavailable`` when the header the mode promises is missing, repeated
or garbled. The relay never serves a caller anonymously.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Mapping

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from shared.client_ip import client_ip_from_headers, parse_ip
from shared.config import ClientIpPolicy
from shared.errors import RelayError
from tests.support.strategies import FAST, as_mapping, guid_like, header_sets, values_of

FDID = "55ce4ed1-4b06-4bf1-b40e-4638452104da"
APP_SERVICE = ClientIpPolicy()
FRONT_DOOR = ClientIpPolicy("front-door", front_door_id=FDID)


def xff(hops: int) -> ClientIpPolicy:
    return ClientIpPolicy("xff", hops=hops)


def resolve(headers: Mapping[str, str], policy: ClientIpPolicy) -> str | None:
    """The caller's address, or None when the relay refuses the request because it cannot establish one."""
    try:
        return client_ip_from_headers(headers, policy)
    except RelayError as error:
        assert (error.status, error.code, error.error_type) == (403, "source_ip_unavailable", "permission_error")
        return None


PARSE: list[tuple[str, str, str | None]] = [
    ("ipv4", "203.0.113.7", "203.0.113.7"),
    ("ipv4-port", "203.0.113.7:51234", "203.0.113.7"),
    ("ipv4-port-0", "203.0.113.7:0", "203.0.113.7"),
    ("ipv4-port-max", "203.0.113.7:65535", "203.0.113.7"),
    ("ipv4-whitespace", " \t203.0.113.7:51234 ", "203.0.113.7"),
    ("ipv6", "2001:db8::7", "2001:db8::7"),
    ("ipv6-upper-long-form", "2001:0DB8:0000:0000:0000:0000:0000:0007", "2001:db8::7"),
    ("ipv6-bracketed", "[2001:db8::7]", "2001:db8::7"),
    ("ipv6-bracketed-port", "[2001:db8::7]:51234", "2001:db8::7"),
    ("ipv6-loopback-port", "[::1]:7071", "::1"),
    ("ipv4-mapped", "::ffff:203.0.113.7", "203.0.113.7"),
    ("ipv4-mapped-hex", "::ffff:cb00:7107", "203.0.113.7"),
    ("ipv4-mapped-bracketed-port", "[::ffff:203.0.113.7]:443", "203.0.113.7"),
    ("ipv4-compatible-not-unmapped", "::203.0.113.7", "::cb00:7107"),
    ("loopback", "127.0.0.1:50000", "127.0.0.1"),
    ("empty", "", None),
    ("blank", "   ", None),
    ("garbage", "not-an-ip", None),
    ("hostname-port", "localhost:8080", None),
    ("unknown", "unknown", None),
    ("ipv4-octet-over-255", "203.0.113.256", None),
    ("ipv4-leading-zero", "203.0.113.07", None),
    ("ipv4-three-octets", "203.0.113", None),
    ("ipv4-integer", "3405803783", None),
    ("ipv4-port-too-big", "203.0.113.7:65536", None),
    ("ipv4-port-too-long", "203.0.113.7:000080", None),
    ("ipv4-port-empty", "203.0.113.7:", None),
    ("ipv4-port-not-digits", "203.0.113.7:http", None),
    ("ipv4-two-ports", "203.0.113.7:80:80", None),
    ("ipv4-bracketed", "[203.0.113.7]:80", None),
    ("ipv6-unbracketed-has-no-port", "2001:db8::7:8080", "2001:db8::7:8080"),
    ("ipv6-unbracketed-5-digit-port", "2001:db8::7:51234", None),
    ("ipv6-bracket-unclosed", "[2001:db8::7", None),
    ("ipv6-bracket-trailing", "[2001:db8::7]x", None),
    ("ipv6-bracket-port-too-big", "[2001:db8::7]:99999", None),
    ("ipv6-zone", "fe80::1%eth0", None),
    ("ipv6-zone-bracketed", "[fe80::1%25eth0]:80", None),
    ("ipv6-invalid", "2001:db8:::7", None),
    ("fullwidth-digits", "\uff12\uff10\uff13.0.113.7", None),
    ("arabic-indic-digits", "\u0662\u0660\u0663.0.113.7", None),
    ("fullwidth-colon-port", "203.0.113.7\uff1a80", None),
    ("nbsp-padding", "\u00a0203.0.113.7", None),
    ("newline-inside", "203.0.113.7\n", None),
    ("cidr", "203.0.113.0/24", None),
    ("too-long", "1" * 100, None),
    ("list-not-single", "198.51.100.1, 203.0.113.7", None),
]


@pytest.mark.parametrize(("case", "value", "expected"), PARSE, ids=[case for case, *_ in PARSE])
def test_parse_ip(case: str, value: str, expected: str | None) -> None:
    assert parse_ip(value) == expected


APP_SERVICE_CASES: list[tuple[str, dict[str, str], str | None]] = [
    ("client-ip-ipv4", {"client-ip": "203.0.113.7:51234"}, "203.0.113.7"),
    ("client-ip-ipv6", {"client-ip": "[2001:db8::7]:51234"}, "2001:db8::7"),
    ("client-ip-title-case", {"Client-IP": "203.0.113.7:51234"}, "203.0.113.7"),
    (
        "client-ip-wins-over-xff",
        {"client-ip": "203.0.113.7:51234", "X-Forwarded-For": "198.51.100.1, 192.0.2.9:1234"},
        "203.0.113.7",
    ),
    ("client-ip-same-twice", {"client-ip": "203.0.113.7:1", "CLIENT-IP": "203.0.113.7:1"}, "203.0.113.7"),
    # App Service's front end always sets client-ip: without a usable one the request is refused.
    ("client-ip-garbage", {"client-ip": "garbage", "X-Forwarded-For": "203.0.113.7:51234"}, None),
    ("client-ip-empty", {"client-ip": "", "X-Forwarded-For": "203.0.113.7"}, None),
    ("client-ip-conflicting", {"client-ip": "203.0.113.7:1", "CLIENT-IP": "198.51.100.1:2"}, None),
    ("xff-only", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7:51234"}, None),
    ("x-client-ip-ignored", {"X-Client-IP": "203.0.113.7"}, None),
    ("x-azure-clientip-ignored", {"X-Azure-ClientIP": "203.0.113.7"}, None),
    ("nothing", {}, None),
]


@pytest.mark.parametrize(("case", "headers", "expected"), APP_SERVICE_CASES, ids=[case for case, *_ in APP_SERVICE_CASES])
def test_app_service_mode(case: str, headers: dict[str, str], expected: str | None) -> None:
    assert resolve(headers, APP_SERVICE) == expected


def test_app_service_mode_with_starlette_headers() -> None:
    headers = Headers(raw=[(b"client-ip", b"[2001:db8::7]:51234"), (b"x-forwarded-for", b"198.51.100.1")])
    assert client_ip_from_headers(headers, APP_SERVICE) == "2001:db8::7"


def test_repeated_xff_headers_are_one_list_in_order() -> None:
    headers = Headers(
        raw=[
            (b"x-forwarded-for", b"192.0.2.1, 192.0.2.2"),
            (b"x-forwarded-for", b"198.51.100.1"),
            (b"x-forwarded-for", b"203.0.113.7:51234"),
        ]
    )
    assert [resolve(headers, xff(n)) for n in range(1, 6)] == [
        "203.0.113.7",
        "198.51.100.1",
        "192.0.2.2",
        "192.0.2.1",
        None,
    ]


def test_an_unusable_ip_is_refused_naming_the_header_but_not_its_content() -> None:
    with pytest.raises(RelayError) as caught:
        client_ip_from_headers({"client-ip": "<script>evil</script>"}, APP_SERVICE)
    assert caught.value.body()["error"] == {
        "message": "The caller's IP address could not be established (client-ip is not an IP address); "
        "the relay does not serve anonymous requests.",
        "type": "permission_error",
        "param": None,
        "code": "source_ip_unavailable",
    }


XFF_CASES: list[tuple[str, str, int, str | None]] = [
    ("hop-1", "198.51.100.1, 192.0.2.9, 203.0.113.7:51234", 1, "203.0.113.7"),
    ("hop-2", "198.51.100.1, 192.0.2.9, 203.0.113.7:51234", 2, "192.0.2.9"),
    ("hop-3", "198.51.100.1, 192.0.2.9, 203.0.113.7:51234", 3, "198.51.100.1"),
    ("hop-beyond-list", "198.51.100.1, 192.0.2.9, 203.0.113.7:51234", 4, None),
    ("hop-far-beyond-list", "203.0.113.7", 32, None),
    ("empty-entry-keeps-position", "198.51.100.1,, 203.0.113.7", 2, None),
    ("empty-entry-skipped-over", "198.51.100.1,, 203.0.113.7", 3, "198.51.100.1"),
    ("no-spaces", "198.51.100.1,203.0.113.7", 2, "198.51.100.1"),
    ("ipv6-entries", "[2001:db8::1]:1, 2001:db8::2", 2, "2001:db8::1"),
    ("mapped-entry", "::ffff:198.51.100.1, 203.0.113.7", 2, "198.51.100.1"),
    ("garbage-entry", "evil, 203.0.113.7", 2, None),
    ("empty-header", "", 1, None),
]


@pytest.mark.parametrize(("case", "value", "hops", "expected"), XFF_CASES, ids=[case for case, *_ in XFF_CASES])
def test_xff_mode(case: str, value: str, hops: int, expected: str | None) -> None:
    headers = {"X-Forwarded-For": value, "client-ip": "192.0.2.200:1"}  # client-ip is not used
    assert resolve(headers, xff(hops)) == expected


def test_xff_mode_without_header_is_refused() -> None:
    assert resolve({"client-ip": "203.0.113.7:1"}, xff(1)) is None


def test_an_over_long_xff_is_read_from_the_right_the_end_the_proxies_wrote() -> None:
    # A caller can pad the left of X-Forwarded-For as it likes; it cannot push the proxies' entries out.
    padded = ", ".join(["198.51.100.1"] * 5_000) + ", 192.0.2.9, 203.0.113.7:51234"
    assert len(padded) > 64 * 1024
    assert resolve({"X-Forwarded-For": padded}, xff(1)) == "203.0.113.7"
    assert resolve({"X-Forwarded-For": padded}, xff(2)) == "192.0.2.9"


FRONT_DOOR_OK: list[tuple[str, dict[str, str], str | None]] = [
    ("ipv4", {"X-Azure-FDID": FDID, "X-Azure-SocketIP": "203.0.113.7"}, "203.0.113.7"),
    ("ipv6", {"x-azure-fdid": FDID, "x-azure-socketip": "2001:db8::7"}, "2001:db8::7"),
    ("fdid-upper", {"X-Azure-FDID": FDID.upper(), "X-Azure-SocketIP": "203.0.113.7"}, "203.0.113.7"),
    (
        "client-ip-is-the-edge",
        {"X-Azure-FDID": FDID, "X-Azure-SocketIP": "203.0.113.7", "client-ip": "147.243.1.1:443"},
        "203.0.113.7",
    ),
    ("socketip-missing", {"X-Azure-FDID": FDID, "client-ip": "147.243.1.1:443"}, None),
    ("socketip-garbage", {"X-Azure-FDID": FDID, "X-Azure-SocketIP": "garbage"}, None),
    # Front Door derives X-Azure-ClientIP from what the client sent (X-Forwarded-For): never trusted.
    (
        "clientip-ignored-for-the-tcp-peer",
        {"X-Azure-FDID": FDID, "X-Azure-ClientIP": "6.6.6.6", "X-Azure-SocketIP": "203.0.113.7"},
        "203.0.113.7",
    ),
    ("clientip-alone-ignored", {"X-Azure-FDID": FDID, "X-Azure-ClientIP": "6.6.6.6"}, None),
]


@pytest.mark.parametrize(("case", "headers", "expected"), FRONT_DOOR_OK, ids=[case for case, *_ in FRONT_DOOR_OK])
def test_front_door_mode(case: str, headers: dict[str, str], expected: str | None) -> None:
    assert resolve(headers, FRONT_DOOR) == expected


FRONT_DOOR_REFUSED: list[tuple[str, dict[str, str], ClientIpPolicy]] = [
    ("fdid-missing", {"X-Azure-SocketIP": "203.0.113.7"}, FRONT_DOOR),
    ("fdid-wrong", {"X-Azure-FDID": "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1", "X-Azure-SocketIP": "203.0.113.7"}, FRONT_DOOR),
    ("fdid-empty", {"X-Azure-FDID": "", "X-Azure-SocketIP": "203.0.113.7"}, FRONT_DOOR),
    ("fdid-braces", {"X-Azure-FDID": "{" + FDID + "}", "X-Azure-SocketIP": "203.0.113.7"}, FRONT_DOOR),
    ("fdid-prefix", {"X-Azure-FDID": FDID + "0", "X-Azure-SocketIP": "203.0.113.7"}, FRONT_DOOR),
    ("fdid-newline", {"X-Azure-FDID": FDID + "\n", "X-Azure-SocketIP": "203.0.113.7"}, FRONT_DOOR),
    ("fdid-fullwidth", {"X-Azure-FDID": "\uff15\uff15ce4ed1-4b06-4bf1-b40e-4638452104da"}, FRONT_DOOR),
    ("fdid-two-values", {"X-Azure-FDID": FDID, "x-azure-fdid": "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1"}, FRONT_DOOR),
    ("no-configured-id", {"X-Azure-FDID": FDID, "X-Azure-SocketIP": "203.0.113.7"}, ClientIpPolicy("front-door")),
]


@pytest.mark.parametrize(("case", "headers", "policy"), FRONT_DOOR_REFUSED, ids=[case for case, *_ in FRONT_DOOR_REFUSED])
def test_front_door_mode_refuses_requests_that_bypassed_it(case: str, headers: dict[str, str], policy: ClientIpPolicy) -> None:
    with pytest.raises(RelayError) as caught:
        client_ip_from_headers(headers, policy)
    error = caught.value
    assert (error.status, error.code) == (403, "forbidden")
    assert error.body() == {
        "error": {
            "message": "request did not come through the configured Azure Front Door",
            "type": "permission_error",
            "param": None,
            "code": "forbidden",
        }
    }


def test_front_door_repeated_identical_fdid_is_accepted() -> None:
    headers = Headers(raw=[(b"x-azure-fdid", FDID.encode()), (b"x-azure-fdid", FDID.encode()), (b"x-azure-socketip", b"203.0.113.7")])
    assert client_ip_from_headers(headers, FRONT_DOOR) == "203.0.113.7"


# --- properties ------------------------------------------------------------------------------

texts = st.text(max_size=40)

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 70000).map(str)
addresses = st.one_of(
    ipv4,
    ipv6,
    st.builds(lambda ip, p: f"{ip}:{p}", ipv4, ports),
    st.builds(lambda ip, p: f"[{ip}]:{p}", ipv6, ports),
    ipv6.map(lambda ip: f"[{ip}]"),
    ipv4.map(lambda ip: f"::ffff:{ip}"),
    ipv6.map(lambda ip: f"{ip}%eth0"),
    st.text(alphabet=string.hexdigits + ":.[]% \t", max_size=45),
    texts,
)
xff_values = st.lists(addresses, max_size=5).map(", ".join) | texts
ip_headers = st.tuples(
    header_sets(["client-ip", "x-client-ip"], addresses, max_size=2),
    header_sets(["x-forwarded-for"], xff_values, max_size=2),
    header_sets(["x-azure-socketip"], addresses, max_size=2),
    header_sets(["x-azure-fdid"], st.sampled_from([FDID, FDID.upper(), f" {FDID}"]) | guid_like, max_size=2),
).map(lambda parts: [pair for part in parts for pair in part])
ip_policies = st.one_of(
    st.just(ClientIpPolicy()),
    st.integers(1, 4).map(lambda n: ClientIpPolicy("xff", hops=n)),
    st.just(ClientIpPolicy("front-door", front_door_id=FDID)),
)


def normalized_candidates(value: str) -> set[str]:
    """Every address ``value`` could spell, stripping a port or brackets, unmapped."""
    value = value.strip(" \t")
    found = set()
    for candidate in (value, value.rsplit(":", 1)[0], value[1:].split("]", 1)[0]):
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        found.add(str(address))
    return found


@FAST
@given(value=addresses | texts)
def test_parse_ip_returns_a_normalized_address_that_was_in_the_input(value: str) -> None:
    result = parse_ip(value)
    if result is not None:
        assert str(ipaddress.ip_address(result)) == result
        assert "%" not in result
        assert result in normalized_candidates(value)
        assert parse_ip(result) == result


@FAST
@given(ip=st.ip_addresses(), port=st.none() | st.integers(0, 65535))
def test_parse_ip_round_trips_every_address_with_and_without_port(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None
) -> None:
    expected = str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip)
    written = str(ip) if port is None else (f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}")
    assert parse_ip(written) == expected


@FAST
@given(pairs=ip_headers, fdid=st.sampled_from([FDID, FDID.upper(), f"{FDID} "]), starlette=st.booleans())
def test_front_door_with_the_right_id_is_never_taken_for_a_bypass(pairs: list[tuple[str, str]], fdid: str, starlette: bool) -> None:
    pairs = [(k, v) for k, v in pairs if k.lower() != "x-azure-fdid"] + [("X-Azure-FDID", fdid)]
    headers = as_mapping(pairs, starlette)
    result = resolve(headers, ClientIpPolicy("front-door", front_door_id=FDID))
    event("address" if result else "no address")
    if result is not None:
        assert any(result in normalized_candidates(value) for value in values_of(headers, "x-azure-socketip"))


@FAST
@given(pairs=ip_headers, policy=ip_policies, starlette=st.booleans())
def test_client_ip_comes_only_from_the_trusted_header(pairs: list[tuple[str, str]], policy: ClientIpPolicy, starlette: bool) -> None:
    headers = as_mapping(pairs, starlette)
    try:
        result = client_ip_from_headers(headers, policy)
    except RelayError as error:
        event(f"refused {error.code}")
        assert error.status == 403
        if error.code == "forbidden":
            assert policy.kind == "front-door"
            assert {v.strip(" \t").lower() for v in values_of(headers, "x-azure-fdid")} != {FDID}
        else:
            assert error.code == "source_ip_unavailable"
        return
    event(f"{policy.kind}: address")
    assert str(ipaddress.ip_address(result)) == result
    xff_entries = ",".join(values_of(headers, "x-forwarded-for")).split(",")
    if policy.kind == "front-door":
        trusted = values_of(headers, "x-azure-socketip")
    elif policy.kind == "xff":
        trusted = [xff_entries[-policy.hops]]
    else:
        trusted = values_of(headers, "client-ip")
    assert any(result in normalized_candidates(value) for value in trusted)
