"""``response_format``: text, JSON mode (``json_object``) and structured outputs (``json_schema``).

Sources: "JSON mode" and "Structured outputs" (learn.microsoft.com/azure/ai-foundry/openai/
how-to/json-mode, .../structured-outputs). JSON mode needs the word "json" somewhere in the
messages, otherwise: "'messages' must contain the word 'json' in some form, to use
'response_format' of type 'json_object'." with param ``messages`` (seen in
meta-llama/PurpleLlama#94). A strict schema breaking Azure's rules is refused with
"Invalid schema for response_format 'NAME': ..." and param ``response_format``
(from Azure: moeru-ai/xsai#202); the rules are in :mod:`devhost.emulator.strict_schema`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devhost.emulator.generation import content_text
from devhost.emulator.request_errors import InvalidRequest, invalid_type, missing
from devhost.emulator.schema_rules import accept_schema
from devhost.emulator.tool_names import check_name

KINDS = ("text", "json_object", "json_schema")
JSON_WORD_MESSAGE = "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'."


@dataclass(frozen=True)
class ResponseFormat:
    kind: str
    instance: Any = None
    """``json_schema``: the deterministic instance of the schema, made once when the request is read."""


TEXT = ResponseFormat("text")


def parse_response_format(body: Mapping[str, Any]) -> ResponseFormat:
    """The requested format; raises :class:`InvalidRequest` as Azure does."""
    spec = body.get("response_format")
    if spec is None:
        return TEXT
    if not isinstance(spec, dict):
        raise invalid_type("response_format", "an object")
    kind = spec.get("type")
    if kind is None:
        raise missing("response_format.type")
    if kind not in KINDS:
        raise InvalidRequest(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and 'json_schema'.",
            "response_format.type",
            "invalid_value",
        )
    if kind == "json_object":
        _require_json_word(body.get("messages", []))
        return ResponseFormat(kind)
    if kind == "text":
        return TEXT
    return ResponseFormat(kind, _schema_instance(spec.get("json_schema")))


def _require_json_word(messages: Sequence[Mapping[str, Any]]) -> None:
    if not any("json" in content_text(message.get("content")).lower() for message in messages):
        raise InvalidRequest(JSON_WORD_MESSAGE, "messages")


def _schema_instance(spec: Any) -> Any:
    if not isinstance(spec, dict):
        raise missing("response_format.json_schema")
    name = spec.get("name")
    if name is None:
        raise missing("response_format.json_schema.name")
    check_name(name, "response_format.json_schema.name")
    return accept_schema(
        spec.get("schema", {}),
        strict=spec.get("strict") is True,
        object_root=False,
        label=f"response_format '{name}'",
        param="response_format",
        code=None,
    )
