"""README.md's layout: tests/unit holds a file per shared/ module, named after it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_shared_module_has_its_unit_test_file() -> None:
    modules = {path.stem for path in (ROOT / "shared").glob("*.py") if path.name != "__init__.py"}
    tested = {path.stem.removeprefix("test_") for path in (ROOT / "tests" / "unit").glob("test_*.py")}
    assert sorted(modules - tested) == []
