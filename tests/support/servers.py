"""Start local servers in subprocesses for tests: free ports, readiness, clean shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from devhost.ports import free_port as free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_for_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None, interval: float = 0.05) -> float:
    """Poll ``url`` until it answers (any HTTP status) or ``timeout`` passes; return the ``time.monotonic()`` it answered."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return time.monotonic()
        except urllib.error.HTTPError:
            return time.monotonic()
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from None
            time.sleep(interval)


@contextlib.contextmanager
def run_python_module(
    module: str,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready_url: str | None = None,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m module`` from the repository root; stop it (SIGTERM, then SIGKILL) afterwards."""
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=full_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if ready_url:
            wait_for_http(ready_url, proc=proc)
        yield proc
    finally:
        stop_process_group(proc, grace=10.0)
        if log_path:
            out.close()  # type: ignore[union-attr]


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM ``proc``'s process group, then SIGKILL whatever of it is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
