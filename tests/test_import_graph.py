"""The project's modules import each other without a cycle, at module level or inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.servers import ROOT

PACKAGES = ("function_app", "shared", "devhost", "bench", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [ROOT / "function_app.py", *(p for package in PACKAGES[1:] for p in (ROOT / package).rglob("*.py"))]
    return {module_name(path): path for path in files if "node_modules" not in path.parts}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, wherever in the file the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` also imports ``a`` and ``a.b``; ``from a import b`` may name module ``a.b``.
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    found.discard(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    # A package's __init__ is imported with each of its modules, but importing the package does not import them.
    return {name: imports_of(path, name, known) - {p for p in known if name.startswith(p + ".")} for name, path in modules.items()}


def test_no_import_cycle_among_the_projects_modules() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "shared.relay" in graph and "devhost.emulator.state" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["shared.header_checks"] = graph["shared.header_checks"] | {"shared.relay"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and "shared.header_checks" in cycle
