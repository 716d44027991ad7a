"""A block written with ``python -m ops.blocklist_admin`` ends the blocked user's open stream, over real sockets.

raw socket -> local App Service front end + Easy Auth -> relay (in-process, or through the Functions host stand-in
and the Python worker) -> Azure OpenAI emulator, with the block list on and its table in the Azurite the local host
starts. The stream is long (the emulator's ``words`` and ``chunk_delay_ms`` directives, docs/emulators.md); the
block reaches the relay at its next refresh, every ``REFRESH_S``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost import defaults
from tests.reliability.common import new_id, open_chat_stream, sse_events, wait_for_outcomes
from tests.support.azurite import admin
from tests.support.stack import Stack, run_stack

REFRESH_S = 1.0
# Over the refresh interval: the read itself, the admin command's write landing just after a read, a loaded machine.
SLACK_S = 3.0
WORDS = 2000  # 2,000 words 20 ms apart: 40 s, were the stream not ended
PROMPT = f"[emulate:words={WORDS}] [emulate:chunk_delay_ms=20] tell me everything"


@pytest.fixture(scope="module", params=defaults.RUNTIMES)
def blocklist_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    tmp = tmp_path_factory.mktemp(f"blocklist-streams-{request.param}")
    env = {
        "DEVHOST_RUNTIME": request.param,
        "RELAY_BLOCKLIST_ENABLED": "true",
        "RELAY_BLOCKLIST_REFRESH_S": str(REFRESH_S),
        "AZURITE_DIR": str(tmp / "azurite"),
    }
    with run_stack(tmp, env) as stack:
        yield stack, tmp / "azurite"


def content_events(events: list[tuple[str | None, str]]) -> int:
    return sum(
        1 for name, data in events if name is None and data != "[DONE]" and any((c.get("delta") or {}).get("content") for c in json.loads(data)["choices"])
    )


def test_a_block_ends_the_blocked_users_open_stream_with_user_blocked_and_cancels_azures_generation(blocklist_stack: tuple[Stack, Path]) -> None:
    stack, azurite_dir = blocklist_stack
    oid = "b10c0000-0000-4000-8000-00000000b5e1"
    cancelled_before = stack.stats()["cancelled_streams"]
    request_id = new_id("blocked-stream")
    sock, reader = open_chat_stream(stack, PROMPT, request_id, token=stack.token(oid=oid))
    with sock:
        status, _ = reader.head()
        assert status == 200
        pieces = reader.body_pieces()
        before_block = b"".join(next(pieces) for _ in range(5))

        done = admin(azurite_dir, "block", "--oid", oid, "--reason", "test", "--ttl", "1h", "--alert-id", "alert-stream-1")
        assert done.returncode == 0, done.stderr
        blocked_at = time.monotonic()
        rest = b"".join(pieces)
        ended_after = time.monotonic() - blocked_at
    events = sse_events(before_block + rest)
    print(f"stream ended {ended_after:.2f} s after the block was written (refresh interval {REFRESH_S} s), {len(events)} events")

    assert reader.complete, "the stream was cut, not ended"
    name, data = events[-1]
    assert name == "error", f"the stream ran on after the block: {len(events)} events, {ended_after:.1f} s, the last {data[:40]!r}"
    assert json.loads(data)["error"]["code"] == "user_blocked"
    assert ended_after < REFRESH_S + SLACK_S
    assert 0 < content_events(events) < WORDS / 4
    assert not any(data == "[DONE]" for _, data in events)

    [record] = wait_for_outcomes(stack, request_id, timeout=10)
    assert record["outcome"] == "cancelled"
    assert stack.stats()["cancelled_streams"] == cancelled_before + 1

    logged = stack.request_log(request_id)
    assert (logged["status"], logged["code"], logged["oid"]) == (403, "user_blocked", oid)
    lines = [json.loads(line[line.index("{") :]) for line in stack.log_lines() if '"relay.blocked"' in line]
    assert [(line["alert_id"], line["open_stream"]) for line in lines if line["request_id"] == logged["request_id"]] == [("alert-stream-1", True)]
    assert sum('"relay.request"' in line and logged["request_id"] in line for line in stack.log_lines()) == 1
