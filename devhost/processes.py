"""The local host's child processes: wait until one answers over HTTP, stop one with its process group.

One copy for everything that starts a server in a subprocess: ``make run`` (the emulators,
Azurite), the tests and the benchmark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request


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
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
