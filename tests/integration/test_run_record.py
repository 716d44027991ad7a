"""devhost.run_record: a killed run's children are stopped by the next run, and nothing else is.

Real processes: ``sleep`` stands in for a run (the record's owner) and for its children.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhost.processes import command_line
from devhost.run_record import RunRecord, stop_leftovers

SLEEP = shutil.which("sleep") or "/bin/sleep"
SETSID = shutil.which("setsid") or "/usr/bin/setsid"


@dataclass
class Sleeper:
    """A ``sleep`` leading its own process group and not this process's child, as a killed run's leftovers are not the next run's."""

    pid: int

    def alive(self) -> bool:
        return command_line(self.pid) is not None


@pytest.fixture
def started() -> Iterator[list[Sleeper]]:
    sleepers: list[Sleeper] = []
    yield sleepers
    for sleeper in sleepers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper.pid, signal.SIGKILL)


def sleeper(sleepers: list[Sleeper]) -> Sleeper:
    launched = subprocess.run(
        ["/bin/sh", "-c", f"{SETSID} {SLEEP} 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True, timeout=10, check=True
    )
    started = Sleeper(int(launched.stdout))
    sleepers.append(started)
    # /proc shows an empty command line for a moment after the process starts.
    deadline = time.monotonic() + 5
    while command_line(started.pid) != (SLEEP, "60") and time.monotonic() < deadline:
        time.sleep(0.01)
    return started


def write_record(directory: Path, owner: Sleeper | None, children: list[tuple[str, Sleeper, list[str]]]) -> Path:
    """A record as a run writes it; ``owner`` None: a run that is gone (a pid no process has)."""
    directory.mkdir(parents=True, exist_ok=True)
    owner_pid, owner_args = (owner.pid, [SLEEP, "60"]) if owner else (2**22 + 1, ["python", "-m", "devhost"])
    kids = [{"name": name, "pid": proc.pid, "args": args, "stop_signal": int(signal.SIGTERM)} for name, proc, args in children]
    path = directory / f"{owner_pid}.json"
    path.write_text(json.dumps({"pid": owner_pid, "args": owner_args, "children": kids}), encoding="utf-8")
    return path


def test_the_children_of_a_run_that_is_gone_are_stopped_and_named(tmp_path: Path, started: list[Sleeper]) -> None:
    child = sleeper(started)
    record = write_record(tmp_path, None, [("the emulators", child, [SLEEP, "60"])])
    assert stop_leftovers(tmp_path) == [f"the emulators (pid {child.pid})"]
    assert not child.alive()
    assert not record.exists()


def test_a_pid_that_now_runs_another_command_is_left_alone(tmp_path: Path, started: list[Sleeper]) -> None:
    stranger = sleeper(started)
    write_record(tmp_path, None, [("Azurite", stranger, ["node", "azurite-table", "--tablePort", "10002"])])
    assert stop_leftovers(tmp_path) == []
    assert stranger.alive()


def test_the_children_of_a_run_still_going_are_its_own(tmp_path: Path, started: list[Sleeper]) -> None:
    owner, child = sleeper(started), sleeper(started)
    record = write_record(tmp_path, owner, [("the emulators", child, [SLEEP, "60"])])
    assert stop_leftovers(tmp_path) == []
    assert child.alive() and record.exists()


def test_a_run_records_its_children_and_removes_its_record(tmp_path: Path, started: list[Sleeper]) -> None:
    run = RunRecord(tmp_path / "runs")
    child = sleeper(started)
    run.add("the emulators", child.pid, [SLEEP, "60"])
    saved = json.loads(run.path.read_text(encoding="utf-8"))
    assert saved["children"] == [{"name": "the emulators", "pid": child.pid, "args": [SLEEP, "60"], "stop_signal": int(signal.SIGTERM)}]
    # This process is the run: its own record never counts as another run's.
    assert stop_leftovers(run.directory) == [f"the emulators (pid {child.pid})"]
    run.remove()
    assert list(run.directory.iterdir()) == []


def test_a_damaged_record_is_dropped_without_stopping_anything(tmp_path: Path, started: list[Sleeper]) -> None:
    child = sleeper(started)
    (tmp_path / "123.json").write_text('{"pid": 123, "children": [{"name": "x", "pid": ' + str(child.pid), encoding="utf-8")
    assert stop_leftovers(tmp_path) == []
    assert child.alive() and list(tmp_path.iterdir()) == []
