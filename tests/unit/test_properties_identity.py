"""Property tests: no header content makes identity or client IP misbehave.

Whatever arrives, ``principal_from_headers`` returns a Principal or raises a
401/403 RelayError, and ``client_ip_from_headers`` returns ``None``, an IP, or
(front-door mode only) a 403. Neither ever invents an identity or an address:
what comes out was in a header trusted for it, after normalization.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import string
import uuid
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from shared.client_ip import client_ip_from_headers, parse_ip
from shared.config import AuthPolicy, ClientIpPolicy
from shared.easyauth import OID_CLAIMS, TID_CLAIMS, principal_from_headers
from shared.errors import RelayError
from shared.values import is_guid

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- shared strategies -----------------------------------------------------------------------

guids = st.uuids().map(str)
lookalike_guids = st.builds(
    lambda g, i, c: g[:i] + c + g[i + 1 :],
    guids,
    st.integers(0, 35),
    st.sampled_from(["\uff11", "\u0661", "\u00b9", "\u212a", "G", " ", "\n", "{"]),
)
guid_like = st.one_of(guids, guids.map(str.upper), lookalike_guids, guids.map(lambda g: g + "\n"))
texts = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


def header_sets(names: list[str], values: st.SearchStrategy[str], max_size: int = 5) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Header (name, value) pairs, names in random case, possibly repeated."""
    name = st.sampled_from(names).flatmap(
        lambda n: st.lists(st.booleans(), min_size=len(n), max_size=len(n)).map(
            lambda upper: "".join(c.upper() if u else c for c, u in zip(n, upper, strict=True))
        )
    )
    return st.lists(st.tuples(name, values), max_size=max_size)


def as_mapping(pairs: list[tuple[str, str]], starlette: bool) -> dict[str, str] | Headers:
    if starlette:
        try:
            return Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs])
        except UnicodeEncodeError:
            pass
    return dict(pairs)


def values_of(headers: dict[str, str] | Headers, name: str) -> list[str]:
    return [v for k, v in headers.items() if k.lower() == name]


# --- X-MS-CLIENT-PRINCIPAL -------------------------------------------------------------------

CLAIM_TYPES = [
    *OID_CLAIMS,
    *TID_CLAIMS,
    "roles",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    "scp",
    "http://schemas.microsoft.com/identity/claims/scope",
    "idtyp",
    "name",
    "preferred_username",
    "aud",
]
claims = st.lists(
    st.fixed_dictionaries(
        {"typ": st.sampled_from(CLAIM_TYPES) | texts, "val": guid_like | st.sampled_from(["app", "Relay.User", ""]) | texts}
    )
    | json_values,
    max_size=8,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "auth_typ": st.sampled_from(["aad", "AAD", "google", ""]) | json_values,
        "claims": claims | json_values,
        "name_typ": st.sampled_from(["name", "roles"]) | json_values,
        "role_typ": st.sampled_from(["roles", "idtyp"]) | json_values,
    },
)


def b64(data: bytes, urlsafe: bool, padded: bool) -> str:
    text = (base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)).decode()
    return text if padded else text.rstrip("=")


principal_values = st.one_of(
    texts,
    st.builds(b64, st.binary(max_size=200), st.booleans(), st.booleans()),
    st.builds(lambda d, u, p: b64(json.dumps(d).encode(), u, p), json_values, st.booleans(), st.booleans()),
    st.builds(lambda d, u, p: b64(json.dumps(d).encode(), u, p), documents, st.booleans(), st.booleans()),
)
policies = st.just(AuthPolicy()) | st.builds(
    AuthPolicy,
    allowed_tenants=st.none() | st.frozensets(guids | guids.map(str.upper), max_size=2),
    required_roles=st.frozensets(st.sampled_from(["Relay.User", "Relay.Admin"]), max_size=2),
    allowed_audiences=st.none() | st.frozensets(guids | texts, max_size=2),
    allow_app_tokens=st.booleans(),
)


@st.composite
def near_valid_principal_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    """An App Service-shaped principal for a random user, with random extra claims and headers."""
    oid, tid = draw(guids), draw(guids)
    base = [
        {"typ": draw(st.sampled_from(sorted(OID_CLAIMS))), "val": draw(st.sampled_from([oid, oid.upper()]))},
        {"typ": draw(st.sampled_from(sorted(TID_CLAIMS))), "val": tid},
        {"typ": "aud", "val": draw(st.sampled_from(["api://relay", tid]))},
        *draw(st.sampled_from([[], [{"typ": "scp", "val": "user_impersonation"}], [{"typ": "name", "val": "Ada"}]])),
    ]
    extra = draw(
        st.lists(st.fixed_dictionaries({"typ": st.sampled_from(CLAIM_TYPES), "val": guid_like | st.just("Relay.User")}), max_size=4)
    )
    document = {
        "auth_typ": draw(st.sampled_from(["aad", "AAD", "google"])),
        "claims": draw(st.permutations(base + extra)),
        "name_typ": "name",
        "role_typ": "roles",
    }
    pairs = [("X-MS-CLIENT-PRINCIPAL", b64(json.dumps(document).encode(), draw(st.booleans()), draw(st.booleans())))]
    principal_id = draw(st.none() | st.sampled_from([oid, oid.upper()]) | guid_like)
    if principal_id is not None:
        pairs.append(("X-MS-CLIENT-PRINCIPAL-ID", principal_id))
    idp = draw(st.none() | st.sampled_from(["aad", "AAD", "google"]))
    if idp is not None:
        pairs.append(("x-ms-client-principal-idp", idp))
    return pairs


principal_headers = st.one_of(
    header_sets(["x-ms-client-principal"], principal_values),
    st.tuples(
        header_sets(["x-ms-client-principal"], principal_values),
        header_sets(["x-ms-client-principal-id"], guid_like | texts),
        header_sets(["x-ms-client-principal-idp"], st.sampled_from(["aad", "AAD", "google"]) | texts),
    ).map(lambda parts: parts[0] + parts[1] + parts[2]),
    near_valid_principal_headers(),
)


def claims_of(headers: dict[str, str] | Headers) -> list[tuple[str, str]]:
    """The claims of the one principal header, decoded independently of the code under test."""
    (raw,) = set(values_of(headers, "x-ms-client-principal"))
    raw = raw.strip(" \t").rstrip("=").replace("-", "+").replace("_", "/")
    document = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    return [(c["typ"], c["val"]) for c in document["claims"]]


@FAST
@given(pairs=principal_headers, policy=policies, starlette=st.booleans())
def test_principal_is_decoded_or_refused_never_invented(pairs: list[tuple[str, str]], policy: AuthPolicy, starlette: bool) -> None:
    check_principal(as_mapping(pairs, starlette), policy)


@FAST
@given(pairs=near_valid_principal_headers(), policy=policies, starlette=st.booleans())
def test_near_valid_principal_is_decoded_or_refused_never_invented(
    pairs: list[tuple[str, str]], policy: AuthPolicy, starlette: bool
) -> None:
    check_principal(as_mapping(pairs, starlette), policy)


def check_principal(headers: dict[str, str] | Headers, policy: AuthPolicy) -> None:
    try:
        principal = principal_from_headers(headers, policy)
    except RelayError as error:
        event(f"refused {error.status}")
        assert (error.status, error.code) in {(401, "unauthenticated"), (403, "forbidden")}
        return
    event("accepted")
    present = claims_of(headers)
    assert is_guid(principal.object_id) and principal.object_id == principal.object_id.lower()
    assert is_guid(principal.tenant_id) and principal.tenant_id == principal.tenant_id.lower()
    assert principal.object_id in {val.lower() for typ, val in present if typ in OID_CLAIMS}
    assert principal.tenant_id in {val.lower() for typ, val in present if typ in TID_CLAIMS}
    assert {val.lower() for typ, val in present if typ in OID_CLAIMS} == {principal.object_id}
    assert principal.identity_provider == "aad"
    assert principal.claims == tuple(present)
    for value in values_of(headers, "x-ms-client-principal-id"):
        assert value.strip(" \t").lower() == principal.object_id
    if policy.allowed_tenants is not None:
        assert principal.tenant_id in {t.lower() for t in policy.allowed_tenants}
    if policy.allowed_audiences is not None:
        assert principal.audience in policy.allowed_audiences
    if policy.required_roles:
        assert principal.roles & policy.required_roles
    if not policy.allow_app_tokens:
        assert not principal.is_app


@FAST
@given(oid=guid_like, tid=guid_like, typ_oid=st.sampled_from(sorted(OID_CLAIMS)), typ_tid=st.sampled_from(sorted(TID_CLAIMS)))
def test_a_well_formed_principal_is_accepted_exactly_when_its_ids_are_ascii_guids(oid: str, tid: str, typ_oid: str, typ_tid: str) -> None:
    document: dict[str, Any] = {
        "auth_typ": "aad",
        "claims": [{"typ": typ_oid, "val": oid}, {"typ": typ_tid, "val": tid}, {"typ": "scp", "val": "x"}],
    }
    headers = {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode()}
    try:
        principal = principal_from_headers(headers, AuthPolicy())
    except RelayError as error:
        assert (error.status, error.code) == (401, "unauthenticated")
        assert not (is_guid(oid) and is_guid(tid))
        return
    assert (principal.object_id, principal.tenant_id) == (oid.lower(), tid.lower())
    uuid.UUID(principal.object_id)


# --- client IP -------------------------------------------------------------------------------

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
FDID = "55ce4ed1-4b06-4bf1-b40e-4638452104da"
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
def test_front_door_with_the_right_id_never_refuses(pairs: list[tuple[str, str]], fdid: str, starlette: bool) -> None:
    pairs = [(k, v) for k, v in pairs if k.lower() != "x-azure-fdid"] + [("X-Azure-FDID", fdid)]
    headers = as_mapping(pairs, starlette)
    result = client_ip_from_headers(headers, ClientIpPolicy("front-door", front_door_id=FDID))
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
        event("refused 403")
        assert policy.kind == "front-door"
        assert (error.status, error.code) == (403, "forbidden")
        assert {v.strip(" \t").lower() for v in values_of(headers, "x-azure-fdid")} != {FDID}
        return
    event(f"{policy.kind}: {'no address' if result is None else 'address'}")
    if result is None:
        return
    assert str(ipaddress.ip_address(result)) == result
    xff_entries = ",".join(values_of(headers, "x-forwarded-for")).split(",")
    if policy.kind == "front-door":
        trusted = values_of(headers, "x-azure-socketip")
    elif policy.kind == "xff":
        trusted = [xff_entries[-policy.hops]]
    elif values_of(headers, "client-ip"):
        trusted = values_of(headers, "client-ip")
    else:
        trusted = [xff_entries[-1]]
    assert any(result in normalized_candidates(value) for value in trusted)
