"""Helpers for the infrastructure tests: parse Bicep with pycep and evaluate
the small subset of Bicep expressions our templates use.

pycep's output is plain JSON-like data: ``{"parameters", "variables",
"resources", "modules", "outputs"}``. Expressions are nested dicts
(``{"function": {"type", "parameters"}}``, ``{"operator": {"type",
"operands"}}``); identifiers *and* string literals are both plain ``str``, so
:class:`Evaluator` treats a string as a reference only when it names a symbol
in scope. String interpolations stay raw (``'x-${name}'``); their inner
expressions are parsed with pycep on demand.

pycep 0.7 has no grammar for ``.bicepparam`` files: :func:`parse_bicepparam`
checks the ``using`` line itself and parses each ``param name = <expr>`` as
the Bicep expression it is (by rewriting it to ``var name = <expr>``).

Known pycep quirks: ``a == b ? x : y`` parses as ``a == (b ? x : y)``, ``!a || b``
as ``!(a || b)`` and ``a == b || c`` as ``a == (b || c)``; the templates
parenthesise such conditions and negations (checkov uses pycep as well).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MAIN = BICEP_DIR / "main.bicep"
MODULES_DIR = BICEP_DIR / "modules"
APPS_DIR = BICEP_DIR / "apps"

_USING = re.compile(r"^\s*using\s+'([^']+)'\s*$", re.MULTILINE)
_PARAM_LINE = re.compile(r"^(\s*)param(\s+[A-Za-z_][A-Za-z0-9_]*\s*=)", re.MULTILINE)
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Node = Any


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


def bicepparam_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicepparam"))


def example_param_files() -> list[Path]:
    return sorted(APPS_DIR.glob("*.bicepparam"))


@functools.cache
def _parse_text(text: str) -> dict[str, Any]:
    result: dict[str, Any] = dict(BicepParser().parse(text=text))
    return result


def parse_bicep(path: Path) -> dict[str, Any]:
    return _parse_text(path.read_text(encoding="utf-8"))


class BicepParam:
    """A parsed ``.bicepparam`` file: its ``using`` target and its raw values."""

    def __init__(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        usings = _USING.findall(text)
        if len(usings) != 1:
            raise ValueError(f"{path}: expected exactly one using statement, found {len(usings)}")
        self.path = path
        self.using = (path.parent / usings[0]).resolve()
        body = _USING.sub("", text)
        body = _PARAM_LINE.sub(r"\1var\2", body)
        parsed = _parse_text(body)
        self.values: dict[str, Node] = {name: var["value"] for name, var in parsed.get("variables", {}).items()}


def parse_bicepparam(path: Path) -> BicepParam:
    return BicepParam(path)


def module_paths(path: Path) -> Iterator[tuple[str, Path]]:
    """(symbolic name, resolved file) of every local module a template uses."""
    for name, module in parse_bicep(path).get("modules", {}).items():
        if module.get("type") == "local":
            yield name, (path.parent / module["detail"]["path"]).resolve()


def module_config(module: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a module (or resource) declaration, whether it has an ``if`` or not."""
    config = module["config"]
    if "condition" in config:
        return dict(config["config"], condition=config["condition"])
    return dict(config)


def resources(parsed: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    """Resources of one type (``Microsoft.Web/sites``), keyed by symbolic name."""
    found = {}
    for name, resource in parsed.get("resources", {}).items():
        if resource["type"].lower() == type_.lower():
            found[name] = module_config(resource)
    return found


def one_resource(parsed: Mapping[str, Any], type_: str, name: str | None = None) -> dict[str, Any]:
    found = resources(parsed, type_)
    if name is not None:
        found = {k: v for k, v in found.items() if v.get("name") == name}
    assert len(found) == 1, f"expected one {type_} {name or ''}, found {sorted(found)}"
    return next(iter(found.values()))


def walk(node: Node) -> Iterator[Node]:
    """Every sub-node of a parsed value, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def functions_called(node: Node) -> set[str]:
    names = set()
    for sub in walk(node):
        if isinstance(sub, dict):
            if "function" in sub and isinstance(sub["function"], dict):
                names.add(str(sub["function"].get("type", "")))
            if "function_accessor" in sub:
                names.add(str(sub["function_accessor"].get("func_name", "list")))
        if isinstance(sub, str):
            names.update(re.findall(r"\b(list[A-Za-z]*|getSecret)\(", sub))
    return names


def object_key(key: str) -> str:
    """An object key as Bicep means it: pycep keeps the quotes of a quoted key (``'x-azure-fdid'``)."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def required_params(parsed: Mapping[str, Any]) -> set[str]:
    return {name for name, p in parsed.get("parameters", {}).items() if p.get("default") is None}


def decorator(param: Mapping[str, Any], kind: str) -> Any:
    for dec in param.get("decorators", []):
        if dec.get("type") == kind:
            return dec.get("argument")
    return None


# ---- evaluation --------------------------------------------------------------------


class Unresolved(LookupError):
    """An expression needs a value the caller did not provide (e.g. a module output)."""


class BicepFail(RuntimeError):
    """ARM would stop the deployment here: the template reads an object property that does not exist."""


PLATFORM: dict[str, dict[str, Any]] = {
    "environment": {
        "name": "AzureCloud",
        "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"},
        "suffixes": {"keyvaultDns": ".vault.azure.net", "storage": "core.windows.net"},
    },
    "subscription": {
        "id": "/subscriptions/00000000-0000-4000-8000-0000000000ff",
        "subscriptionId": "00000000-0000-4000-8000-0000000000ff",
        "tenantId": "00000000-0000-4000-8000-0000000000fe",
    },
    "tenant": {"tenantId": "00000000-0000-4000-8000-0000000000fe"},
}


def _to_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Evaluator:
    """Evaluates parsed Bicep expressions against known symbol values.

    ``symbols`` maps names to *raw* (unevaluated) expressions: parameters
    (value or default) and variables; they are evaluated lazily in this scope.
    ``externals`` maps dotted paths that the evaluator cannot know
    (``identity.outputs.clientId``) to example values.
    """

    def __init__(self, symbols: Mapping[str, Node], externals: Mapping[str, Any] | None = None) -> None:
        self.symbols = dict(symbols)
        self.externals = dict(externals or {})
        self._cache: dict[str, Any] = {}

    @classmethod
    def for_template(
        cls,
        parsed: Mapping[str, Any],
        values: Mapping[str, Node],
        externals: Mapping[str, Any] | None = None,
        *,
        evaluated: Mapping[str, Any] | None = None,
    ) -> Evaluator:
        """Scope of a template: its params (given raw ``values`` or already
        ``evaluated`` ones, else defaults) and its variables."""
        symbols: dict[str, Node] = {}
        for name, param in parsed.get("parameters", {}).items():
            if name in values:
                symbols[name] = values[name]
            elif param.get("default") is not None:
                symbols[name] = param["default"]
        for name, var in parsed.get("variables", {}).items():
            symbols[name] = var["value"]
        evaluator = cls(symbols, externals)
        for name, value in (evaluated or {}).items():
            evaluator._cache[name] = value
        return evaluator

    def lookup(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        if name not in self.symbols:
            raise Unresolved(name)
        value = self.eval(self.symbols[name])
        self._cache[name] = value
        return value

    def knows(self, name: str) -> bool:
        return name in self._cache or name in self.symbols

    def eval(self, node: Node) -> Any:
        if node is None or isinstance(node, (bool, int, float)):
            return node
        if isinstance(node, str):
            if IDENT.match(node) and self.knows(node):
                return self.lookup(node)
            if "${" in node:
                return self._interpolate(node)
            return node
        if isinstance(node, list):
            return [self.eval(item) for item in node]
        if isinstance(node, dict):
            if set(node) == {"function"}:
                return self._function(node["function"])
            if set(node) == {"operator"}:
                return self._operator(node["operator"])
            if "loop_type" in node:
                return self._loop(node)
            return {self._key(key): self.eval(value) for key, value in node.items()}
        raise TypeError(f"cannot evaluate {node!r}")

    # -- strings

    def _key(self, key: str) -> str:
        name = object_key(key)
        return self._interpolate(name) if "${" in name else name

    def _interpolate(self, text: str) -> str:
        out, i = [], 0
        while True:
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:start])
            depth, j = 1, start + 2
            while depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            inner = text[start + 2 : j - 1]
            expr = _parse_text(f"var x = {inner}\n")["variables"]["x"]["value"]
            if isinstance(expr, str) and IDENT.match(expr) and not self.knows(expr):
                # A bare name between ${ } is always a reference (a literal would be quoted): an undeclared one
                # is a Bicep compile error, not text.
                raise Unresolved(expr)
            out.append(_to_str(self.eval(expr)))
            i = j

    # -- operators

    def _path(self, node: Node) -> list[Node]:
        if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
            operands = node["operator"]["operands"]
            return [operands["operand_1"], *self._path(operands["operand_2"])]
        return [node]

    def _operator(self, op: Mapping[str, Any]) -> Any:
        kind, operands = op["type"], op.get("operands", {})
        if kind == "property_accessor":
            base, *attrs = self._path({"operator": op})
            if isinstance(base, str) and IDENT.match(base) and not self.knows(base):
                names = [base, *map(str, attrs)]
                # The longest known prefix (``vault.properties``), then its attributes.
                known = next((n for n in range(len(names), 0, -1) if ".".join(names[:n]) in self.externals), 0)
                if not known:
                    raise Unresolved(".".join(names))
                value, attrs = self.externals[".".join(names[:known])], names[known:]
            else:
                value = self.eval(base)
            for attr in attrs:
                if isinstance(value, dict) and attr not in value:
                    raise BicepFail(
                        f"The language expression property '{attr}' doesn't exist, available properties are '{', '.join(value)}'."
                    )
                value = value[attr]
            return value
        if kind == "index_accessor":
            base, key = self.eval(operands["operand_1"]), self.eval(operands["operand_2"])
            if isinstance(base, dict) and key not in base:
                # What ARM does with a missing property: the deployment stops.
                raise BicepFail(f"The language expression property '{key}' doesn't exist, available properties are '{', '.join(base)}'.")
            return base[key]
        if kind == "conditional":
            return self.eval(operands["true_value"] if self.eval(operands["condition"]) else operands["false_value"])
        if kind == "not":
            return not self.eval(operands["bool_value"])
        a, b = (self.eval(v) for v in operands.values())
        binary: dict[str, Callable[[Any, Any], Any]] = {
            "equals": lambda x, y: x == y,
            "not_equals": lambda x, y: x != y,
            "and": lambda x, y: bool(x and y),
            "or": lambda x, y: bool(x or y),
            "greater_than": lambda x, y: x > y,
            "greater_than_or_equals": lambda x, y: x >= y,
            "less_than": lambda x, y: x < y,
            "less_than_or_equals": lambda x, y: x <= y,
            "coalesce": lambda x, y: x if x is not None else y,
            "add": lambda x, y: x + y,
            "multiply": lambda x, y: x * y,
        }
        if kind not in binary:
            raise NotImplementedError(f"operator {kind}")
        return binary[kind](a, b)

    # -- functions

    def _loop(self, node: Mapping[str, Any]) -> list[Any]:
        """A ``[for item in items: ...]`` or ``[for (item, i) in items: ...]`` expression."""
        detail = node["loop_type"]["detail"]
        results = []
        for index, item in enumerate(self.eval(detail["array_name"])):
            scope = self._bind(detail["item_name"], item)
            if detail.get("index_name"):
                scope = scope._bind(detail["index_name"], index)
            if node.get("condition") is None or scope.eval(node["condition"]):
                results.append(scope.eval(node["config"]))
        return results

    def _bind(self, name: str, value: Any) -> Evaluator:
        """This scope plus one lambda or loop variable."""
        inner = Evaluator(self.symbols, self.externals)
        inner._cache = {**self._cache, name: value}
        return inner

    def _function(self, fn: Mapping[str, Any]) -> Any:
        name = str(fn["type"]).lower().replace("_", "")
        if name == "filter":
            items = self.eval(fn["parameters"]["input_array"])
            lambda_ = fn["parameters"]["expression"]["detail"]
            return [item for item in items if self._bind(lambda_["var_1"], item).eval(lambda_["expression"])]
        args = [self.eval(arg) for arg in (fn.get("parameters") or {}).values()]
        if name in PLATFORM:
            return PLATFORM[name]
        if name == "any":
            return args[0]
        if name == "join":
            return args[1].join(_to_str(a) for a in args[0])
        if name == "string":
            return _to_str(args[0])
        if name == "concat":
            if all(isinstance(a, list) for a in args):
                return [item for a in args for item in a]
            return "".join(_to_str(a) for a in args)
        if name == "union":
            if all(isinstance(a, dict) for a in args):
                merged: dict[str, Any] = {}
                for a in args:
                    merged.update(a)
                return merged
            return list(dict.fromkeys(item for a in args for item in a))
        if name == "empty":
            return not args[0]
        if name == "contains":
            return args[1] in args[0]
        if name == "startswith":
            return args[0].lower().startswith(args[1].lower())
        if name == "first":
            return args[0][0]
        if name == "last":
            return args[0][-1]
        if name == "split":
            return args[0].split(args[1])
        if name == "take":
            return args[0][: args[1]]
        if name == "tolower":
            return args[0].lower()
        if name == "toupper":
            return args[0].upper()
        if name in ("uniquestring", "guid"):
            return "exampletoken0"
        if name == "readenvironmentvariable":
            if len(args) > 1:
                return args[1]
            raise Unresolved(f"readEnvironmentVariable({args[0]})")
        if name == "subscriptionresourceid":
            named = {k: self.eval(v) for k, v in fn["parameters"].items() if v is not None}
            names = [v for k, v in named.items() if k.startswith("resource_name")]
            return f"{PLATFORM['subscription']['id']}/providers/{named['resource_type']}/{'/'.join(names)}"
        raise NotImplementedError(f"function {fn['type']}")


# ---- the relay as deployed with one example parameter file ----------------------------

FUNCTION_APP = MODULES_DIR / "functionapp.bicep"

#: Example values for what only a real deployment knows (module outputs).
EXAMPLE_OUTPUTS: dict[str, Any] = {
    "identity.outputs.id": (
        "/subscriptions/00000000-0000-4000-8000-0000000000ff/resourceGroups/rg-example"
        "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-example"
    ),
    "identity.outputs.clientId": "3e1f7a52-0000-4000-8000-0000000000c1",
    "identity.outputs.principalId": "3e1f7a52-0000-4000-8000-0000000000c2",
    "storage.outputs.blobEndpoint": "https://stexampletoken0.blob.core.windows.net/",
    "storage.outputs.queueEndpoint": "https://stexampletoken0.queue.core.windows.net/",
    "storage.outputs.tableEndpoint": "https://stexampletoken0.table.core.windows.net/",
    "storage.outputs.deploymentContainerUrl": "https://stexampletoken0.blob.core.windows.net/app-package-example",
    "relayTables.outputs.blocklistTableName": "relayblocklist",
    "relayTables.outputs.budgetTableName": "relaybudget",
    "foundryProject.outputs.endpoint": "https://ais-example.services.ai.azure.com/api/projects/relay",
    "responsesTable.outputs.tableName": "relayresponses",
    "monitoring.outputs.connectionString": (
        "InstrumentationKey=3e1f7a52-0000-4000-8000-0000000000c3;"
        "IngestionEndpoint=https://swedencentral-0.in.applicationinsights.azure.com/"
    ),
    "monitoring.outputs.workspaceId": (
        "/subscriptions/00000000-0000-4000-8000-0000000000ff/resourceGroups/rg-example"
        "/providers/Microsoft.OperationalInsights/workspaces/log-example"
    ),
    "monitoring.outputs.workspaceName": "log-example",
    "defenderBlocklist.outputs.workflowId": (
        "/subscriptions/00000000-0000-4000-8000-0000000000ff/resourceGroups/rg-example"
        "/providers/Microsoft.Logic/workflows/logic-blocklist-example"
    ),
    "relay.outputs.url": "https://func-example.azurewebsites.net",
    "relay.outputs.name": "func-example",
    "rg.name": "rg-example",
}

#: The tenant the example deployments run in (what ``tenant()`` returns here).
DEPLOYMENT_TENANT: str = PLATFORM["tenant"]["tenantId"]

#: Overrides that turn the browser login flow on: main.bicep accepts it only with the app registrations in the
#: deployment's tenant, where the relay identity its federated credential trusts is created.
LOGIN_FLOW_ON: dict[str, Node] = {"enableLoginFlow": True, "tenantId": DEPLOYMENT_TENANT}


def main_scope(param_file: Path, overrides: Mapping[str, Node] | None = None) -> Evaluator:
    """main.bicep evaluated with one parameter file (and example module outputs).

    ``overrides`` replaces or adds parameter values (raw, like the file's) to
    try variants of an example without writing a parameter file.
    """
    params = parse_bicepparam(param_file)
    return Evaluator.for_template(parse_bicep(MAIN), {**params.values, **(overrides or {})}, EXAMPLE_OUTPUTS)


def module_scope(param_file: Path, module_name: str, overrides: Mapping[str, Node] | None = None) -> tuple[dict[str, Any], Evaluator]:
    """A module of main.bicep, with the arguments main passes it for this app."""
    main = parse_bicep(MAIN)
    outer = main_scope(param_file, overrides)
    module = main["modules"][module_name]
    config = module_config(module)
    parsed = parse_bicep((MAIN.parent / module["detail"]["path"]).resolve())
    args = {name: outer.eval(value) for name, value in config.get("params", {}).items()}
    return parsed, Evaluator.for_template(parsed, {}, evaluated=args)


def relay_app_settings(param_file: Path, overrides: Mapping[str, Node] | None = None) -> dict[str, str]:
    """The function app's app settings, as deployed with this parameter file (and ``overrides`` of its parameters)."""
    parsed, scope = module_scope(param_file, "relay", overrides)
    site = one_resource(parsed, "Microsoft.Web/sites")
    settings = scope.eval(site["properties"]["siteConfig"]["appSettings"])
    names = [s["name"] for s in settings]
    assert len(names) == len(set(names)), f"duplicate app settings: {names}"
    return {s["name"]: _to_str(s["value"]) for s in settings}
