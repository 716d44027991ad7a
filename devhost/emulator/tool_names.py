"""Function and schema names: letters, digits, ``_`` and ``-``, at most 64 (OpenAI's function-calling reference)."""

from __future__ import annotations

import re

from devhost.emulator.request_errors import InvalidRequest

NAME_PATTERN = "^[a-zA-Z0-9_-]+$"
MAX_NAME_LENGTH = 64
_NAME = re.compile(NAME_PATTERN)


def is_function_name(name: object) -> bool:
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def check_name(name: object, param: str) -> None:
    if not is_function_name(name):
        raise InvalidRequest(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches the pattern "
            f"'{NAME_PATTERN}' and is at most {MAX_NAME_LENGTH} characters long.",
            param,
            "invalid_value",
        )
