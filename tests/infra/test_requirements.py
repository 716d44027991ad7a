"""requirements.txt (what Azure installs) resolves on each Python the app supports, with that Python's Functions packages.

Each resolution is pip's own, run by the interpreter of that version (environment markers are evaluated by the
interpreter that runs pip), as a dry run against PyPI: nothing is installed.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.bicep import ROOT

RESOLVE_TIMEOUT_S = 240
REQUIREMENTS = ROOT / "requirements.txt"


def interpreter(version: str) -> str:
    found = subprocess.run(["bash", "scripts/find-python.sh", version], cwd=ROOT, capture_output=True, text=True, timeout=30)
    if found.returncode != 0:
        pytest.skip(found.stderr.strip())
    return found.stdout.strip()


def resolve(python: str, report: Path) -> dict[str, str]:
    """Package name -> version that pip would install from requirements.txt with ``python``."""
    command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--quiet"]
    result = subprocess.run(
        [*command, "--report", str(report), "-r", str(REQUIREMENTS)], cwd=ROOT, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installs}


def pinned_runtime() -> str:
    found = re.search(r"^azure-functions-runtime==([\w.]+)\s*;", REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, "requirements.txt pins azure-functions-runtime for Python 3.13+"
    return found.group(1)


@pytest.mark.timeout(RESOLVE_TIMEOUT_S + 60)
@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_requirements_resolve_with_the_functions_packages_of_each_python(version: str, tmp_path: Path) -> None:
    resolved = resolve(interpreter(version), tmp_path / "report.json")
    for name in ("azurefunctions-extensions-http-fastapi", "azure-identity", "azure-keyvault-secrets", "aiohttp"):
        assert name in resolved, f"{name} missing on Python {version}"
    functions_major = resolved["azure-functions"].split(".")[0]
    if version == "3.13":
        assert functions_major == "2"
        assert resolved["azure-functions-runtime"] == pinned_runtime()
    else:
        assert functions_major == "1"
        assert "azure-functions-runtime" not in resolved


def test_the_worker_library_the_tests_drive_is_the_one_deployed() -> None:
    if sys.version_info < (3, 13):
        pytest.skip("the worker library is part of the app from Python 3.13")
    assert importlib.metadata.version("azure-functions-runtime") == pinned_runtime()
