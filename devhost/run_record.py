"""What a run of the local host started, written down while it runs, so that the next run can stop what a killed one left.

Its children (the emulators, Azurite) lead process groups of their own, so that stopping one stops
all of it; the same makes them outlive a run that is killed (SIGKILL) before it can stop them. Each
run therefore writes ``<state dir>/runs/<pid>.json``: its own pid and command line, and for each group
it starts the leader's pid, the command it launched and the signal that stops it cleanly. A run
that ends removes its file. At start, a file whose run is gone (its pid dead, or now running another
command) names groups that nobody will stop: each one whose leader still runs the recorded command
is stopped; a pid that now runs anything else is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devhost.processes import command_line, runs, stop_group

_STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class Child:
    """A process group a run started: what it is, its leader, the command launched, the signal that stops it cleanly."""

    name: str
    pid: int
    args: tuple[str, ...]
    stop_signal: int = signal.SIGTERM


@dataclass
class RunRecord:
    """This run's file: written when it starts its first child, removed when it ends."""

    directory: Path
    pid: int = field(default_factory=os.getpid)
    children: list[Child] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.directory / f"{self.pid}.json"

    def add(self, name: str, pid: int, args: Sequence[str], stop_signal: int = signal.SIGTERM) -> None:
        """Record the group that ``pid`` leads, started with ``args``."""
        self.children.append(Child(name, pid, tuple(args), int(stop_signal)))
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {"pid": self.pid, "args": command_line(self.pid), "children": [asdict(child) for child in self.children]}
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        partial.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def stop_leftovers(directory: Path) -> list[str]:
    """Stop the children of runs that ended without stopping them; what was stopped, as ``name (pid N)``."""
    stopped: list[str] = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            owner, owner_args = int(record["pid"]), record.get("args") or ()
            children = [Child(c["name"], int(c["pid"]), tuple(c["args"]), int(c["stop_signal"])) for c in record["children"]]
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # not one of ours, or cut short while written: nothing in it to trust
            continue
        if owner != os.getpid() and runs(owner, owner_args):
            continue  # that run is still going: its children are its own to stop
        for child in children:
            if runs(child.pid, child.args):
                with contextlib.suppress(PermissionError):
                    stop_group(child.pid, grace=_STOP_GRACE_S, signum=signal.Signals(child.stop_signal))
                    stopped.append(f"{child.name} (pid {child.pid})")
        path.unlink(missing_ok=True)
    return stopped
