"""A request body Azure would refuse: raised by the request parsers, answered as a 400 in OpenAI's error shape."""

from __future__ import annotations

EMULATOR_UNSUPPORTED = "emulator_unsupported"


class InvalidRequest(ValueError):
    """``message``, ``param`` and ``code`` as Azure sends them (``code`` ``emulator_unsupported`` for the emulator's own limits)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def missing(param: str) -> InvalidRequest:
    """Azure's wording for a required field that is absent (seen in langchain-ai/langchain-azure#35)."""
    return InvalidRequest(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def invalid_type(param: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}.", param, "invalid_type")
