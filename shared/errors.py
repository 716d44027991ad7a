"""Errors the relay answers with, in the OpenAI error shape (docs/design.md, "Errors")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RelayError(Exception):
    """An error the caller receives as ``{"error": {message, type, param, code}}``.

    ``message`` is shown to the caller, so it never holds a token, a key, an
    upstream URL or a stack trace.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        error_type: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


def invalid_request(message: str, param: str | None = None) -> RelayError:
    return RelayError(400, "invalid_request", message, param=param)


def parameter_not_allowed(message: str, param: str) -> RelayError:
    return RelayError(400, "parameter_not_allowed", message, param=param)


def unauthenticated(message: str) -> RelayError:
    return RelayError(401, "unauthenticated", message, error_type="authentication_error")


def forbidden(message: str) -> RelayError:
    return RelayError(403, "forbidden", message, error_type="permission_error")


def upstream_error(message: str) -> RelayError:
    return RelayError(502, "upstream_error", message, error_type="api_error")


def upstream_timeout(message: str = "Azure OpenAI did not answer in time.") -> RelayError:
    return RelayError(504, "upstream_timeout", message, error_type="api_error")


class UpstreamCredentialError(RuntimeError):
    """The relay's own credential for Azure OpenAI could not be had.

    The message names what an operator should check, never a secret; it is
    logged, and the caller gets a bare ``upstream_error``.
    """
