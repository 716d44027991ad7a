"""The block list's rows and the in-memory copy every request is checked against.

A row blocks an end user (Entra object ID), a tenant, or an IP address or CIDR range until its
expiry; the schema is in docs/blocklist.md, so a SOAR tool can write rows too. Pure: rows in,
:class:`Snapshot` out; :meth:`Snapshot.match` is the per-request check, dictionary look-ups only
(one per prefix length in use for IP ranges). Reading the table is :mod:`shared.blocklist_cache`.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from shared.header_checks import is_guid

BlockKind = Literal["oid", "tenant", "ip"]
KINDS: tuple[BlockKind, ...] = ("oid", "tenant", "ip")
# Characters Table storage refuses in a key (https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).
_KEY_FORBIDDEN = str.maketrans({"/": "_", "\\": "_", "#": "_", "?": "_"})
MAX_TEXT = 1024
# Read rows without OData type annotations: every property arrives as the JSON the service stored, so a value
# whose declared type the Tables SDK cannot convert (a bad Edm.Guid, an Edm.DateTime with an offset) reaches
# entry_from_row, which skips only a row that cannot block anything, instead of failing the whole read
# (https://learn.microsoft.com/rest/api/storageservices/payload-format-for-table-service-operations).
UNTYPED_ROWS = "application/json;odata=nometadata"
# IPv4-mapped IPv6 addresses, ::ffff:0:0/96 (RFC 4291, section 2.5.5.2).
_MAPPED_PREFIX = 96


@dataclass(frozen=True)
class BlockEntry:
    kind: BlockKind
    target: str  # a lower-case GUID, or an IP network in CIDR form ("203.0.113.7/32")
    row_key: str
    reason: str = ""
    added_by: str = ""
    added_at: datetime | None = None
    expires_at: datetime | None = None  # None: until the row is removed
    alert_id: str | None = None

    @property
    def expires_ts(self) -> float:
        return math.inf if self.expires_at is None else self.expires_at.timestamp()


def normalize_target(kind: str, value: str) -> str:
    """The canonical form of a block target; ValueError names what is wrong."""
    value = value.strip()
    if kind in ("oid", "tenant"):
        if not is_guid(value):
            raise ValueError(f"{kind} must be a GUID, got {value!r}")
        return value.lower()
    if kind == "ip":
        try:
            if "%" in value:  # a zone ID: never part of a client address the relay sees
                raise ValueError(value)
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"ip must be an IP address or CIDR range, got {value!r}") from None
        return _unmapped(network).with_prefixlen
    raise ValueError(f"the kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _unmapped(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IPv4-mapped address or range as the IPv4 one: the relay sees a mapped client as its IPv4 address (docs/design.md, "Client IP")."""
    mapped = getattr(network.network_address, "ipv4_mapped", None)
    if mapped is None or network.prefixlen < _MAPPED_PREFIX:
        return network
    return ipaddress.ip_network(f"{mapped}/{network.prefixlen - _MAPPED_PREFIX}")


def row_key_for(target: str) -> str:
    """The row key the admin command gives a target, so blocking it again replaces its row."""
    return target.translate(_KEY_FORBIDDEN)


def entry_from_row(row: Mapping[str, Any]) -> BlockEntry:
    """One table row as an entry; ValueError when it cannot block anything."""
    kind = str(row.get("PartitionKey", "")).strip().lower()
    if kind not in KINDS:
        raise ValueError(f"PartitionKey must be one of {', '.join(KINDS)}")
    value = row.get("Value")
    if not isinstance(value, str):
        raise ValueError("Value is missing")
    return BlockEntry(
        kind=kind,  # type: ignore[arg-type]
        target=normalize_target(kind, value),
        row_key=str(row.get("RowKey", "")),
        reason=_text(row.get("Reason")),
        added_by=_text(row.get("AddedBy")),
        added_at=_when(row.get("AddedAt"), "AddedAt"),
        expires_at=_when(row.get("ExpiresAt"), "ExpiresAt"),
        alert_id=_text(row.get("AlertId")) or None,
    )


def row_for(entry: BlockEntry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": entry.kind,
        "RowKey": entry.row_key,
        "Value": entry.target,
        "Reason": entry.reason,
        "AddedBy": entry.added_by,
        "AddedAt": entry.added_at,
        "ExpiresAt": entry.expires_at,
        "AlertId": entry.alert_id or "",  # always there: an empty AlertId says the block answers no alert
    }
    return {name: value for name, value in row.items() if value is not None}


def _text(value: Any) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _when(value: Any, name: str) -> datetime | None:
    """A row's date, or None when it has none: the SDK gives ``Edm.DateTime`` as a datetime; a string is read as ISO 8601."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} is not an ISO 8601 date") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{name} is not a date")
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Snapshot:
    """The rows in force when the table was read, indexed for :meth:`match`."""

    def __init__(self, entries: Iterable[BlockEntry], now: float) -> None:
        self._ids: dict[tuple[str, str], BlockEntry] = {}
        self._networks: dict[tuple[int, int], dict[int, BlockEntry]] = {}
        for entry in entries:
            if entry.expires_ts <= now:
                continue
            if entry.kind == "ip":
                network = ipaddress.ip_network(entry.target)
                index = self._networks.setdefault((network.version, network.prefixlen), {})
                key = int(network.network_address) >> (network.max_prefixlen - network.prefixlen)
                index[key] = _longer_lived(index.get(key), entry)
            else:
                self._ids[(entry.kind, entry.target)] = _longer_lived(self._ids.get((entry.kind, entry.target)), entry)
        self.size = len(self._ids) + sum(len(index) for index in self._networks.values())

    def match(self, oid: str, tenant: str, ip: str, now: float, home_tenant: str | None = None) -> BlockEntry | None:
        """The entry that blocks this caller now, if any; a B2B guest is blocked by its home tenant's row as well."""
        keys = [("oid", oid.lower()), ("tenant", tenant.lower())]
        if home_tenant:
            keys.append(("tenant", home_tenant.lower()))
        for key in keys:
            entry = self._ids.get(key)
            if entry is not None and entry.expires_ts > now:
                return entry
        if not self._networks:
            return None
        address = ipaddress.ip_address(ip)
        for (version, prefixlen), index in self._networks.items():
            if version == address.version:
                entry = index.get(int(address) >> (address.max_prefixlen - prefixlen))
                if entry is not None and entry.expires_ts > now:
                    return entry
        return None


def _longer_lived(current: BlockEntry | None, new: BlockEntry) -> BlockEntry:
    return new if current is None or new.expires_ts > current.expires_ts else current


RowKey = tuple[str, str]  # (kind, row key): a row as the relay reads it


def rows_by_key(entries: Iterable[BlockEntry]) -> dict[RowKey, BlockEntry]:
    return {(entry.kind, entry.row_key): entry for entry in entries}


def audit_records(before: Mapping[RowKey, BlockEntry], after: Mapping[RowKey, BlockEntry], now: float) -> list[dict[str, Any]]:
    """What changed between two reads of the table, as ``relay.audit/1`` records (docs/telemetry.md).

    A row that appeared or changed is a ``block``; one that went before its expiry an ``unblock``, after it
    a ``prune``. The fields are the row's: who wrote it says ``added_by``, which only claims it.
    """
    records = []
    for key, entry in after.items():
        if before.get(key) != entry:
            records.append(_audit("block", entry))
    for key, entry in before.items():
        if key not in after:
            records.append(_audit("prune" if entry.expires_ts <= now else "unblock", entry))
    return records


def _audit(action: str, entry: BlockEntry) -> dict[str, Any]:
    return {
        "schema": "relay.audit/1",
        "action": action,
        "kind": entry.kind,
        "target": entry.target,
        "row": entry.row_key,
        "reason": entry.reason,
        "alert_id": entry.alert_id,
        "added_by": entry.added_by,
        "added_at": entry.added_at.isoformat() if entry.added_at else None,
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
    }
