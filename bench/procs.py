"""The processes under test: the emulator and the local host, each in its own process; /proc readings."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devhost import defaults
from devhost.defaults import ROOT
from devhost.emulator.aoai import COGNITIVE_SERVICES_AUDIENCE
from devhost.ports import free_port
from devhost.processes import stop_process_group, wait_for_http
from devhost.telemetry import point_at_local_ingestion
from shared.config import DEFAULT_UPSTREAM_CONNECTIONS

IDENTITY_HEADER = defaults.IDENTITY_HEADER
DEPLOYMENTS = ",".join(defaults.DEPLOYMENTS)
APPLICATION_NAME = "bench-spa"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_cpu_seconds(path: str) -> float:
    """utime + stime from a /proc stat file."""
    with open(path, "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    return _stat_cpu_seconds(f"/proc/{pid}/stat")


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime of each of a process's threads by thread id (the main thread's id is ``pid``); threads gone are left out."""
    seconds: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            seconds[int(tid)] = _stat_cpu_seconds(f"/proc/{pid}/task/{tid}/stat")
        except FileNotFoundError:
            continue
    return seconds


def only_child(pid: int) -> int:
    """The one child process of ``pid`` (the local host's Python worker in ``DEVHOST_RUNTIME=worker``)."""
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
        pids = [int(child) for child in children.read().split()]
    if len(pids) != 1:
        raise RuntimeError(f"process {pid} has {len(pids)} children, expected its worker only")
    return pids[0]


def pin_threads(pid: int, cpus: frozenset[int]) -> None:
    """Move every thread of a running process to ``cpus`` (threads it starts later inherit their creator's affinity)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), cpus)


def memory_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set size, in MB (10^6 bytes)."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024 / 1e6
    return {"rss_mb": round(out.get("VmRSS", 0.0), 2), "peak_rss_mb": round(out.get("VmHWM", 0.0), 2)}


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) / 1e6
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_total, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=False)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "shared", "function_app.py", "devhost"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def get_json(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> object:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.load(resp)


def post(url: str, body: bytes = b"", headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def managed_identity_token(emulator_url: str) -> str:
    """An Azure OpenAI token from the emulator's managed identity endpoint: what a call straight to the emulator sends."""
    token = get_json(
        f"{emulator_url}/msi/token?api-version=2019-08-01&resource={COGNITIVE_SERVICES_AUDIENCE}",
        {"X-IDENTITY-HEADER": IDENTITY_HEADER},
    )
    assert isinstance(token, dict)
    return str(token["access_token"])


def dev_token(host_url: str) -> str:
    """A caller's token from the local host's ``/_dev/token``: what a call through the relay sends."""
    token = get_json(f"{host_url}/_dev/token")
    assert isinstance(token, dict)
    return str(token["access_token"])


def base_env() -> dict[str, str]:
    """The environment of the processes under test: the caller's, minus settings that would change the relay."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "RELAY_", "IDENTITY_", "EMULATOR_", "MSI_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def telemetry_env(emulator: Proc, work: Path) -> dict[str, str]:
    """What a relay started with it needs to export its telemetry to the emulator's ingestion stand-in, as ``make run`` sets it."""
    env: dict[str, str] = {}
    point_at_local_ingestion(env, emulator.ingestion_port, work / "emulator-ca.pem")
    return env


def relay_env(emulator_url: str, port: int) -> dict[str, str]:
    """What ``python -m devhost`` needs to run the relay against an emulator that is already up."""
    return {
        **base_env(),
        "PORT": str(port),
        "AZURE_OPENAI_ENDPOINT": emulator_url,
        "AZURE_OPENAI_DEPLOYMENTS": DEPLOYMENTS,
        "IDENTITY_ENDPOINT": f"{emulator_url}/msi/token",
        "IDENTITY_HEADER": IDENTITY_HEADER,
        "APPLICATION_NAME": APPLICATION_NAME,
        # The bench's load comes from one synthetic user: the per-user limit on requests in flight must not bind.
        "RELAY_USER_MAX_IN_FLIGHT": "100000",
    }


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    url: str
    started: float  # time.monotonic() just before the spawn
    ready: float  # time.monotonic() when its readiness URL first answered
    # The emulator's Application Insights ingestion port (HTTPS); 0 for other processes.
    ingestion_port: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid


@contextlib.contextmanager
def spawn(
    args: list[str],
    env: Mapping[str, str],
    ready_path: str,
    port: int,
    log_path: Path,
    timeout: float = 30.0,
    cpus: frozenset[int] | None = None,
) -> Iterator[Proc]:
    """Run ``python <args>`` from the repository root in its own session (on ``cpus`` only, when given); stop it afterwards."""
    url = f"http://127.0.0.1:{port}"
    # Pinned before the interpreter starts, so every thread it ever makes inherits the affinity.
    pin = None if cpus is None else functools.partial(os.sched_setaffinity, 0, cpus)
    with open(log_path, "ab") as log:
        started = time.monotonic()
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin,
        )
        try:
            ready = wait_for_http(url + ready_path, timeout, popen, interval=0.005)
            yield Proc(popen, url, started, ready)
        finally:
            stop_process_group(popen, grace=10.0)


@contextlib.contextmanager
def emulator(work: Path, cpus: frozenset[int] | None = None) -> Iterator[Proc]:
    port = free_port()
    env = {
        **base_env(),
        "EMULATOR_PORT": str(port),
        "EMULATOR_KEYVAULT_PORT": str(free_port()),
        "EMULATOR_INGESTION_PORT": str(ingestion_port := free_port()),
        "EMULATOR_CA_FILE": str(work / "emulator-ca.pem"),
        "EMULATOR_IDENTITY_HEADER": IDENTITY_HEADER,
        "EMULATOR_DEPLOYMENTS": DEPLOYMENTS,
    }
    with spawn(["-m", "devhost.emulator", "--port", str(port)], env, "/_emulator/healthz", port, work / "emulator.log", cpus=cpus) as proc:
        proc.ingestion_port = ingestion_port
        yield proc


@contextlib.contextmanager
def _local_host(
    module: str, label: str, emulator_url: str, work: Path, extra_env: Mapping[str, str] | None, cpus: frozenset[int] | None
) -> Iterator[Proc]:
    port = free_port()
    env = {**relay_env(emulator_url, port), **(extra_env or {})}
    with spawn(["-m", module], env, "/api/healthz", port, work / f"{label}-{port}.log", cpus=cpus) as proc:
        yield proc


def relay_host(
    emulator_url: str, work: Path, extra_env: Mapping[str, str] | None = None, cpus: frozenset[int] | None = None
) -> contextlib.AbstractContextManager[Proc]:
    """``python -m devhost`` (with ``extra_env``, when given) against a running emulator."""
    return _local_host("devhost", "relay", emulator_url, work, extra_env, cpus)


def platform_floor(
    emulator_url: str, work: Path, extra_env: Mapping[str, str] | None = None, cpus: frozenset[int] | None = None
) -> contextlib.AbstractContextManager[Proc]:
    """``python -m bench.platform_host``: the platform floor through the worker and the host stand-in, as ``relay_host``."""
    return _local_host("bench.platform_host", "platform", emulator_url, work, extra_env, cpus)


@contextlib.contextmanager
def floor(
    emulator_url: str, work: Path, connections: int = DEFAULT_UPSTREAM_CONNECTIONS, cpus: frozenset[int] | None = None
) -> Iterator[Proc]:
    """``python -m bench.floor``, the bare passthrough, against a running emulator (a pool of ``connections``)."""
    port = free_port()
    args = ["-m", "bench.floor", "--port", str(port), "--upstream", emulator_url, "--connections", str(connections)]
    env = {**base_env(), "IDENTITY_HEADER": IDENTITY_HEADER}
    with spawn(args, env, "/healthz", port, work / f"floor-{port}.log", cpus=cpus) as proc:
        yield proc


@contextlib.contextmanager
def pacer(emulator_url: str, work: Path, cpus: frozenset[int] | None = None) -> Iterator[Proc]:
    """``python -m bench.pacer``: the emulator's answers replayed on its schedule (the capacity ramp's upstream)."""
    port = free_port()
    args = ["-m", "bench.pacer", "--port", str(port), "--emulator", emulator_url]
    with spawn(args, base_env(), "/_emulator/healthz", port, work / f"pacer-{port}.log", cpus=cpus) as proc:
        yield proc
