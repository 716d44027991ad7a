"""The deployment scripts: valid bash (shellcheck-clean where shellcheck is
installed), and the azd hook maps an environment to its parameter file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra import bicep

SCRIPTS = [*sorted((bicep.ROOT / "infra" / "scripts").glob("*.sh")), bicep.ROOT / "scripts" / "checkov.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_is_valid_bash(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout


def _run_hook(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # A copy of the tree the hook touches, so the real infra/ stays untouched.
    root = tmp_path / "repo"
    shutil.copytree(bicep.ROOT / "infra", root / "infra")
    clean = {k: v for k, v in os.environ.items() if k not in ("RELAY_APP", "AZURE_ENV_NAME")}
    return subprocess.run(
        ["bash", str(root / "infra" / "scripts" / "select-app-params.sh")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("app", [p.stem for p in bicep.example_param_files()])
def test_azd_environment_selects_its_parameter_file(tmp_path: Path, app: str) -> None:
    result = _run_hook(tmp_path, AZURE_ENV_NAME=app)
    assert result.returncode == 0, result.stderr
    generated = tmp_path / "repo" / "infra" / "bicep" / "main.bicepparam"
    params = bicep.parse_bicepparam(generated)
    assert params.using == (tmp_path / "repo" / "infra" / "bicep" / "main.bicep").resolve()
    assert params.values == bicep.parse_bicepparam(bicep.APPS_DIR / f"{app}.bicepparam").values


def test_relay_app_overrides_the_environment_name(tmp_path: Path) -> None:
    app = bicep.example_param_files()[0].stem
    assert _run_hook(tmp_path, AZURE_ENV_NAME="some-env", RELAY_APP=app).returncode == 0


def test_unknown_app_fails_clearly(tmp_path: Path) -> None:
    result = _run_hook(tmp_path, AZURE_ENV_NAME="no-such-app")
    assert result.returncode != 0
    assert "no parameter file" in result.stderr


def test_generated_parameter_file_is_gitignored() -> None:
    assert "main.bicepparam" in (bicep.BICEP_DIR / ".gitignore").read_text().split()
