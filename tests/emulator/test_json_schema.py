"""The emulator's JSON Schema instances and Azure's strict-schema rules, as pure functions.

Every generated instance is checked with the ``jsonschema`` validator, over a wide range
of schemas drawn by hypothesis.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devhost.emulator.answers import json_pieces
from devhost.emulator.json_schema import FORMATS, SchemaError, check, instance
from devhost.emulator.strict_schema import check_strict

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8)


def assert_valid(schema: dict[str, Any], value: Any) -> None:
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [error.message for error in validator.iter_errors(value)]
    assert not errors, f"{value!r} does not match {schema!r}: {errors}"


@st.composite
def strings(draw: st.DrawFn, strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if strict:
        return schema
    if draw(st.booleans()):
        schema["format"] = draw(st.sampled_from(sorted(FORMATS)))
        return schema
    low = draw(st.none() | st.integers(0, 30))
    if low is not None:
        schema["minLength"] = low
    high = draw(st.none() | st.integers(low or 0, 40))
    if high is not None:
        schema["maxLength"] = high
    return schema


@st.composite
def numbers(draw: st.DrawFn, strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": draw(st.sampled_from(["integer", "number"]))}
    if strict:
        return schema
    step = draw(st.none() | st.integers(1, 5))
    low = draw(st.none() | st.integers(-50, 50) | st.sampled_from([-2.5, 0.5, 7.25]))
    high = draw(st.none() | st.integers(-50, 50))
    if low is not None and high is not None:
        high = low + 2 * (step or 1) + draw(st.integers(2, 40))
    if low is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if high is not None:
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = high
    if step is not None:
        schema["multipleOf"] = step
    return schema


def leaves(strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        strings(strict),
        numbers(strict),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.lists(SCALARS, min_size=1, max_size=4).map(lambda values: {"enum": values}),
        st.lists(st.text(max_size=6), min_size=1, max_size=4).map(lambda values: {"type": ["string", "null"], "enum": [*values, None]}),
        SCALARS.map(lambda value: {"const": value}),
    )


@st.composite
def objects(draw: st.DrawFn, children: st.SearchStrategy[dict[str, Any]], strict: bool) -> dict[str, Any]:
    properties = draw(st.dictionaries(NAMES, children, max_size=4))
    names = list(properties)
    required = names if strict else [name for name in names if draw(st.booleans())]
    additional = False if strict else draw(st.booleans())
    return {"type": "object", "title": "Thing", "properties": properties, "required": required, "additionalProperties": additional}


@st.composite
def arrays(draw: st.DrawFn, children: st.SearchStrategy[dict[str, Any]], strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": draw(children), "description": "a list"}
    if not strict:
        low = draw(st.integers(0, 3))
        schema["minItems"] = low
        if draw(st.booleans()):
            schema["maxItems"] = draw(st.integers(low, 5))
    return schema


def schemas(strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            objects(children, strict),
            arrays(children, strict),
            st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches}),
        )

    return st.recursive(leaves(strict), extend, max_leaves=12)


@FAST
@given(schemas(strict=False))
def test_every_instance_matches_its_schema(schema: dict[str, Any]) -> None:
    check(schema)
    assert_valid(schema, instance(schema))


@FAST
@given(schemas(strict=True).map(lambda child: {"type": "object", "properties": {"x": child}, "required": ["x"], "additionalProperties": False}))
def test_strict_shaped_schemas_pass_azure_rules_and_match(schema: dict[str, Any]) -> None:
    check_strict(schema)
    check(schema)
    assert_valid(schema, instance(schema))


@FAST
@given(schemas(strict=False))
def test_instances_are_deterministic(schema: dict[str, Any]) -> None:
    assert instance(schema) == instance(copy.deepcopy(schema))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@FAST
@given(JSON_VALUES)
def test_json_pieces_concatenate_to_the_compact_json(value: Any) -> None:
    pieces = json_pieces(value)
    assert "".join(pieces) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert json.loads("".join(pieces)) == value
    assert all(pieces)


def test_weather_call_arguments_stream_in_word_sized_pieces() -> None:
    assert json_pieces({"city": "New York City"}) == ['{"', "city", '":"', "New", " York", " City", '"}']


def test_documented_rules_for_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "note": {"type": ["null", "string"]},
            "days": {"type": "integer", "minimum": 3, "maximum": 9, "multipleOf": 2},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "code": {"type": "string", "minLength": 10, "maxLength": 12},
            "when": {"type": "string", "format": "date-time"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "ok": {"type": "boolean"},
            "choice": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        },
        "required": ["city"],
    }
    assert instance(schema) == {
        "city": "city",
        "unit": "celsius",
        "note": None,
        "days": 4,
        "ratio": 0.5,
        "code": "codecodeco",
        "when": "2024-01-01T00:00:00Z",
        "tags": ["tags", "tags"],
        "ok": True,
        "choice": 1,
    }


def test_keywords_that_constrain_nothing_are_ignored() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "x-order": 1, "examples": ["z"]}}, "x-vendor": {"anything": True}}
    check(schema)
    assert instance(schema) == {"a": "a"}


def test_recursive_schemas_stop_where_the_schema_allows() -> None:
    linked_list = {
        "type": "object",
        "properties": {"head": {"$ref": "#/$defs/node"}},
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"value": {"type": "number"}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                "required": ["value", "next"],
                "additionalProperties": False,
            }
        },
        "required": ["head"],
        "additionalProperties": False,
    }
    ui = {
        "type": "object",
        "properties": {"label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["label", "children"],
        "additionalProperties": False,
    }
    for schema in (linked_list, ui):
        check_strict(schema)
        check(schema)
        assert_valid(schema, instance(schema))
    assert instance(linked_list) == {"head": {"value": 1, "next": None}}
    assert instance(ui) == {"label": "label", "children": []}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "pattern": "^a+$"}, "In context=(), 'pattern' is not supported by the emulator"),
        ({"oneOf": [{"type": "string"}]}, "In context=(), 'oneOf' is not supported by the emulator"),
        ({"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.1}}}, "In context=('properties', 'n'), 'multipleOf' 0.1"),
        ({"type": "string", "format": "iri"}, "format 'iri' is not supported"),
        ({"type": "object", "required": ["a"]}, "'required' naming 'a', which is not in 'properties'"),
        ({"$ref": "#/$defs/missing"}, "'$ref' '#/$defs/missing' does not resolve."),
        ({"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True}, "'uniqueItems' with 'minItems' above 1"),
        ({"type": "integer", "minimum": 5, "maximum": 3}, "the numeric bounds leave no value that fits."),
        ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "the numeric bounds leave no value that fits."),
        ({"type": "string", "minLength": 4, "maxLength": 2}, "the length bounds leave no string that fits."),
        ({"type": "string", "enum": [1, 2]}, "no 'enum' value has a type that 'type' allows."),
        ({"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}, "recurses without end"),
        ({"type": "stirng"}, "'type' must be one of"),
    ],
)
def test_schemas_the_emulator_cannot_honour_are_refused(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        check(schema)
        instance(schema)
    assert message in str(caught.value)


def strict_object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            strict_object(word={"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}),
            "In context=('properties', 'word'), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"], "additionalProperties": False},
            "In context=(), 'required' is required to be supplied and to be an array including every key in properties. Missing 'b'.",
        ),
        (strict_object(age={"type": "integer", "minimum": 0}), "In context=('properties', 'age'), 'minimum' is not permitted."),
        (strict_object(tags={"type": "array", "items": {"type": "string"}, "maxItems": 3}), "'maxItems' is not permitted."),
        (strict_object(name={"type": "string", "default": "x"}), "In context=('properties', 'name'), 'default' is not permitted."),
        (strict_object(tags={"type": "array"}), "In context=('properties', 'tags'), array schema missing items."),
        ({"type": "object", "additionalProperties": False}, "In context=(), object schema missing properties."),
        ({"anyOf": [strict_object(a={"type": "string"})]}, "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"None\"'."),
    ],
)
def test_strict_schemas_follow_azures_rules(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        check_strict(schema)
    assert message in str(caught.value)
