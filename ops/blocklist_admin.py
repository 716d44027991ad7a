"""The security analysts' command for the block list: block, list, unblock, prune.

    python -m ops.blocklist_admin --account-url https://<account>.table.core.windows.net \\
        block --oid <object-id> --reason "jailbreak attempts" --ttl 24h --alert-id <alert>
    python -m ops.blocklist_admin --azurite list          # the Azurite of `make run`

Against Azure it writes with the analyst's Azure CLI login (``az login``), which needs Storage
Table Data Contributor on the table; ``--azurite`` and ``--connection-string`` are for Azurite.
Rows follow docs/blocklist.md; every instance enforces a new row within its refresh interval
(RELAY_BLOCKLIST_REFRESH_S). Its settings: ops/blocklist_settings.py. Not part of the deployed app (.funcignore).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import ipaddress
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.blocklist_settings import AdminSettings, load_admin_settings
from shared.blocklist import MAX_TEXT, UNTYPED_ROWS, BlockEntry, entry_from_row, normalize_target, row_for, row_key_for
from shared.config import DEFAULT_BLOCKLIST_TABLE, check_table_name

_TTL = re.compile(r"^(\d+)([smhdw])$")
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_TTL = timedelta(days=366)
STORAGE_SCOPE = "https://storage.azure.com/.default"
# The targets a command names, as options, and the partition each goes to.
_TARGET_OPTIONS = {"oid": "oid", "tenant": "tenant", "ip": "ip", "cidr": "ip"}


def parse_ttl(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` or ``2w``; at most 366 days."""
    match = _TTL.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"--ttl must be a number and a unit (s, m, h, d, w) such as 24h, got {text!r}")
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2)]
    # Compared as a number first: a timedelta of more than 999,999,999 days cannot be made at all.
    if seconds > MAX_TTL.total_seconds():
        raise argparse.ArgumentTypeError(f"--ttl must be at most {MAX_TTL.days} days, got {text!r}")
    return timedelta(seconds=seconds)


def _bounded_text(text: str) -> str:
    if not text.strip() or len(text) > MAX_TEXT or not text.isprintable():
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_TEXT} printable characters")
    return text.strip()


def _table_name(text: str) -> str:
    try:
        return check_table_name(text, "--table")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops.blocklist_admin", description="Block, list and unblock callers of the relay.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--account-url",
        help="the table service, https://<account>.table.core.windows.net (default: $RELAY_TABLE_ENDPOINT); uses your Azure CLI login",
    )
    where.add_argument("--azurite", action="store_true", help="the Azurite that `make run` started in this checkout")
    where.add_argument("--connection-string", help="a storage connection string (Azurite's, for instance)")
    table_help = f"the block list table (default: $RELAY_BLOCKLIST_TABLE, else {DEFAULT_BLOCKLIST_TABLE})"
    parser.add_argument("--table", type=_table_name, help=table_help)
    commands = parser.add_subparsers(dest="command", required=True)

    block = commands.add_parser("block", help="block an end user, a tenant, an IP address or a CIDR range")
    _target_options(block)
    block.add_argument("--reason", required=True, type=_bounded_text, help="why (kept in the table, never shown to the caller)")
    block.add_argument("--ttl", required=True, type=parse_ttl, help="how long: 30m, 24h, 7d ...")
    block.add_argument("--alert-id", type=_bounded_text, help="the Defender for Cloud alert (or incident) this answers")
    block.add_argument("--added-by", type=_bounded_text, help="who blocks (default: the signed-in identity)")

    listing = commands.add_parser("list", help="the rows in force (with --all, expired ones too)")
    listing.add_argument("--all", action="store_true")

    unblock = commands.add_parser("unblock", help="remove every row that blocks this target")
    _target_options(unblock)

    commands.add_parser("prune", help="delete the rows that have expired")
    return parser


def _target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--oid", help="an end user's Entra object ID")
    target.add_argument("--tenant", help="a tenant ID")
    target.add_argument("--ip", help="an IP address")
    target.add_argument("--cidr", help="an IP range, e.g. 203.0.113.0/24")


def target_of(args: argparse.Namespace) -> tuple[str, str]:
    """(kind, normalized target) of a block or unblock command; ValueError names a bad value."""
    for option, kind in _TARGET_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            target = normalize_target(kind, value)
            if option == "ip" and not target.endswith(("/32", "/128")):
                raise ValueError(f"--ip takes one address; use --cidr for the range {value!r}")
            if option == "cidr":
                _check_range(value, target)
            return kind, target
    raise ValueError("name a target: --oid, --tenant, --ip or --cidr")


def _check_range(value: str, target: str) -> None:
    """Refuse a range the analyst did not mean: host bits set (the range would be wider than written), or every address."""
    try:
        ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        raise ValueError(f"--cidr {value!r} has bits set after the prefix: the range it starts is {target}; write that") from None
    network = ipaddress.ip_network(target)
    if network.prefixlen == 0:
        raise ValueError(
            f"--cidr {value!r} is every IPv{network.version} address; the command refuses it "
            "(to stop serving everyone, stop the function app: az functionapp stop)"
        )


def open_table(args: argparse.Namespace, settings: AdminSettings) -> tuple[Any, Callable[[], str]]:
    """The table client, and how to tell who is writing: asked only when a ``block`` has no --added-by (AddedBy)."""
    from azure.data.tables import TableClient

    table = args.table or settings.table
    if args.azurite:
        # The one use of the dev host: finding the Azurite that `make run` started.
        from devhost.azurite import AzuriteError, find_running

        try:
            azurite = find_running(settings.azurite_dir)
        except AzuriteError as exc:
            raise ValueError(str(exc)) from None
        return azurite.table_client(table), lambda: f"{getpass.getuser()}@local"
    if args.connection_string:
        return TableClient.from_connection_string(args.connection_string, table), getpass.getuser
    url = args.account_url or settings.table_endpoint
    if not url:
        raise ValueError("say where the table is: --account-url (or RELAY_TABLE_ENDPOINT), --azurite or --connection-string")
    from azure.identity import AzureCliCredential

    credential = AzureCliCredential()
    # The credential runs `az` for every token it hands out (it caches none): read the analyst's name only when needed.
    return TableClient(url, table, credential=credential), lambda: _signed_in_as(credential)


def _signed_in_as(credential: Any) -> str:
    """The analyst's UPN (or object ID) from the storage token the CLI hands out; read only to fill AddedBy."""
    token = credential.get_token(STORAGE_SCOPE).token
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        name = claims.get("upn") or claims.get("unique_name") or claims.get("oid")
    except (IndexError, ValueError, AttributeError):  # not a JWT: the name is a courtesy, not worth failing the command
        name = None
    return str(name or getpass.getuser())


def block(table: Any, args: argparse.Namespace, author: Callable[[], str], now: datetime) -> BlockEntry:
    from azure.data.tables import UpdateMode

    kind, target = target_of(args)
    entry = BlockEntry(
        kind=kind,  # type: ignore[arg-type]
        target=target,
        row_key=row_key_for(target),
        reason=args.reason,
        added_by=args.added_by or author(),
        added_at=now,
        expires_at=now + args.ttl,
        alert_id=args.alert_id,
    )
    # Replace, not merge: the row says what this block is, not what an earlier one said (its AlertId, say).
    table.upsert_entity(row_for(entry), mode=UpdateMode.REPLACE)
    return entry


def rows(table: Any) -> list[tuple[dict[str, Any], BlockEntry | str]]:
    """Every row, read as the relay reads it, with its entry or why the relay ignores it.

    The whole table, not a partition: the relay reads ``OID`` and `` ip `` as ``oid`` and ``ip``, so they are
    listed, lifted and pruned as what they block.
    """
    found: list[tuple[dict[str, Any], BlockEntry | str]] = []
    for row in table.list_entities(format=UNTYPED_ROWS):
        try:
            found.append((row, entry_from_row(row)))
        except ValueError as exc:
            found.append((row, str(exc)))
    return found


def unblock(table: Any, args: argparse.Namespace) -> int:
    kind, target = target_of(args)
    matching = [row for row, entry in rows(table) if isinstance(entry, BlockEntry) and (entry.kind, entry.target) == (kind, target)]
    for row in matching:
        table.delete_entity(row["PartitionKey"], row["RowKey"])
    return len(matching)


def prune(table: Any, found: list[tuple[dict[str, Any], BlockEntry | str]], now: datetime) -> int:
    expired = [row for row, entry in found if isinstance(entry, BlockEntry) and entry.expires_ts <= now.timestamp()]
    for row in expired:
        table.delete_entity(row["PartitionKey"], row["RowKey"])
    return len(expired)


def invalid_row(row: Mapping[str, Any], why: str) -> str:
    """A row the relay skips, named so that an analyst can find it (keys quoted: a stray space shows)."""
    return f"invalid {row.get('PartitionKey')!r}/{row.get('RowKey')!r}: {why} (the relay ignores it)"


def describe(entry: BlockEntry) -> str:
    expires = entry.expires_at.isoformat(timespec="seconds") if entry.expires_at else "never"
    who = f"alert={entry.alert_id or '-'} by={entry.added_by or '-'}"
    return f"{entry.kind:<6} {entry.target:<43} until {expires:<25} {who} reason={entry.reason!r}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    now = datetime.now(UTC).replace(microsecond=0)
    from azure.core.exceptions import AzureError, ClientAuthenticationError

    try:
        settings = load_admin_settings(env)
        if args.command in ("block", "unblock"):
            target_of(args)  # a bad target is refused before anything is opened
        table, author = open_table(args, settings)
        with table:
            if args.command == "block":
                print(f"blocked: {describe(block(table, args, author, now))}")
            elif args.command == "unblock":
                removed = unblock(table, args)
                print(f"unblocked: {removed} row(s) removed")
                return 0 if removed else 1
            elif args.command == "prune":
                found = rows(table)
                print(f"pruned: {prune(table, found, now)} expired row(s) removed")
                for row, entry in found:
                    if not isinstance(entry, BlockEntry):
                        print(invalid_row(row, entry))
            else:
                shown = 0
                for row, entry in rows(table):
                    if not isinstance(entry, BlockEntry):
                        print(invalid_row(row, entry))
                    elif args.all or entry.expires_ts > now.timestamp():
                        print(describe(entry))
                    else:
                        continue
                    shown += 1
                if not shown:
                    print("no rows in the block list table" if args.all else "no blocks in force")
    except ValueError as exc:
        parser.error(str(exc))
    except ClientAuthenticationError as exc:
        hint = "run `az login`; you need Storage Table Data Contributor on the table"
        print(f"error: not signed in or not allowed ({type(exc).__name__}): {hint}", file=sys.stderr)
        return 1
    except AzureError as exc:
        first_line = next(iter(str(exc).splitlines()), "")
        print(f"error: the table service refused or did not answer: {type(exc).__name__}: {first_line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
