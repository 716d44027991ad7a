"""``make run`` on a fresh clone serves ``/api/healthz`` and a completion within a minute of setup finishing.

A ``git clone`` of the committed HEAD runs the real ``make run`` on free ports. "Setup finishing" means the
venv and Azurite exist: the clone's ``.venv`` and ``devhost/azurite/node_modules`` are symlinks to the ones
these tests run with, and the clone's requirement files are dated before that venv's stamp so make treats the
venv as up to date (nothing is reinstalled and the shared venv is not modified). Then, over real sockets and
within 60 s of launching make: healthz answers 200, ``/_dev/token`` mints a token, the official ``openai`` SDK
gets a completion, and the Azure OpenAI emulator saw the caller's ``user_security_context``. Last, the block
list admin command run in the clone (``--azurite``) blocks that caller, and make run's relay refuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from devhost import defaults
from devhost.processes import stop_process_group, wait_for_http
from tests.support.servers import ROOT, free_port
from tests.support.stack import Stack
from tests.support.tokens import claims_of

BUDGET_S = 60.0
STAMP = ".installed"
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
# Settings the developer's shell (or CI) might carry that would make this something other than a plain `make run`.
SCRUBBED_PREFIXES = ("AZURE_", "AZURITE_", "RELAY_", "IDENTITY_", "EMULATOR_", "MSI_", "WEBSITE_", "MAKE", "MFLAGS")
SCRUBBED_NAMES = {
    "PORT", "APPLICATION_NAME", "CORS_ALLOWED_ORIGINS", "DEVHOST_AUDIENCE", "DEVHOST_RUNTIME", "PYTHONPATH", "PYTHONHOME", "SSL_CERT_FILE"
}  # fmt: skip


@dataclass
class MakeRun:
    clone: Path
    proc: subprocess.Popen[bytes]
    started: float
    stack: Stack

    def output(self) -> str:
        text = self.stack.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-6000:] or "(no output)"


def project_venv() -> Path:
    """The venv these tests run in, which `make` on the project created (it has the stamp)."""
    for candidate in (ROOT / ".venv", Path(sys.prefix)):
        if (candidate / STAMP).is_file() and (candidate / "bin" / "python").exists():
            return candidate.resolve()
    pytest.fail(f"no set-up venv with a {STAMP} stamp at {ROOT / '.venv'} or {sys.prefix}: run `make venv` first")


def fresh_clone(dest: Path) -> Path:
    git = shutil.which("git")
    assert git, "git is required: CI runs on a clone of the repository"
    subprocess.run([git, "clone", "--quiet", str(ROOT), str(dest)], check=True, capture_output=True, timeout=60)
    return dest


def finish_setup(clone: Path, venv: Path) -> None:
    """Point the clone at the existing venv and Azurite, and make the venv's stamp newer than the clone's requirement files."""
    (clone / ".venv").symlink_to(venv, target_is_directory=True)
    azurite_modules = ROOT / "devhost" / "azurite" / "node_modules"
    assert azurite_modules.is_dir(), "Azurite is not installed: run `bash scripts/ensure-azurite.sh` (make test does)"
    (clone / "devhost" / "azurite" / "node_modules").symlink_to(azurite_modules, target_is_directory=True)
    older = (venv / STAMP).stat().st_mtime - 60
    for name in REQUIREMENTS:
        os.utime(clone / name, (older, older))
    # Guard: were the stamp out of date, `make run` would reinstall into the shared venv. `make -q` only asks.
    question = subprocess.run(["make", "-q", f".venv/{STAMP}"], cwd=clone, env=clean_env(), capture_output=True, timeout=30)
    assert question.returncode == 0, f"make still considers the venv out of date: {question.stdout!r} {question.stderr!r}"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_NAMES and not k.startswith(SCRUBBED_PREFIXES)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(params=defaults.RUNTIMES)
def make_run(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeRun]:
    """``make run``, and ``DEVHOST_RUNTIME=worker make run`` (the relay through the Functions Python worker)."""
    clone = fresh_clone(tmp_path / "clone")
    finish_setup(clone, project_venv())
    port, emulator_port, keyvault_port = free_port(), free_port(), free_port()
    runtime = {} if request.param == "in-process" else {"DEVHOST_RUNTIME": request.param}
    env = clean_env(PORT=str(port), EMULATOR_PORT=str(emulator_port), EMULATOR_KEYVAULT_PORT=str(keyvault_port), **runtime)
    log_path = tmp_path / "make-run.log"
    with open(log_path, "wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(
            ["make", "run"], cwd=clone, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            stack = Stack(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{emulator_port}", log_path, request.param)
            yield MakeRun(clone, proc, started, stack)
        finally:
            stop_process_group(proc)


def test_make_run_on_a_fresh_clone_serves_healthz_and_a_completion_within_a_minute(make_run: MakeRun) -> None:
    stack = make_run.stack
    try:
        wait_for_http(f"{stack.api}/healthz", timeout=BUDGET_S - (time.monotonic() - make_run.started), proc=make_run.proc)
        with urllib.request.urlopen(f"{stack.api}/healthz", timeout=5) as resp:
            assert resp.status == 200, f"healthz answered {resp.status}"

        token = stack.token()
        oid = claims_of(token)["oid"]
        sdk = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=token, max_retries=0, timeout=20)
        completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
        answer = completion.choices[0].message.content
        elapsed = time.monotonic() - make_run.started

        assert answer, f"empty completion: {completion!r}"
        assert elapsed < BUDGET_S, f"make run took {elapsed:.1f}s to the first completion (budget {BUDGET_S:.0f}s)"
        chats = [r for r in stack.requests() if r.get("user_security_context") is not None]
        assert len(chats) == 1, f"the emulator recorded {len(chats)} requests with a user_security_context"
        context = chats[0]["user_security_context"]
        assert context["source_ip"] == "127.0.0.1"
        assert context["end_user_id"] == oid
        # The clone's own code ran (its devhost writes the emulator CA under the clone's .devhost/).
        assert (make_run.clone / ".devhost" / "emulator-ca.pem").is_file()
        with urllib.request.urlopen(f"{stack.base_url}/", timeout=5) as resp:
            assert resp.status == 200 and resp.headers.get_content_type() == "text/html", "the sample SPA is not served"
        if stack.runtime == "worker":
            assert "through the Python worker http://127.0.0.1:" in make_run.output()

        blocked = subprocess.run(
            [sys.executable, "-m", "ops.blocklist_admin", "--azurite", "block", "--oid", oid, "--reason", "test", "--ttl", "10m"],
            cwd=make_run.clone, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert blocked.returncode == 0, blocked.stderr
        deadline = time.monotonic() + 30
        while True:
            try:
                sdk.models.list()
            except openai.PermissionDeniedError as refused:
                assert refused.code == "user_blocked"
                break
            assert time.monotonic() < deadline, "make run's relay did not enforce the block within 30 s"
            time.sleep(0.25)
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__}: {exc}\n--- make run output ---\n{make_run.output()}")
