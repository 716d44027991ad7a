"""Type-check the resources of a Bicep template against Azure's own resource
types, the records the Bicep compiler checks against (vendored under
``azure-types/``, see its README).

For every resource declaration the checker looks up ``<type>@<api-version>``
and walks the body with the type records, reporting:

- an unknown resource type or API version, or one that cannot be deployed
  (or, for ``existing``, read) at the template's scope;
- unknown properties (with the closest known name), properties spelled with
  another case, read-only properties written, missing required ones;
- values outside a closed enum (a union of string literals only), wrong scalar
  types (string, int, bool, array, object), strings or integers outside the
  type's length or value bounds, unknown discriminator values.

Values are taken from the parsed template (``bicep.parse_bicep``). A variable is
followed to its value; a parameter counts as its declared type, and its
``@allowed`` values are each checked; literals, objects, arrays and ``for``
loops are checked element by element; both branches of ``c ? a : b`` and every
argument of ``concat``/``union`` are checked. Everything only known at deploy
time (module outputs, resource properties, most function results, loop and
lambda variables) is skipped; the few functions whose result type is fixed
(``guid``, ``length``, ``contains``, ...) count as that type. ``any(...)`` turns
checking off, as it does in Bicep.

pycep gives identifiers and string literals both as ``str``: a string counts as
a reference only when it names a parameter, variable, resource, module or loop
variable of the template.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra import bicep

TYPES_DIR = Path(__file__).resolve().parent / "azure-types"

# ObjectType property flags (bicep-types).
REQUIRED = 1
READ_ONLY = 2

# ResourceType readableScopes / writableScopes bits (bicep-types ScopeType).
SCOPE_BITS = {"tenant": 1, "managementGroup": 2, "subscription": 4, "resourceGroup": 8}
EXTENSION = 16

#: Keys of a resource body that are Bicep's, not the resource type's.
BICEP_KEYS = frozenset({"parent", "scope", "dependsOn", "depends_on"})

_STRING_FUNCTIONS = frozenset(
    {
        "base64", "base64tostring", "datauri", "datauritostring", "extensionresourceid", "format", "guid", "join",
        "loadfileasbase64", "loadtextcontent", "managementgroupresourceid", "newguid", "padleft", "replace",
        "resourceid", "string", "subscriptionresourceid", "substring", "tenantresourceid", "tolower", "toupper",
        "trim", "uniquestring", "uri", "uricomponent", "uricomponenttostring", "utcnow",
    }
)  # fmt: skip
_INT_FUNCTIONS = frozenset({"int", "indexof", "lastindexof", "length"})
_BOOL_FUNCTIONS = frozenset({"bool", "contains", "empty", "endswith", "startswith"})
_BOOL_OPERATORS = frozenset(
    {
        "and", "or", "not", "equals", "not_equals", "equals_case_insens", "not_equals_case_insens",
        "greater_than", "greater_than_or_equals", "less_than", "less_than_or_equals",
    }
)  # fmt: skip
_INT_OPERATORS = frozenset({"add", "substract", "multiply", "divide", "modulo", "minus"})
_PARAM_KINDS = frozenset({"string", "int", "bool", "array", "object"})


@dataclass(frozen=True)
class Problem:
    """One finding: where (file and resource), the property path, what is wrong."""

    where: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.where} {self.path or '(resource)'}: {self.message}"


class TypeFile:
    """One vendored ``types.json``: a list of records linked by ``#/<index>``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))

    def at(self, ref: Mapping[str, str]) -> dict[str, Any]:
        return self.records[int(ref["$ref"].rsplit("/", 1)[1])]


@dataclass(frozen=True)
class ResourceType:
    name: str
    file: TypeFile
    body: dict[str, Any]
    readable_scopes: int
    writable_scopes: int


class TypeIndex:
    """Every resource type in the vendored files, by ``Type@version`` (case-insensitive)."""

    def __init__(self, root: Path = TYPES_DIR) -> None:
        self.files = sorted(root.glob("*/*/*/types.json"))
        self._types: dict[str, ResourceType] = {}
        for path in self.files:
            type_file = TypeFile(path)
            for record in type_file.records:
                if record["$type"] == "ResourceType":
                    self._types.setdefault(
                        record["name"].lower(),
                        ResourceType(
                            record["name"],
                            type_file,
                            type_file.at(record["body"]),
                            record.get("readableScopes", 0),
                            record.get("writableScopes", 0),
                        ),
                    )

    def lookup(self, type_: str, api_version: str) -> ResourceType | None:
        return self._types.get(f"{type_}@{api_version}".lower())

    def versions(self, type_: str) -> list[str]:
        prefix = f"{type_.lower()}@"
        return sorted(rt.name.split("@", 1)[1] for key, rt in self._types.items() if key.startswith(prefix))


@dataclass(frozen=True)
class Declared:
    """A value known only by its Bicep type (a parameter, a function result)."""

    kind: str
    allowed: tuple[Any, ...] | None = None
    origin: str = ""


_UNKNOWN = Declared("unknown")


@dataclass
class _Context:
    type_file: TypeFile
    where: str
    local_names: frozenset[str] = frozenset()
    problems: list[Problem] = field(default_factory=list)

    def report(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.where, path, message))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _function_name(fn: Mapping[str, Any]) -> str:
    return str(fn["type"]).lower().replace("_", "")


def _describe(type_file: TypeFile, type_: Mapping[str, Any]) -> str:
    kind = str(type_["$type"])
    if kind == "StringLiteralType":
        return repr(type_["value"])
    if kind == "UnionType":
        return " | ".join(_describe(type_file, type_file.at(e)) for e in type_["elements"])
    if kind == "ArrayType":
        return f"{_describe(type_file, type_file.at(type_['itemType']))}[]"
    if kind in ("ObjectType", "DiscriminatedObjectType"):
        return f"object ({type_.get('name', '')})"
    return kind.removesuffix("Type").lower()


class TemplateChecker:
    """Checks every resource of one parsed template."""

    def __init__(self, index: TypeIndex, path: Path, parsed: Mapping[str, Any]) -> None:
        self.index = index
        self.path = path
        self.resources: dict[str, dict[str, Any]] = dict(parsed.get("resources", {}))
        self.params: dict[str, dict[str, Any]] = dict(parsed.get("parameters", {}))
        self.variables: dict[str, Any] = {name: var["value"] for name, var in parsed.get("variables", {}).items()}
        self.opaque = set(self.resources) | set(parsed.get("modules", {}))
        self.target_scope: str = parsed.get("globals", {}).get("scope", {}).get("value", "resourceGroup")
        self.used_files: set[Path] = set()
        self._following: set[str] = set()

    # -- resources

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        for name, declaration in self.resources.items():
            problems.extend(self._resource(name, declaration))
        return problems

    def _resource(self, name: str, declaration: Mapping[str, Any]) -> list[Problem]:
        type_, version = declaration["type"], declaration["api_version"]
        where = f"{self.path.name}: {name} ({type_}@{version})"
        body, loop_names = _unwrap(declaration["config"])
        resource_type = self.index.lookup(type_, version)
        if resource_type is None:
            known = self.index.versions(type_)
            detail = f"vendored versions: {', '.join(known)}" if known else "no version of this type is vendored"
            return [Problem(where, "", f"unknown resource type or API version ({detail}; see {TYPES_DIR.name}/README.md)")]
        self.used_files.add(resource_type.file.path)
        context = _Context(resource_type.file, where, loop_names)
        scope_name, scope_bit = self._scope_of(name)
        existing = bool(declaration.get("existing"))
        allowed = resource_type.readable_scopes if existing else resource_type.writable_scopes
        if not allowed & scope_bit:
            verb = "read (existing)" if existing else "deployed"
            context.report("", f"cannot be {verb} at {scope_name} scope")
        if existing:
            return context.problems
        resource_body = {key: value for key, value in body.items() if key not in BICEP_KEYS}
        self._check(context, resource_type.body, resource_body, "")
        return context.problems

    def _scope_of(self, name: str) -> tuple[str, int]:
        body, _ = _unwrap(self.resources[name]["config"])
        scope, parent = body.get("scope"), body.get("parent")
        if isinstance(scope, str) and scope in self.resources:
            return "extension", EXTENSION
        if isinstance(scope, dict) and "function" in scope:
            function = _function_name(scope["function"])
            for scope_name, bit in SCOPE_BITS.items():
                if function == scope_name.lower():
                    return scope_name, bit
            return "extension", EXTENSION
        if isinstance(parent, str) and parent in self.resources:
            return self._scope_of(parent)
        return self.target_scope, SCOPE_BITS[self.target_scope]

    # -- values

    def _check(self, context: _Context, type_: Mapping[str, Any], node: Any, path: str, *, partial: bool = False) -> None:
        """Check one (raw, parsed) value against one type record."""
        if type_["$type"] == "AnyType" or node is None:
            return
        if isinstance(node, str) and bicep.IDENT.match(node):
            self._check_reference(context, type_, node, path)
            return
        if isinstance(node, dict) and set(node) == {"operator"}:
            self._check_operator(context, type_, node["operator"], path, partial=partial)
            return
        if isinstance(node, dict) and set(node) == {"function"}:
            self._check_function(context, type_, node["function"], path, partial=partial)
            return
        if isinstance(node, dict) and "loop_type" in node:
            self._check_loop(context, type_, node, path)
            return
        if isinstance(node, dict) and node.get("type") == "lambda_expression":
            return
        if isinstance(node, str) and "${" in node:
            self._match_declared(context, type_, Declared("string", origin="an interpolated string"), path)
            return
        self._match(context, type_, node, path, partial=partial)

    def _check_reference(self, context: _Context, type_: Mapping[str, Any], name: str, path: str) -> None:
        if name in context.local_names or name in self.opaque:
            return
        if name in self.variables:
            if name in self._following:
                return
            self._following.add(name)
            try:
                self._check(context, type_, self.variables[name], path)
            finally:
                self._following.discard(name)
            return
        if name in self.params:
            param = self.params[name]
            kind = param.get("type")
            allowed = bicep.decorator(param, "allowed")
            declared = Declared(
                kind if kind in _PARAM_KINDS else "unknown",
                tuple(allowed) if isinstance(allowed, list) else None,
                f"parameter {name}",
            )
            self._match_declared(context, type_, declared, path)
            return
        self._match(context, type_, name, path)

    def _check_operator(self, context: _Context, type_: Mapping[str, Any], op: Mapping[str, Any], path: str, *, partial: bool) -> None:
        kind, operands = op["type"], op.get("operands", {})
        if kind == "conditional":
            self._check(context, type_, operands["true_value"], path, partial=partial)
            self._check(context, type_, operands["false_value"], path, partial=partial)
        elif kind == "coalesce":
            for operand in operands.values():
                self._check(context, type_, operand, path, partial=partial)
        elif kind in _BOOL_OPERATORS:
            self._match_declared(context, type_, Declared("bool", origin=f"a '{kind}' expression"), path)
        elif kind in _INT_OPERATORS:
            self._match_declared(context, type_, Declared("int", origin=f"an '{kind}' expression"), path)

    def _check_function(self, context: _Context, type_: Mapping[str, Any], fn: Mapping[str, Any], path: str, *, partial: bool) -> None:
        name = _function_name(fn)
        args = [arg for arg in (fn.get("parameters") or {}).values() if arg is not None]
        if name in ("concat", "union") and type_["$type"] == "ArrayType":
            for arg in args:
                self._check(context, type_, arg, path)
        elif name == "union" and type_["$type"] in ("ObjectType", "DiscriminatedObjectType"):
            for arg in args:
                self._check(context, type_, arg, path, partial=True)
        elif name in _STRING_FUNCTIONS or name == "concat":
            self._match_declared(context, type_, Declared("string", origin=f"{fn['type']}()"), path)
        elif name in _INT_FUNCTIONS:
            self._match_declared(context, type_, Declared("int", origin=f"{fn['type']}()"), path)
        elif name in _BOOL_FUNCTIONS:
            self._match_declared(context, type_, Declared("bool", origin=f"{fn['type']}()"), path)

    def _check_loop(self, context: _Context, type_: Mapping[str, Any], node: Mapping[str, Any], path: str) -> None:
        if type_["$type"] == "UnionType":
            arrays = [e for e in map(context.type_file.at, type_["elements"]) if e["$type"] == "ArrayType"]
            if arrays:
                type_ = arrays[0]
        if type_["$type"] != "ArrayType":
            context.report(path, f"expected {_describe(context.type_file, type_)}, got a for-expression (array)")
            return
        body, names = _unwrap(node)
        inner = _Context(context.type_file, context.where, context.local_names | names, context.problems)
        self._check(inner, context.type_file.at(type_["itemType"]), body, f"{path}[]")

    # -- matching a value against a type

    def _match_declared(self, context: _Context, type_: Mapping[str, Any], declared: Declared, path: str) -> None:
        if declared.kind == "unknown":
            return
        if declared.allowed is not None:
            for value in declared.allowed:
                self._match(context, type_, value, path, note=f" (an @allowed value of {declared.origin})")
            return
        accepted = _accepted_kinds(context.type_file, type_)
        if declared.kind not in accepted:
            context.report(path, f"expected {_describe(context.type_file, type_)}, got {declared.origin} of type {declared.kind}")

    def _match(self, context: _Context, type_: Mapping[str, Any], value: Any, path: str, *, partial: bool = False, note: str = "") -> None:
        kind = type_["$type"]
        if kind == "AnyType":
            return
        if kind == "UnionType":
            self._match_union(context, type_, value, path, note)
            return
        actual = _kind_of(value)
        expected = {
            "StringType": "string",
            "StringLiteralType": "string",
            "IntegerType": "int",
            "BooleanType": "bool",
            "ArrayType": "array",
            "ObjectType": "object",
            "DiscriminatedObjectType": "object",
        }.get(kind)
        if expected is None:
            return
        if actual != expected:
            context.report(path, f"expected {_describe(context.type_file, type_)}, got {actual} {value!r}{note}")
            return
        if kind == "StringLiteralType" and value != type_["value"]:
            context.report(path, f"expected {type_['value']!r}, got {value!r}{note}")
        elif kind == "StringType":
            _check_bounds(context, path, len(value), type_.get("minLength"), type_.get("maxLength"), f"length of {value!r}{note}")
        elif kind == "IntegerType":
            _check_bounds(context, path, value, type_.get("minValue"), type_.get("maxValue"), f"{value}{note}")
        elif kind == "ArrayType":
            item = context.type_file.at(type_["itemType"])
            for i, element in enumerate(value):
                self._check(context, item, element, f"{path}[{i}]")
        elif kind == "ObjectType":
            self._check_object(context, dict(type_["properties"]), type_.get("additionalProperties"), value, path, partial)
        elif kind == "DiscriminatedObjectType":
            self._check_discriminated(context, type_, value, path, partial)

    def _match_union(self, context: _Context, type_: Mapping[str, Any], value: Any, path: str, note: str) -> None:
        elements = [context.type_file.at(e) for e in type_["elements"]]
        attempts: list[list[Problem]] = []
        for element in elements:
            trial = _Context(context.type_file, context.where, context.local_names)
            self._match(trial, element, value, path, note=note)
            if not trial.problems:
                return
            attempts.append(trial.problems)
        if isinstance(value, str) and all(e["$type"] == "StringLiteralType" for e in elements):
            options = ", ".join(repr(e["value"]) for e in elements)
            close = difflib.get_close_matches(value, [e["value"] for e in elements], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            context.report(path, f"{value!r}{note} is not one of the allowed values {options}{hint}")
            return
        fewest: list[Problem] = min(attempts, key=len)
        context.problems.extend(fewest)

    def _check_object(
        self,
        context: _Context,
        properties: Mapping[str, Any],
        additional: Mapping[str, str] | None,
        node: Mapping[str, Any],
        path: str,
        partial: bool,
    ) -> None:
        by_lower = {name.lower(): name for name in properties}
        for raw_key, value in node.items():
            key = bicep.object_key(raw_key)
            key_path = _join(path, key)
            prop = properties.get(key)
            if prop is None:
                if key.lower() in by_lower:
                    context.report(key_path, f"spelled {key!r}; the type spells it {by_lower[key.lower()]!r}")
                elif additional is not None:
                    self._check(context, context.type_file.at(additional), value, key_path)
                elif "${" not in key:
                    close = difflib.get_close_matches(key, list(properties), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    context.report(key_path, f"unknown property{hint}")
                continue
            flags = prop.get("flags", 0)
            if flags & READ_ONLY:
                context.report(key_path, "read-only property written")
                continue
            if value is None and flags & REQUIRED:
                context.report(key_path, "required property set to null")
                continue
            self._check(context, context.type_file.at(prop["type"]), value, key_path)
        if partial:
            return
        present = {bicep.object_key(key).lower() for key in node}
        for name, prop in properties.items():
            flags = prop.get("flags", 0)
            if flags & REQUIRED and not flags & READ_ONLY and name.lower() not in present:
                context.report(_join(path, name), "missing required property")

    def _check_discriminated(self, context: _Context, type_: Mapping[str, Any], node: Mapping[str, Any], path: str, partial: bool) -> None:
        discriminator = type_["discriminator"]
        # A discriminator with a dot in its name is a quoted key ('odata.type').
        raw = next((value for key, value in node.items() if bicep.object_key(key) == discriminator), None)
        value = self._literal(raw)
        elements: Mapping[str, Mapping[str, str]] = type_["elements"]
        if not isinstance(value, str):
            context.report(
                _join(path, discriminator), f"must be a literal (one of {', '.join(sorted(elements))}) so the body can be checked"
            )
            return
        if value not in elements:
            close = difflib.get_close_matches(value, list(elements), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            context.report(_join(path, discriminator), f"{value!r} is not a known {discriminator}{hint}")
            return
        element = context.type_file.at(elements[value])
        properties = {**type_.get("baseProperties", {}), **element["properties"]}
        self._check_object(context, properties, element.get("additionalProperties"), node, path, partial)

    def _literal(self, node: Any) -> Any:
        """The literal a node stands for (following variables), or None."""
        if isinstance(node, str) and bicep.IDENT.match(node):
            if node in self.variables:
                return self._literal(self.variables[node])
            if node in self.params or node in self.opaque:
                return None
        if isinstance(node, (str, int, bool)) and "${" not in str(node):
            return node
        return None


def _unwrap(config: Any) -> tuple[Any, frozenset[str]]:
    """The body inside ``if (...)`` and ``for ... in ...:`` wrappers, and the loop's variable names."""
    names: set[str] = set()
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        detail = config.get("loop_type", {}).get("detail", {}) if config.get("loop_type") else {}
        names.update(str(detail[key]) for key in ("item_name", "index_name") if detail.get(key))
        config = config["config"]
    return config, frozenset(names)


def _accepted_kinds(type_file: TypeFile, type_: Mapping[str, Any]) -> set[str]:
    kind = type_["$type"]
    if kind == "UnionType":
        return set().union(*(_accepted_kinds(type_file, type_file.at(e)) for e in type_["elements"]))
    return {
        "AnyType": {"string", "int", "bool", "array", "object"},
        "StringType": {"string"},
        "StringLiteralType": {"string"},
        "IntegerType": {"int"},
        "BooleanType": {"bool"},
        "ArrayType": {"array"},
        "ObjectType": {"object"},
        "DiscriminatedObjectType": {"object"},
    }.get(kind, set())


def _check_bounds(context: _Context, path: str, value: int, low: int | None, high: int | None, what: str) -> None:
    if low is not None and value < low:
        context.report(path, f"{what} is below the minimum {low}")
    if high is not None and value > high:
        context.report(path, f"{what} is above the maximum {high}")


def check_template(path: Path, index: TypeIndex) -> tuple[list[Problem], set[Path]]:
    """Problems in one template, and the vendored type files its resources use."""
    checker = TemplateChecker(index, path, bicep.parse_bicep(path))
    problems = checker.check()
    return problems, checker.used_files
