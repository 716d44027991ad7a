"""shared.blocklist: rows as the relay reads them, and the per-request match against the in-memory copy."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.blocklist import BlockEntry, Snapshot, entry_from_row, normalize_target, row_for, row_key_for
from shared.client_ip import parse_ip

OID = "1B2C3D4E-0000-4000-8000-000000000003"
TID = "72f988bf-0000-4000-8000-000000000002"
UNLISTED_IP = "192.0.2.1"  # in no blocked range
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def entry(kind: str, target: str, expires: datetime | None = LATER, row_key: str = "r1", alert: str | None = None) -> BlockEntry:
    return BlockEntry(kind, normalize_target(kind, target), row_key, expires_at=expires, alert_id=alert)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("oid", f" {OID} ", OID.lower()),
        ("tenant", TID, TID),
        ("ip", "203.0.113.7", "203.0.113.7/32"),
        ("ip", "203.0.113.77/24", "203.0.113.0/24"),
        ("ip", "2001:DB8::1", "2001:db8::1/128"),
        ("ip", "::ffff:203.0.113.7", "203.0.113.7/32"),
        ("ip", "::ffff:127.0.0.64/126", "127.0.0.64/30"),
        ("ip", "::FFFF:0:0/96", "0.0.0.0/0"),
        ("ip", "::ffff:0:0/95", "::fffe:0:0/95"),  # wider than the mapped addresses: an IPv6 range
    ],
)
def test_targets_are_normalized(kind: str, raw: str, expected: str) -> None:
    assert normalize_target(kind, raw) == expected


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("oid", "alice@contoso.com", "oid must be a GUID"),
        ("tenant", "{" + TID + "}", "tenant must be a GUID"),
        ("ip", "203.0.113.300", "ip must be an IP address or CIDR range"),
        ("ip", "fe80::1%eth0", "ip must be an IP address or CIDR range"),
        ("user", OID, "the kind must be one of oid, tenant, ip"),
    ],
)
def test_bad_targets_are_refused_naming_what_is_wrong(kind: str, raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_target(kind, raw)


def test_a_row_written_by_a_soar_tool_with_iso_strings_is_read() -> None:
    read = entry_from_row(
        {
            "PartitionKey": "IP",
            "RowKey": "alert-42-ip",
            "Value": "198.51.100.0/24",
            "Reason": "prompt injection",
            "AddedBy": "logic-app",
            "AddedAt": "2026-11-27T11:00:00Z",
            "ExpiresAt": "2026-11-28T11:00:00+00:00",
            "AlertId": "2517538088322968242_abc",
        }
    )
    assert (read.kind, read.target, read.alert_id, read.added_by) == ("ip", "198.51.100.0/24", "2517538088322968242_abc", "logic-app")
    assert read.expires_at == datetime(2026, 11, 28, 11, tzinfo=UTC)


def test_the_admin_rows_round_trip_and_keys_hold_no_character_table_storage_refuses() -> None:
    written = BlockEntry("ip", "2001:db8::/32", row_key_for("2001:db8::/32"), "r", "me", NOW, LATER, "a-1")
    assert written.row_key == "2001:db8::_32"
    assert entry_from_row(row_for(written)) == written


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"PartitionKey": "user", "Value": OID}, "PartitionKey must be one of"),
        ({"PartitionKey": "oid"}, "Value is missing"),
        ({"PartitionKey": "oid", "Value": "not-a-guid"}, "oid must be a GUID"),
        ({"PartitionKey": "oid", "Value": OID, "ExpiresAt": "tomorrow"}, "ExpiresAt is not an ISO 8601 date"),
        ({"PartitionKey": "oid", "Value": OID, "ExpiresAt": 12}, "ExpiresAt is not a date"),
    ],
)
def test_rows_that_cannot_block_anything_are_refused(row: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        entry_from_row(row)


def test_a_row_without_expiry_blocks_until_it_is_removed() -> None:
    read = entry_from_row({"PartitionKey": "oid", "RowKey": "x", "Value": OID})
    snapshot = Snapshot([read], NOW.timestamp())
    assert snapshot.match(OID, TID, UNLISTED_IP, (NOW + timedelta(days=3650)).timestamp()) == read


def test_match_by_object_id_tenant_address_and_range() -> None:
    by_oid = entry("oid", OID, alert="alert-oid")
    by_tenant = entry("tenant", TID, row_key="t")
    by_ip = entry("ip", "203.0.113.7", row_key="i")
    by_range = entry("ip", "2001:db8:aa::/48", row_key="c")
    snapshot = Snapshot([by_oid, by_tenant, by_ip, by_range], NOW.timestamp())
    other_oid, other_tid = "99999999-0000-4000-8000-000000000009", "88888888-0000-4000-8000-000000000008"
    now = NOW.timestamp()
    assert snapshot.match(OID.lower(), other_tid, None, now) is by_oid
    assert snapshot.match(other_oid, TID.upper(), "192.0.2.1", now) is by_tenant
    assert snapshot.match(other_oid, other_tid, "203.0.113.7", now) is by_ip
    assert snapshot.match(other_oid, other_tid, "2001:db8:aa:ff::5", now) is by_range
    assert snapshot.match(other_oid, other_tid, "203.0.113.8", now) is None
    assert snapshot.match(other_oid, other_tid, "2001:db8:ab::5", now) is None
    assert snapshot.match(other_oid, other_tid, UNLISTED_IP, now) is None
    assert snapshot.size == 4


def test_an_entry_stops_blocking_when_it_expires_between_two_reads() -> None:
    snapshot = Snapshot([entry("oid", OID, expires=NOW + timedelta(seconds=10))], NOW.timestamp())
    assert snapshot.match(OID, TID, UNLISTED_IP, NOW.timestamp() + 9) is not None
    assert snapshot.match(OID, TID, UNLISTED_IP, NOW.timestamp() + 10) is None


def test_expired_rows_are_left_out_and_the_longest_lived_row_of_a_target_wins() -> None:
    short = entry("oid", OID, expires=NOW + timedelta(minutes=5), row_key="short")
    long = entry("oid", OID, expires=NOW + timedelta(days=1), row_key="long")
    gone = entry("tenant", TID, expires=NOW - timedelta(seconds=1))
    snapshot = Snapshot([long, gone, short], NOW.timestamp())
    assert snapshot.size == 1
    assert snapshot.match(OID, TID, UNLISTED_IP, NOW.timestamp() + 600) is long


def test_a_guest_is_blocked_by_its_home_tenant_and_by_the_tenant_it_signs_in_to() -> None:
    home = entry("tenant", TID, row_key="home")
    snapshot = Snapshot([home], NOW.timestamp())
    resource_tenant = "88888888-0000-4000-8000-000000000008"
    now = NOW.timestamp()
    assert snapshot.match(OID, resource_tenant, UNLISTED_IP, now, home_tenant=TID.upper()) is home
    assert snapshot.match(OID, resource_tenant, UNLISTED_IP, now, home_tenant=None) is None
    assert snapshot.match(OID, resource_tenant, UNLISTED_IP, now, home_tenant="99999999-0000-4000-8000-000000000009") is None


MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def as_the_relay_sees(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IPv4-mapped address or range is the IPv4 one (RFC 4291, 2.5.5.2): the relay sees such a caller by its IPv4 address."""
    if network.version == 6 and network.subnet_of(MAPPED):  # type: ignore[arg-type]
        return ipaddress.ip_network((int(network.network_address) - int(MAPPED.network_address), network.prefixlen - 96))
    return network


v4_networks = st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(lambda p: ipaddress.ip_network(f"{p[0]}/{p[1]}", strict=False))
v6_networks = st.tuples(st.ip_addresses(v=6), st.integers(0, 128)).map(lambda p: ipaddress.ip_network(f"{p[0]}/{p[1]}", strict=False))
# An IPv4 range written in its IPv4-mapped form, as a SOAR tool reading a dual-stack log may write it.
mapped_networks = v4_networks.map(lambda n: ipaddress.ip_network((int(MAPPED.network_address) + int(n.network_address), n.prefixlen + 96)))
# A caller's address as a front end reports it: IPv4, IPv6, or IPv4 in its mapped form.
addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
)


@given(ranges=st.lists(st.one_of(v4_networks, v6_networks, mapped_networks), max_size=6), address=addresses)
def test_an_address_is_blocked_exactly_when_a_listed_range_contains_it(
    ranges: list[ipaddress.IPv4Network | ipaddress.IPv6Network], address: str
) -> None:
    rows = [{"PartitionKey": "ip", "RowKey": str(i), "Value": str(network)} for i, network in enumerate(ranges)]
    snapshot = Snapshot([entry_from_row(row) for row in rows], NOW.timestamp())
    seen = parse_ip(address)  # the address the relay checks, as it reads it from the front end's header
    assert seen is not None
    caller = as_the_relay_sees(ipaddress.ip_network(address))
    listed = [as_the_relay_sees(network) for network in ranges]
    expected = any(caller.subnet_of(network) for network in listed if network.version == caller.version)  # type: ignore[arg-type]
    got = snapshot.match(OID, TID, seen, NOW.timestamp())
    assert (got is not None) == expected, (ranges, address)
    if got is not None:
        assert ipaddress.ip_address(seen) in ipaddress.ip_network(got.target)
