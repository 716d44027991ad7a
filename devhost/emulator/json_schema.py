"""Deterministic instances of JSON Schemas, over the subset of JSON Schema the emulator can generate.

The subset: ``type`` (one name or a list), ``enum``, ``const``, ``properties``,
``required``, ``additionalProperties``, ``items``, ``minItems``/``maxItems``,
``uniqueItems`` (with at most one item), ``minLength``/``maxLength``, ``format``
(the names in :data:`FORMATS`), ``minimum``/``maximum``/``exclusiveMinimum``/
``exclusiveMaximum``, an integer ``multipleOf``, ``anyOf``, and ``$ref`` to ``#``,
``#/$defs/...`` or ``#/definitions/...`` (recursion included). :func:`check` rejects the
constraining keywords of JSON Schema 2020-12 (and draft 7) outside it (:data:`UNSUPPORTED`),
so the emulator answers a schema it cannot honour with a clear error instead of an
instance that does not match. Keywords that constrain nothing (``title``,
``description``, vendor extensions) are ignored, as JSON Schema ignores them.

The rules that make an instance (docs/emulators.md repeats them):

* an object has every property in ``properties``, in schema order (an optional one
  is left out only when it would recurse without end);
* ``enum`` gives its first value whose JSON type ``type`` allows, ``const`` its value,
  ``anyOf`` its first branch that does not recurse without end, a list of types its first;
* a string is the name of the property that holds it (``"text"`` at the top), or a
  fixed sample for a ``format``, repeated or cut to fit the length bounds;
* a number or integer is 1, moved into the bounds (to a bound, or the middle of two
  exclusive ones) and up to a multiple of ``multipleOf``; a boolean is ``true``;
* an array has ``max(minItems, 1)`` copies of one item (capped by ``maxItems``), or none
  when its items would recurse without end and ``minItems`` allows it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

Context = tuple[str | int, ...]

FORMATS: Mapping[str, str] = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
TYPES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
CONSTRAINTS = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "anyOf",
        "$ref",
    }
)
UNSUPPORTED = frozenset(
    {
        "pattern",
        "oneOf",
        "allOf",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependentRequired",
        "dependencies",
        "prefixItems",
        "additionalItems",
        "contains",
        "minContains",
        "maxContains",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "$dynamicRef",
        "$recursiveRef",
    }
)
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}


class SchemaError(ValueError):
    """A schema outside the supported subset, or one no value satisfies."""


def in_context(context: Context, problem: str) -> str:
    """OpenAI's way of pointing into a schema: ``In context=('properties', 'city'), <problem>``."""
    return f"In context={context!r}, {problem}"


def walk(schema: Any, context: Context = ()) -> Iterator[tuple[Context, Any]]:
    """Every subschema with its context, the root first; ``$ref`` targets are visited where they are defined."""
    yield context, schema
    if not isinstance(schema, dict):
        return
    for group in ("properties", "$defs", "definitions"):
        children = schema.get(group)
        if isinstance(children, dict):
            for key, child in children.items():
                yield from walk(child, (*context, group, key))
    for single in ("items", "additionalProperties"):
        if isinstance(schema.get(single), dict):
            yield from walk(schema[single], (*context, single))
    branches = schema.get("anyOf")
    if isinstance(branches, list):
        for index, branch in enumerate(branches):
            yield from walk(branch, (*context, "anyOf", index))


def types_of(schema: Mapping[str, Any]) -> list[str]:
    """The types a schema names, or infers from its keywords (an empty list: any type)."""
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [name for name in declared if isinstance(name, str)]
    if {"properties", "required", "additionalProperties"} & schema.keys():
        return ["object"]
    if {"items", "minItems", "maxItems", "uniqueItems"} & schema.keys():
        return ["array"]
    if {"minLength", "maxLength", "format"} & schema.keys():
        return ["string"]
    if set(_BOUNDS) & schema.keys():
        return ["number"]
    return []


def check(schema: Any) -> None:
    """Raise :class:`SchemaError` unless every subschema is in the subset and every ``$ref`` resolves."""
    for context, node in walk(schema):
        _check_node(schema, node, context)


def instance(schema: Mapping[str, Any]) -> Any:
    """The deterministic instance of a schema that passed :func:`check`."""
    try:
        return _Generator(schema).value(schema, (), None, ("#",))
    except _Cycle:
        raise SchemaError(in_context((), "the schema recurses without end and has no finite instance.")) from None


def _unsupported(context: Context, what: str) -> SchemaError:
    return SchemaError(in_context(context, f"{what} is not supported by the emulator (docs/emulators.md lists what it supports)."))


def _check_node(root: Any, node: Any, context: Context) -> None:
    if not isinstance(node, dict):
        raise _unsupported(context, "a schema that is not an object")
    for keyword in node:
        if keyword in UNSUPPORTED:
            raise _unsupported(context, f"'{keyword}'")
    if "$ref" in node or "anyOf" in node:
        extra = sorted((set(node) & CONSTRAINTS) - {"$ref", "anyOf"})
        if extra or ("$ref" in node and "anyOf" in node):
            raise _unsupported(context, f"'{'$ref' if '$ref' in node else 'anyOf'}' beside {extra or ['anyOf']}")
    if "$ref" in node:
        _resolve(root, node["$ref"], context)
    if "anyOf" in node and (not isinstance(node["anyOf"], list) or not node["anyOf"]):
        raise SchemaError(in_context(context, "'anyOf' must be a non-empty array."))
    _check_types(node, context)
    _check_containers(node, context)
    _check_numbers(node, context)


def _check_types(node: Mapping[str, Any], context: Context) -> None:
    declared = node.get("type")
    names = [declared] if isinstance(declared, str) else declared
    if declared is not None and (not isinstance(names, list) or not names or any(n not in TYPES for n in names)):
        raise SchemaError(in_context(context, f"'type' must be one of {sorted(TYPES)} or a non-empty array of them."))
    if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
        raise SchemaError(in_context(context, "'enum' must be a non-empty array."))
    if "format" in node and node["format"] not in FORMATS:
        raise _unsupported(context, f"format {node['format']!r}")


def _check_containers(node: Mapping[str, Any], context: Context) -> None:
    properties = node.get("properties", {})
    if not isinstance(properties, dict):
        raise SchemaError(in_context(context, "'properties' must be an object."))
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise SchemaError(in_context(context, "'required' must be an array of strings."))
    for name in required:
        if name not in properties:
            raise _unsupported(context, f"'required' naming {name!r}, which is not in 'properties',")
    if not isinstance(node.get("items", {}), dict):
        raise _unsupported(context, "'items' that is not a schema object")
    if not isinstance(node.get("additionalProperties", True), bool | dict):
        raise SchemaError(in_context(context, "'additionalProperties' must be a boolean or a schema."))
    if not isinstance(node.get("uniqueItems", False), bool):
        raise SchemaError(in_context(context, "'uniqueItems' must be a boolean."))


def _check_numbers(node: Mapping[str, Any], context: Context) -> None:
    for name in _COUNTS:
        value = node.get(name, 0)
        if type(value) is not int or value < 0:
            raise SchemaError(in_context(context, f"'{name}' must be a non-negative integer."))
    for name in _BOUNDS:
        value = node.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SchemaError(in_context(context, f"'{name}' must be a number."))
    step = node.get("multipleOf")
    if step is not None and (step <= 0 or not float(step).is_integer()):
        raise _unsupported(context, f"'multipleOf' {step!r} (only a positive whole number is)")


def _resolve(root: Any, ref: Any, context: Context) -> Any:
    if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
        raise _unsupported(context, f"'$ref' {ref!r} (only '#' and '#/...' are)")
    target = root
    for raw in ref[2:].split("/") if ref != "#" else []:
        key = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or key not in target:
            raise SchemaError(in_context(context, f"'$ref' {ref!r} does not resolve."))
        target = target[key]
    return target


class _Cycle(Exception):
    """Generating this subschema would enter a ``$ref`` already being generated."""


class _Generator:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def value(self, schema: Mapping[str, Any], context: Context, name: str | None, active: tuple[str, ...]) -> Any:
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in active:
                raise _Cycle
            return self.value(_resolve(self.root, ref, context), context, name, (*active, ref))
        if "anyOf" in schema:
            for index, branch in enumerate(schema["anyOf"]):
                try:
                    return self.value(branch, (*context, "anyOf", index), name, active)
                except _Cycle:
                    continue
            raise _Cycle
        types = types_of(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return _first_enum_value(schema["enum"], types, context)
        kind = types[0] if types else "string"
        if kind == "object":
            return self._object(schema, context, active)
        if kind == "array":
            return self._array(schema, context, name, active)
        if kind in ("number", "integer"):
            return _number(schema, context, kind == "integer")
        if kind == "string":
            return _string(schema, context, name)
        return True if kind == "boolean" else None

    def _object(self, schema: Mapping[str, Any], context: Context, active: tuple[str, ...]) -> dict[str, Any]:
        required = set(schema.get("required", []))
        result: dict[str, Any] = {}
        for key, child in schema.get("properties", {}).items():
            try:
                result[key] = self.value(child, (*context, "properties", key), key, active)
            except _Cycle:
                if key in required:
                    raise
        return result

    def _array(self, schema: Mapping[str, Any], context: Context, name: str | None, active: tuple[str, ...]) -> list[Any]:
        low, high = schema.get("minItems", 0), schema.get("maxItems")
        count = max(low, 1) if high is None else min(max(low, 1), high)
        if count < low:
            raise SchemaError(in_context(context, "'minItems' is above 'maxItems': no array fits."))
        if count > 1 and schema.get("uniqueItems") is True:
            raise _unsupported(context, "'uniqueItems' with 'minItems' above 1")
        if count == 0:
            return []
        try:
            item = self.value(schema.get("items", {}), (*context, "items"), name, active)
        except _Cycle:
            if low == 0:
                return []
            raise
        return [item] * count


def _first_enum_value(values: list[Any], types: list[str], context: Context) -> Any:
    for value in values:
        if not types or any(_is_type(value, kind) for kind in types):
            return value
    raise SchemaError(in_context(context, "no 'enum' value has a type that 'type' allows."))


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[kind])


def _string(schema: Mapping[str, Any], context: Context, name: str | None) -> str:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    sample = FORMATS.get(schema.get("format", ""))
    text = sample or name or "text"
    if len(text) < low:
        text = (text * low)[:low]
    if high is not None and len(text) > high:
        text = text[:high]
    if len(text) < low or (sample is not None and text != sample):
        raise SchemaError(in_context(context, "the length bounds leave no string that fits."))
    return text


def _number(schema: Mapping[str, Any], context: Context, integer: bool) -> int | float:
    low, low_open = _bound(schema, "minimum", "exclusiveMinimum", max)
    high, high_open = _bound(schema, "maximum", "exclusiveMaximum", min)
    if integer:
        low = None if low is None else (math.floor(low) + 1 if low_open else math.ceil(low))
        high = None if high is None else (math.ceil(high) - 1 if high_open else math.floor(high))
        low_open = high_open = False
    value: float = 1
    if low is not None and (value < low or (low_open and value == low)):
        value = (low + high) / 2 if low_open and high is not None else (low + 1 if low_open else low)
    if high is not None and (value > high or (high_open and value == high)):
        value = (low + high) / 2 if high_open and low is not None else (high - 1 if high_open else high)
    step = schema.get("multipleOf")
    candidates = [value] if step is None else [math.ceil(value / step) * step, math.floor(value / step) * step]
    for candidate in candidates:
        fits_low = low is None or candidate > low or (candidate == low and not low_open)
        fits_high = high is None or candidate < high or (candidate == high and not high_open)
        if fits_low and fits_high:
            return int(candidate) if float(candidate).is_integer() else candidate
    raise SchemaError(in_context(context, "the numeric bounds leave no value that fits."))


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, tighter: Any) -> tuple[float | None, bool]:
    """The tighter of the inclusive and the exclusive bound, and whether it is exclusive."""
    closed, opened = schema.get(inclusive), schema.get(exclusive)
    if opened is None:
        return closed, False
    if closed is None or tighter(closed, opened) == opened:
        return opened, True
    return closed, False
