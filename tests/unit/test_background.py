"""shared.background: a step that fails is logged and the steps go on; the task starts once and stops on close."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from shared.background import RepeatingTask


async def test_a_failing_step_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    third = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        if calls == 3:
            third.set()

    task = RepeatingTask("probe-loop", step, lambda: 0.001, logging.getLogger("relay.test"))
    with caplog.at_level(logging.ERROR, logger="relay.test"):
        task.start()
        task.start()
        async with asyncio.timeout(5):
            await third.wait()
        await task.aclose()
    lines = [logging.Formatter().format(r) for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0], "a crashed step is exactly one log line"
    line = json.loads(lines[0])
    assert (line["event"], line["error_type"]) == ("probe-loop.crashed", "RuntimeError")
    assert "test_background.py" in line["trace"] and "step" in line["trace"]
    assert "a bug" not in lines[0], "the exception's message stays out of the log"
    stopped_at = calls
    await asyncio.sleep(0.02)
    assert calls == stopped_at
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "probe-loop"]
