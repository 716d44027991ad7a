"""Accepting a request's JSON Schema: Azure's strict rules first (what Azure refuses), then the emulator's subset."""

from __future__ import annotations

from typing import Any

from devhost.emulator import json_schema
from devhost.emulator.json_schema import SchemaError
from devhost.emulator.request_errors import EMULATOR_UNSUPPORTED, InvalidRequest
from devhost.emulator.strict_schema import check_object_root, check_strict


def accept_schema(schema: Any, *, strict: bool, object_root: bool, label: str, param: str, code: str | None) -> Any:
    """The schema's deterministic instance; raises :class:`InvalidRequest` ("Invalid schema for LABEL: ...") when there is none.

    ``object_root`` requires an object schema even when not strict (function parameters).
    ``code`` is Azure's error code for a broken Azure rule; the emulator's own limits get
    ``emulator_unsupported``.
    """
    prefix = f"Invalid schema for {label}: "
    try:
        if object_root:
            check_object_root(schema)
        if strict:
            check_strict(schema)
    except SchemaError as error:
        raise InvalidRequest(prefix + str(error), param, code) from None
    try:
        json_schema.check(schema)
        return json_schema.instance(schema)
    except SchemaError as error:
        raise InvalidRequest(prefix + str(error), param, EMULATOR_UNSUPPORTED) from None
