"""The cost of the block list and the token budgets: one relay with both on (B) against one with both off (A).

Both relays run the same code against the same emulator; B also has Azurite for its tables,
a block list of ``BLOCKLIST_ROWS`` rows (object IDs and CIDR ranges, none matching the caller)
and budgets too large to stop anyone. A and B alternate in ABBA blocks as in the main
comparison, so "added" is what the two controls cost a request (the admission's reservation
included). Azurite's access log counts the table requests B made meanwhile: the background
refresh and sync, never one per request (docs/design.md, "Block list and token budgets").

Then a relay with a small day budget serves ``NEAR_USERS`` users whose rows already hold all but
``NEAR_LEFT`` tokens of it, round-robin, each user once a round: the table requests per 1,000
requests with many users near their limits, and the latency of each user's first request on the
instance (which waits once for the user's row) against the later ones.
"""

from __future__ import annotations

import ipaddress
import random
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import loadgen, procs
from bench.client import Connection, build_request
from bench.loadgen import Side
from bench.stats import summary_ms
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
NEAR_USERS = 192  # 16 connections x 12: every user once per round
NEAR_DAY_LIMIT = 2000
NEAR_LEFT = 75  # three answers to the bench prompt (25 tokens each, the last one cut), then refusals
NEAR_CONCURRENCY = 16
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
        near = await near_limits(emulator, work, azurite.tables, log, rounds=max(4, plan.controls_rounds))
    return {
        "method": "A = relay with both controls off, B = relay with the block list and budgets on; added = B minus A",
        "blocklist_rows": BLOCKLIST_ROWS,
        "c1": c1,
        "c16": c16,
        "errors": len(bench.errors),
        "relayed_requests": bench.relayed,
        "table_requests": calls,
        "table_requests_per_1000": round(calls * 1000 / max(1, bench.relayed), 3),
        "near_limits": near,
    }


def seed_near_limits(tables: AzuriteTables, oids: list[str]) -> None:
    """Each user's row for today, holding all but NEAR_LEFT tokens of NEAR_DAY_LIMIT (as earlier requests would have)."""
    today = datetime.now(UTC).strftime("%Y%m%d")
    with tables.table_client(BUDGET_TABLE) as client:
        for oid in oids:
            row = {"PartitionKey": f"user:{oid}", "RowKey": today, "Tokens": NEAR_DAY_LIMIT - NEAR_LEFT, "Minute": 0, "MinuteTokens": 0}
            client.upsert_entity(row)


async def near_limits(emulator: procs.Proc, work: Path, tables: AzuriteTables, log: Path, rounds: int) -> dict[str, Any]:
    """Many users near their day budget: table requests per 1,000 requests, and what a user's first request waits."""
    rng = random.Random(11)
    oids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(NEAR_USERS)]
    seed_near_limits(tables, oids)
    env = {
        "RELAY_TABLE_ENDPOINT": tables.endpoint,
        "SSL_CERT_FILE": tables.ca_file,
        "RELAY_BUDGET_USER_TOKENS_PER_DAY": str(NEAR_DAY_LIMIT),
    }
    with procs.relay_host(emulator.url, work, extra_env=env) as relay:
        host, port = relay.url.split("://", 1)[1].rsplit(":", 1)
        requests = []
        for oid in oids:
            token = procs.get_json(f"{relay.url}/_dev/token?oid={oid}")
            assert isinstance(token, dict)
            headers = {"Authorization": f"Bearer {token['access_token']}", "Content-Type": "application/json"}
            requests.append(build_request("POST", loadgen.CHAT_PATH_RELAY, f"{host}:{port}", headers, loadgen.chat_body()))
        connections = [Connection(host, int(port)) for _ in range(NEAR_CONCURRENCY)]
        per_round = NEAR_USERS // NEAR_CONCURRENCY
        before = table_requests(log)
        first = await loadgen.run_block(connections, lambda i: requests[i], per_round, {})
        later = [await loadgen.run_block(connections, lambda i: requests[i], per_round, {}) for _ in range(rounds - 1)]
        calls = table_requests(log) - before
        for connection in connections:
            connection.close()
    blocks = [first, *later]
    sent = sum(len(block.responses) + len(block.errors) for block in blocks)
    refused = sum(1 for block in blocks for error in block.errors if error.startswith("status 429"))
    return {
        "users": NEAR_USERS,
        "day_limit": NEAR_DAY_LIMIT,
        "left_at_start": NEAR_LEFT,
        "requests": sent,
        "answered": sum(len(block.responses) for block in blocks),
        "refused_429": refused,
        "other_errors": sent - refused - sum(len(block.responses) for block in blocks),
        "table_requests": calls,
        "table_requests_per_1000": round(calls * 1000 / max(1, sent), 3),
        "first_request_ms": summary_ms([r.t_end - r.t_start for r in first.responses]),
        "later_requests_ms": summary_ms([r.t_end - r.t_start for block in later for r in block.responses]),
    }
