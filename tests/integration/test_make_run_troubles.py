"""``make run`` when something is off: a taken port, a closed terminal, a killed run, a broken Node.js, ``--help``.

Each test runs the real ``make run`` (or ``python -m devhost``, what it runs) in a fresh clone set up as
tests/integration/test_make_run.py sets one up. What the run started is found the way a developer would
find it: the processes whose working directory is the clone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devhost.ports import port_in_use
from devhost.processes import command_line, stop_process_group, wait_for_http
from tests.integration.test_make_run import clean_env, finish_setup, fresh_clone, project_venv
from tests.support.servers import free_port

START_TIMEOUT_S = 90.0


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    path = fresh_clone(tmp_path / "clone")
    finish_setup(path, project_venv())
    # The FunctionRpc modules too (what the first `make run` generates, in the clone only), so that a run's output is its own.
    built = subprocess.run(["make", "devhost/functions_host/generated/.built"], cwd=path, env=clean_env(), capture_output=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return path


def ports_env(**overrides: str) -> dict[str, str]:
    ports = {"PORT": str(free_port()), "EMULATOR_PORT": str(free_port()), "EMULATOR_KEYVAULT_PORT": str(free_port())}
    return clean_env(**{**ports, **overrides})


def processes_in(clone: Path) -> dict[int, tuple[str, ...]]:
    """The live processes working in ``clone`` (what `make run` there started), by pid."""
    found: dict[int, tuple[str, ...]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "cwd")) == clone.resolve():
                    args = command_line(int(entry.name))
                    if args and not _zombie(int(entry.name)):
                        found[int(entry.name)] = args
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def emulators_and_azurites(clone: Path) -> tuple[list[int], list[int]]:
    live = processes_in(clone)
    emulators = [pid for pid, args in live.items() if args[-4:-2] == ("-m", "devhost.emulator")]
    azurites = [pid for pid, args in live.items() if any(arg.endswith("azurite-table") for arg in args)]
    return emulators, azurites


def wait_until_gone(clone: Path, timeout: float = 30.0) -> dict[int, tuple[str, ...]]:
    deadline = time.monotonic() + timeout
    while (left := processes_in(clone)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@contextlib.contextmanager
def make_run(clone: Path, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["make", "run"], cwd=clone, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_process_group(proc, grace=15.0)


def run_to_the_end(clone: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command or ("make", "run")), cwd=clone, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the run wrote to stderr, make's own error line left out."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("make:")]


def assert_nothing_started(clone: Path, output: str) -> None:
    assert "Traceback" not in output, output
    assert not any(line.startswith(("relay:", "tables:")) for line in output.splitlines()), output
    assert not (clone / ".devhost" / "azurite").exists(), "Azurite was started"
    assert not (clone / ".devhost" / "emulator-ca.pem").exists(), "the emulators were started"
    assert wait_until_gone(clone, timeout=5.0) == {}


def test_a_taken_relay_port_stops_make_run_with_one_line_naming_port_before_anything_starts(clone: Path) -> None:
    env = ports_env()
    with socket.create_server(("127.0.0.1", int(env["PORT"]))):
        result = run_to_the_end(clone, env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert len(error_lines(result)) == 1, output
    [line] = error_lines(result)
    assert line.startswith(f"port {env['PORT']} (the relay) is in use by another process: ") and "choose another port with PORT" in line
    assert_nothing_started(clone, output)
    assert not port_in_use(int(env["EMULATOR_PORT"]))


class PretendEmulator(BaseHTTPRequestHandler):
    """Another process on the emulator's port that answers as an emulator would."""

    seen: list[str] = []

    def do_GET(self) -> None:
        PretendEmulator.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, format: str, *args: object) -> None:
        return None


def test_an_emulator_port_held_by_another_process_is_named_and_that_process_is_never_called(clone: Path) -> None:
    env = ports_env()
    PretendEmulator.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", int(env["EMULATOR_PORT"])), PretendEmulator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_to_the_end(clone, env)
    finally:
        server.shutdown()
        server.server_close()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert len(error_lines(result)) == 1, output
    [line] = error_lines(result)
    assert line.startswith(f"port {env['EMULATOR_PORT']} (the Azure OpenAI and identity emulators) is in use by another process")
    assert "choose another port with EMULATOR_PORT" in line
    assert PretendEmulator.seen == []
    assert_nothing_started(clone, output)


def test_help_prints_usage_and_starts_nothing(clone: Path) -> None:
    result = run_to_the_end(clone, ports_env(), str(clone / ".venv" / "bin" / "python"), "-m", "devhost", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m devhost")
    for setting in ("PORT", "EMULATOR_PORT", "EMULATOR_KEYVAULT_PORT", "AZURITE_TABLE_PORT", "DEVHOST_RUNTIME"):
        assert f"  {setting} " in result.stdout, setting
    assert_nothing_started(clone, result.stdout + result.stderr)


def test_a_closed_terminal_sighup_stops_azurite_and_the_emulators(clone: Path, tmp_path: Path) -> None:
    env = ports_env()
    with make_run(clone, env, tmp_path / "make-run.log") as proc:
        wait_for_http(f"http://127.0.0.1:{env['PORT']}/api/healthz", timeout=START_TIMEOUT_S, proc=proc)
        emulators, azurites = emulators_and_azurites(clone)
        assert len(emulators) == 1 and len(azurites) == 1, processes_in(clone)
        # What a terminal does when it closes: SIGHUP to the foreground process group (make and what it runs).
        os.killpg(proc.pid, signal.SIGHUP)
        proc.wait(timeout=30)
    left = wait_until_gone(clone)
    assert left == {}, f"left running after SIGHUP: {left}\n{(tmp_path / 'make-run.log').read_text()}"


def test_after_a_run_killed_with_sigkill_the_next_run_stops_its_leftovers_and_starts_one_azurite(clone: Path, tmp_path: Path) -> None:
    env = ports_env()
    log_path = tmp_path / "make-run.log"
    healthz = f"http://127.0.0.1:{env['PORT']}/api/healthz"
    with make_run(clone, env, log_path) as first:
        wait_for_http(healthz, timeout=START_TIMEOUT_S, proc=first)
        [old_emulator], [old_azurite] = emulators_and_azurites(clone)
        [host] = [pid for pid, args in processes_in(clone).items() if args[-2:] == ("-m", "devhost")]
        os.kill(host, signal.SIGKILL)
        first.wait(timeout=30)
    # What the issue saw: the killed run's Azurite and emulators keep running.
    assert emulators_and_azurites(clone) == ([old_emulator], [old_azurite])

    log_start = log_path.stat().st_size
    with make_run(clone, env, log_path) as second:
        wait_for_http(healthz, timeout=START_TIMEOUT_S, proc=second)
        output = log_path.read_text()[log_start:]
        expected = f"stopped what a previous run left running: the emulators (pid {old_emulator}), Azurite (pid {old_azurite})"
        assert expected in output.splitlines(), output
        emulators, azurites = emulators_and_azurites(clone)
        assert old_emulator not in emulators and old_azurite not in azurites
        assert len(emulators) == 1 and len(azurites) == 1, processes_in(clone)
    assert wait_until_gone(clone) == {}


def test_a_broken_node_shows_the_end_of_azurites_log_and_no_traceback(clone: Path, tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    node = fake_bin / "node"
    node.write_text("#!/bin/sh\necho 'node: cannot load ICU data (a broken Node.js install)' >&2\nexit 1\n", encoding="utf-8")
    node.chmod(0o755)
    env = ports_env(PATH=f"{fake_bin}:{os.environ['PATH']}", RELAY_BLOCKLIST_ENABLED="true")
    result = run_to_the_end(clone, env, str(clone / ".venv" / "bin" / "python"), "-m", "devhost")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output
    assert "Azurite did not start: Azurite exited with status 1 before it served the table service" in output, output
    assert "  node: cannot load ICU data (a broken Node.js install)" in output.splitlines(), output
    assert wait_until_gone(clone) == {}, "the emulators outlived the failed start"
