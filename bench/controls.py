"""The cost of the block list and the token budgets: one relay with both on (B) against one with both off (A).

Both relays run the same code against the same emulator; B also has Azurite for its tables,
a block list of ``BLOCKLIST_ROWS`` rows (object IDs and CIDR ranges, none matching the caller)
and budgets too large to stop anyone. A and B alternate in ABBA blocks as in the main
comparison, so "added" is what the two controls cost a request. Azurite's access log counts
the table requests B made meanwhile: the background refresh and sync, never one per request
(docs/design.md, "Block list and token budgets").
"""

from __future__ import annotations

import ipaddress
import random
import re
import uuid
from pathlib import Path
from typing import Any

from bench import loadgen, procs
from bench.loadgen import Side
from devhost.azurite import AzuriteTables, running_azurite
from shared.config import DEFAULT_BLOCKLIST_TABLE, DEFAULT_BUDGET_TABLE

BLOCKLIST_TABLE, BUDGET_TABLE = DEFAULT_BLOCKLIST_TABLE, DEFAULT_BUDGET_TABLE
BLOCKLIST_ROWS = 1000
LARGE = str(10**12)
CONTROLS_ENV = {
    "RELAY_BLOCKLIST_ENABLED": "true",
    "RELAY_BUDGET_USER_TOKENS_PER_MINUTE": LARGE,
    "RELAY_BUDGET_USER_TOKENS_PER_DAY": LARGE,
    "RELAY_BUDGET_TENANT_TOKENS_PER_DAY": LARGE,
}
# One line per request in Azurite's access log: 127.0.0.1 - - [date] "GET /devstoreaccount1/... HTTP/1.1" 200 -
_ACCESS_LINE = re.compile(rb'"[A-Z]+ /devstoreaccount1')


def seed_blocklist(tables: AzuriteTables, rows: int, seed: int = 7) -> None:
    """``rows`` block list rows: nine in ten object IDs, one in ten CIDR ranges of several lengths, all in 10.0.0.0/8."""
    rng = random.Random(seed)
    by_partition: dict[str, list[dict[str, Any]]] = {"oid": [], "ip": []}
    for index in range(rows):
        if index % 10:
            value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            by_partition["oid"].append({"PartitionKey": "oid", "RowKey": value, "Value": value, "Reason": "bench"})
        else:
            prefix = rng.choice((16, 20, 24, 28, 32))
            network = ipaddress.ip_network(f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/{prefix}", strict=False)
            key = network.with_prefixlen.replace("/", "_")
            by_partition["ip"].append({"PartitionKey": "ip", "RowKey": key, "Value": network.with_prefixlen, "Reason": "bench"})
    with tables.table_client(BLOCKLIST_TABLE) as client:
        for batch in by_partition.values():
            unique = list({row["RowKey"]: row for row in batch}.values())
            for start in range(0, len(unique), 100):  # a table transaction holds at most 100 operations
                client.submit_transaction([("upsert", row) for row in unique[start : start + 100]])


def table_requests(log: Path) -> int:
    return sum(1 for line in log.read_bytes().splitlines() if _ACCESS_LINE.search(line)) if log.exists() else 0


async def measure(bench_type: Any, plan: Any, emulator: procs.Proc, relay_off: procs.Proc, work: Path) -> dict[str, Any]:
    """A = ``relay_off`` (both controls off), B = a relay with both on; latency at concurrency 1 and 16, and table requests."""
    log = work / "azurite-controls.log"
    with running_azurite(work / "azurite", (BLOCKLIST_TABLE, BUDGET_TABLE), log_path=log) as azurite:
        seed_blocklist(azurite.tables, BLOCKLIST_ROWS)
        env = {**CONTROLS_ENV, "RELAY_TABLE_ENDPOINT": azurite.tables.endpoint, "SSL_CERT_FILE": azurite.tables.ca_file}
        with procs.relay_host(emulator.url, work, extra_env=env) as relay_on:
            bench = bench_type(plan, emulator, relay_on)
            # The A side is the relay with both controls off; the names stay "direct" and "relay" for the shared code.
            bench.direct = Side.make("direct", relay_off.url, loadgen.CHAT_PATH_RELAY, procs.dev_token(relay_off.url))
            bench.watch = {"relay": relay_on.pid, "relay_off": relay_off.pid}
            await bench.warmup()
            before = table_requests(log)
            c1 = await bench.latency(1, plan.controls_pairs, 1)
            c16 = await bench.latency(16, plan.controls_rounds, plan.per_worker)
            calls = table_requests(log) - before
    return {
        "method": "A = relay with both controls off, B = relay with the block list and budgets on; added = B minus A",
        "blocklist_rows": BLOCKLIST_ROWS,
        "c1": c1,
        "c16": c16,
        "errors": len(bench.errors),
        "relayed_requests": bench.relayed,
        "table_requests": calls,
        "table_requests_per_1000": round(calls * 1000 / max(1, bench.relayed), 3),
    }
