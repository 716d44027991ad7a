"""Start local servers in subprocesses for tests (readiness and shutdown: devhost/processes.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from devhost.defaults import ROOT as ROOT
from devhost.ports import free_port as free_port
from devhost.processes import stop_process_group, wait_for_http


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
