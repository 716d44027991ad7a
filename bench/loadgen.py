"""A/B load: the same request to the emulator directly (A) and through the relay (B), interleaved."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.client import Connection, HttpError, Response, build_request
from bench.procs import cpu_seconds

CHAT_PATH_DIRECT = "/openai/v1/chat/completions"
CHAT_PATH_RELAY = "/api/v1/chat/completions"
DEPLOYMENT = "gpt-4o-mini"
PROMPT = "Say hello to the benchmark"
GAP_DELAY_MS = 20
GAP_WORDS = 20
GAP_PROMPT = f"[emulate:chunk_delay_ms={GAP_DELAY_MS}] [emulate:words={GAP_WORDS}] Pace the chunks"
# Azure OpenAI sends its headers and the prompt-filter event before the model's first token, which takes
# tens of milliseconds or more; a stream that pauses there is timed to its first byte without the whole
# answer's burst in flight (see docs/performance.md, "The first streamed byte").
THINK_S = 0.005
THINK_PROMPT = f"[emulate:think={THINK_S:g}] {PROMPT}"


def chat_body(prompt: str = PROMPT, stream: bool = False) -> bytes:
    body: dict[str, object] = {"model": DEPLOYMENT, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Side:
    """One side of the A/B comparison: where requests go and the bytes they are."""

    name: str
    host: str
    port: int
    path: str
    token: str
    plain: bytes = b""
    stream: bytes = b""
    gaps: bytes = b""
    thinking: bytes = b""

    @classmethod
    def make(cls, name: str, url: str, path: str, token: str) -> Side:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        side = cls(name, host, int(port), path, token)
        side.plain, side.stream, side.gaps, side.thinking = (
            side.request(chat_body()),
            side.request(chat_body(stream=True)),
            side.request(chat_body(GAP_PROMPT, stream=True)),
            side.request(chat_body(THINK_PROMPT, stream=True)),
        )
        return side

    def request(self, body: bytes) -> bytes:
        """The bytes of one chat completion request with ``body`` to this side."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return build_request("POST", self.path, f"{self.host}:{self.port}", headers, body)

    def connections(self, n: int) -> list[Connection]:
        return [Connection(self.host, self.port) for _ in range(n)]


@dataclass
class Block:
    """The outcome of one block of requests: c workers, each sending k requests back to back."""

    responses: list[Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # per watched process, plus "loadgen"


def ok_any(response: Response) -> str | None:
    """Why ``response`` is not a good completion (plain, or a stream that ends with [DONE]), or None."""
    if response.headers.get("transfer-encoding", "").lower() == "chunked":
        return _ok_stream(response)
    return _ok_plain(response)


def _ok_plain(response: Response) -> str | None:
    if response.status != 200:
        return f"status {response.status}: {response.body[:200]!r}"
    if b'"choices"' not in response.body:
        return "no choices in the completion"
    return None


def _ok_stream(response: Response) -> str | None:
    if response.status != 200:
        return f"status {response.status}: {response.body[:200]!r}"
    if not response.body.rstrip().endswith(b"data: [DONE]"):
        return "stream did not end with [DONE]"
    return None


async def run_block(
    connections: list[Connection],
    raw: bytes | Callable[[int], bytes],
    per_worker: int,
    watch: dict[str, int],
    timeout: float = 30.0,
) -> Block:
    """Each connection sends ``per_worker`` requests back to back; CPU of the watched processes is read around the block."""
    block = Block()
    counter = iter(range(len(connections) * per_worker))

    async def worker(conn: Connection) -> None:
        for _ in range(per_worker):
            index = next(counter)
            request = raw(index) if callable(raw) else raw
            try:
                response = await conn.request(request, timeout)
            except (HttpError, OSError) as exc:
                block.errors.append(str(exc))
                conn.close()
                continue
            problem = ok_any(response)
            if problem:
                block.errors.append(problem)
            else:
                block.responses.append(response)

    before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    loadgen = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in connections))
    block.wall_s = time.perf_counter() - start
    block.cpu_s = {name: cpu_seconds(pid) - before[name] for name, pid in watch.items()}
    block.cpu_s["loadgen"] = time.process_time() - loadgen
    return block
