"""Azure OpenAI's rules for a schema with ``strict: true`` (structured outputs and strict function tools).

Source: "Structured outputs", section "Supported schemas and limitations"
(learn.microsoft.com/azure/ai-foundry/openai/how-to/structured-outputs): the root is an
object (not ``anyOf``); every object sets ``additionalProperties: false`` and lists every
property in ``required``; the type-specific keywords of its "unsupported" table are
refused. Error texts as the service sends them: "In context=('properties', 'etymology'),
'additionalProperties' is required to be supplied and to be false." (from Azure,
moeru-ai/xsai#202), "'required' is required to be supplied and to be an array including
every key in properties. Missing 'x'." and "schema must be a JSON Schema of 'type:
\"object\"'" (the Vercel AI SDK's and OpenRouter's reports, e.g. kevinwatt/mysql-mcp#5),
"array schema missing items." (sigoden/aichat#1049), "object schema missing properties."
(spring-projects/spring-ai#4776), "'default' is not permitted." (seen from OpenAI).
The same wording is used for every refused keyword. Nesting depth and property count
limits are not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devhost.emulator.json_schema import SchemaError, in_context, types_of, walk

NOT_PERMITTED = (
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "allOf",
    "oneOf",
    "not",
    "default",
)


def check_strict(schema: Any) -> None:
    """Raise :class:`SchemaError` with Azure's wording for the first rule the schema breaks."""
    check_object_root(schema)
    for context, node in walk(schema):
        if isinstance(node, dict):
            _check_node(node, context)


def check_object_root(schema: Any) -> None:
    """Function parameters, strict or not, and strict structured outputs are object schemas."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind != "object":
        raise SchemaError(f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{kind}\"'.")


def _check_node(node: Mapping[str, Any], context: tuple[str | int, ...]) -> None:
    for keyword in NOT_PERMITTED:
        if keyword in node:
            raise SchemaError(in_context(context, f"'{keyword}' is not permitted."))
    kinds = types_of(node)
    if "object" in kinds and "$ref" not in node and "anyOf" not in node:
        properties = node.get("properties")
        if not isinstance(properties, dict):
            raise SchemaError(in_context(context, "object schema missing properties."))
        if node.get("additionalProperties") is not False:
            raise SchemaError(in_context(context, "'additionalProperties' is required to be supplied and to be false."))
        required = node.get("required")
        missing = [key for key in properties if not isinstance(required, list) or key not in required]
        if missing:
            raise SchemaError(
                in_context(
                    context,
                    f"'required' is required to be supplied and to be an array including every key in properties. Missing '{missing[0]}'.",
                )
            )
    if "array" in kinds and "items" not in node:
        raise SchemaError(in_context(context, "array schema missing items."))
