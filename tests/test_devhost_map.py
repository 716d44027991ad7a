"""docs/devhost.md names every module of devhost/ and bench/, and nothing that is not there.

Left out, as the map says: package ``__init__.py`` files and the FunctionRpc modules ``make venv``
generates into ``devhost/functions_host/generated/``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "docs" / "devhost.md"
_ROW = re.compile(r"^\| `((?:devhost|bench)/[\w/]+\.py)` \|", re.MULTILINE)


def modules() -> set[str]:
    found = set()
    for package in ("devhost", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT)
            if path.name != "__init__.py" and "generated" not in relative.parts and "node_modules" not in relative.parts:
                found.add(relative.as_posix())
    return found


def mapped(text: str) -> set[str]:
    """The files the map's tables have a row for (first column)."""
    return set(_ROW.findall(text))


def test_every_devhost_and_bench_module_has_a_row_in_the_map() -> None:
    assert modules() - mapped(MAP.read_text(encoding="utf-8")) == set()


def test_every_row_of_the_map_names_a_file_that_exists() -> None:
    assert mapped(MAP.read_text(encoding="utf-8")) - modules() == set()


def test_a_module_left_out_of_the_map_is_named() -> None:
    text = MAP.read_text(encoding="utf-8")
    without = "\n".join(line for line in text.splitlines() if not line.startswith("| `devhost/jwt.py` |"))
    assert (modules() - mapped(without)) - (modules() - mapped(text)) == {"devhost/jwt.py"}
