"""Concurrent bursts of chat requests over real sockets, and what the emulator billed for them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support import rawhttp


def chat_body(marker: str, words: int, prompt_tokens: int | None = None) -> bytes:
    """A request for a ``words``-word answer, its prompt tagged with ``marker`` (and billed ``prompt_tokens`` when given)."""
    billed = f" [emulate:prompt_tokens={prompt_tokens}]" if prompt_tokens is not None else ""
    return json.dumps({"messages": [{"role": "user", "content": f"{marker} [emulate:words={words}]{billed}"}]}).encode()


def post(port: int, token: str, body: bytes) -> rawhttp.RawResponse:
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    return rawhttp.request(port, "POST", "/api/v1/chat/completions", headers, body, timeout=30)


def burst(requests: Sequence[tuple[int, str, bytes]]) -> list[rawhttp.RawResponse]:
    """Send every (port, token, body) at once, each on its own connection; the responses in the same order."""
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(lambda each: post(*each), requests))


def code_of(response: rawhttp.RawResponse) -> str | None:
    return json.loads(response.body)["error"]["code"] if response.status >= 400 else None


def refused_for_the_day(response: rawhttp.RawResponse) -> bool:
    """A 429 ``user_quota_exceeded`` whose Retry-After is midnight UTC (used up, not only held by requests in flight)."""
    if (response.status, code_of(response)) != (429, "user_quota_exceeded"):
        return False
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return abs(int(response.header("retry-after") or 0) - (midnight - now).total_seconds()) < 5


def billed(records: Iterable[Mapping[str, Any]], marker: str) -> int:
    """The tokens the emulator billed for the requests whose prompt carries ``marker``."""
    total = 0
    for record in records:
        body = record.get("body") or {}
        messages = body.get("messages") or [{}]
        if marker in str(messages[-1].get("content")) and record.get("usage"):
            total += int(record["usage"]["total_tokens"])
    return total
