"""The local host's child processes: wait until one answers over HTTP, stop one with its process group.

One copy for everything that starts a server in a subprocess: ``make run`` (the emulators,
Azurite), the tests and the benchmark; and a process's command line, to tell whether a pid
still runs what was started under it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def wait_for_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None, interval: float = 0.05) -> float:
    """Poll ``url`` until it answers (any HTTP status) or ``timeout`` passes; return the ``time.monotonic()`` it answered.

    RuntimeError when ``proc`` exits first, TimeoutError when ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.monotonic()
        except urllib.error.HTTPError:
            return time.monotonic()
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:g}s") from None
            time.sleep(interval)


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 5.0, signum: signal.Signals = signal.SIGTERM) -> None:
    """Send ``signum`` to ``proc``'s process group, then SIGKILL whatever of it is left after ``grace`` seconds.

    ``proc`` must lead its group (started with ``start_new_session=True``).
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    _kill_group_after(proc.pid, deadline)
    proc.wait(timeout=5)


def stop_group(pgid: int, grace: float = 5.0, signum: signal.Signals = signal.SIGTERM) -> None:
    """``stop_process_group`` for a group this process did not start (its leader is not our child)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
    _kill_group_after(pgid, time.monotonic() + grace)


def _kill_group_after(pgid: int, deadline: float) -> None:
    """Wait until the group is gone or ``deadline`` passes, then SIGKILL what is left of it."""
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def command_line(pid: int) -> tuple[str, ...] | None:
    """The arguments ``pid`` runs with, or None when there is no such process (or it cannot be read)."""
    if Path("/proc/self/cmdline").exists():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return tuple(arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0")[:-1]) or None
    # No /proc (macOS): ps joins the arguments with spaces, so an argument with a space in it will not match.
    listed = subprocess.run(["/bin/ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return tuple(listed.stdout.split()) or None


def runs(pid: int, args: Sequence[str]) -> bool:
    """``pid`` is alive and runs ``args``: its command line ends with them (a script's interpreter may come first)."""
    live = command_line(pid)
    return bool(args) and live is not None and len(live) >= len(args) and live[len(live) - len(args) :] == tuple(args)
