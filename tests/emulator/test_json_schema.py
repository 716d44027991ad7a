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

from devhost.emulator.generation import json_pieces
from devhost.emulator.json_schema import SchemaError, check, instance
from devhost.emulator.strict_schema import check_strict
from tests.support.strategies import json_schemas, json_values

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_valid(schema: dict[str, Any], value: Any) -> None:
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [error.message for error in validator.iter_errors(value)]
    assert not errors, f"{value!r} does not match {schema!r}: {errors}"


@FAST
@given(json_schemas(strict=False))
def test_every_instance_matches_its_schema(schema: dict[str, Any]) -> None:
    check(schema)
    assert_valid(schema, instance(schema))


@FAST
@given(
    json_schemas(strict=True).map(
        lambda child: {"type": "object", "properties": {"x": child}, "required": ["x"], "additionalProperties": False}
    )
)
def test_strict_shaped_schemas_pass_azure_rules_and_match(schema: dict[str, Any]) -> None:
    check_strict(schema)
    check(schema)
    assert_valid(schema, instance(schema))


@FAST
@given(json_schemas(strict=False))
def test_instances_are_deterministic(schema: dict[str, Any]) -> None:
    assert instance(schema) == instance(copy.deepcopy(schema))


@FAST
@given(json_values(st.text(), finite=True, max_leaves=20))
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
        (
            {"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.1}}},
            "In context=('properties', 'n'), 'multipleOf' 0.1",
        ),
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
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": False,
            },
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
