"""shared/blocklist_admin.py: only the old entry point of the block list command, which names the new one and is never deployed."""

from __future__ import annotations

import subprocess
import sys

from tests.support.servers import ROOT


def test_the_old_entry_point_names_the_new_command_in_one_line() -> None:
    old = subprocess.run(
        [sys.executable, "-m", "shared.blocklist_admin", "--azurite", "list"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert (old.returncode, old.stdout) == (1, "")
    assert old.stderr.splitlines() == ["the block list command moved: run python -m ops.blocklist_admin (docs/blocklist.md)"]


def test_neither_the_command_nor_its_old_entry_point_is_deployed() -> None:
    ignored = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    assert "ops" in ignored and "shared/blocklist_admin.py" in ignored
