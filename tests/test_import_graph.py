"""The project's modules import each other without a cycle, and only in the directions the project allows.

Imports are counted wherever they stand in a file, at module level or inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.servers import ROOT

PACKAGES = ("function_app", "shared", "devhost", "bench", "ops", "tests")
# The relay: what is deployed.
RELAY = ("function_app", "shared")
# What each part may import of the others (its own modules always; tests, anything). The relay depends on nothing
# around it; the dev host, the benchmark and the operators' commands never on the tests; none on the operators'.
MAY_IMPORT = {
    "function_app": {"shared"},
    "shared": set(),
    "devhost": {"function_app", "shared"},  # of these, only what DEVHOST_HOSTS_THE_RELAY_WITH grants
    "bench": {"function_app", "shared", "devhost"},
    "ops": {"shared", "devhost"},  # of devhost, only what OPS_USES_OF_DEVHOST grants
}
# The dev host imports of the relay only what hosting it needs, in the one module that hosts it.
DEVHOST_HOSTS_THE_RELAY_WITH = {
    "devhost.__main__": {
        "function_app": "the relay's functions, served in-process as the Functions host serves them",
        "shared.config": "the relay's own reading and checks of the control settings, to know whether to start Azurite",
        "shared.logs": "the Azure SDK loggers quietened as the relay quietens them in Azure",
    },
}
# A stand-in for a part of Azure imports nothing of the relay: it must not agree with the code in front of it by construction.
STAND_INS = (
    "devhost.appservice_auth",  # App Service Authentication (Easy Auth) and its dev tokens
    "devhost.jwt",
    "devhost.appservice",  # App Service's front end
    "devhost.request_limits",  # the platform's request limits
    "devhost.server",  # the Functions host's web server (Kestrel) timeouts
    "devhost.host_app",
    "devhost.azurite",  # Azure Table storage
    "devhost.emulator",  # Azure OpenAI, the managed identity endpoint, Key Vault
    "devhost.functions_host",  # the Functions host
)
# The operators' commands use the dev host for one thing: finding the Azurite that `make run` started (--azurite).
OPS_USES_OF_DEVHOST = {"devhost.azurite"}


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


def part_of(module: str) -> str:
    return module.split(".")[0]


def within(module: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def boundary_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs against MAY_IMPORT and the grants above, as ``importer -> imported``."""
    found = []
    for importer, imported in sorted(graph.items()):
        part = part_of(importer)
        if part == "tests":
            continue
        # Importing a.b also imports the package a: a package counts only when imported for itself.
        direct = {target for target in imported if not any(other.startswith(target + ".") for other in imported)}
        for target in sorted(direct):
            other = part_of(target)
            if other == part:
                continue
            allowed = other in MAY_IMPORT[part]
            if part == "devhost" and other in RELAY:
                allowed = target in DEVHOST_HOSTS_THE_RELAY_WITH.get(importer, {}) and not within(importer, STAND_INS)
            if part == "ops" and other == "devhost":
                allowed = within(target, OPS_USES_OF_DEVHOST)
            if not allowed:
                found.append(f"{importer} -> {target}")
    return found


def test_no_import_cycle_among_the_projects_modules() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "shared.relay" in graph and "devhost.emulator.state" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = import_graph()
    graph["shared.header_checks"] = graph["shared.header_checks"] | {"shared.relay"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and "shared.header_checks" in cycle


def test_each_part_imports_only_what_its_boundary_allows() -> None:
    graph = import_graph()
    assert "ops.blocklist_admin" in graph and "bench.procs" in graph and "devhost.appservice_auth" in graph
    assert boundary_violations(graph) == []


@pytest.mark.parametrize(
    ("importer", "planted"),
    [
        ("shared.config", "devhost.defaults"),
        ("shared.relay", "ops.blocklist_admin"),
        ("function_app", "bench.stats"),
        ("devhost.appservice_auth", "shared.header_checks"),  # a stand-in validating with the relay's own checks
        ("devhost.__main__", "shared.relay"),  # more of the relay than hosting it needs
        ("devhost.emulator.state", "function_app"),
        ("devhost.host_app", "tests.support.servers"),
        ("bench.procs", "tests.support.servers"),
        ("bench.run", "ops.blocklist_admin"),
        ("ops.blocklist_admin", "devhost.emulator.state"),
        ("ops.blocklist_settings", "tests.support.servers"),
    ],
)
def test_the_boundary_checker_catches_a_planted_violation(importer: str, planted: str) -> None:
    graph = import_graph()
    assert planted in graph
    graph[importer] = graph[importer] | {planted}
    assert boundary_violations(graph) == [f"{importer} -> {planted}"]
