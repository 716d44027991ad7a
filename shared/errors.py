"""Every error the relay answers with, in the OpenAI error shape (docs/design.md, "Errors").

:data:`CATALOGUE` lists each code once, with its status, its OpenAI ``type`` and the modules
that raise it; docs/design.md's Errors table says the same, and a test holds the two together.
Each code has one constructor here, named after it, so a grep for the name finds every place
that answers with it. What went wrong with Azure OpenAI is a typed cause first
(shared/upstream_errors.py) and becomes one of these only once the retry decision is made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorKind:
    status: int
    error_type: str
    raised_by: tuple[str, ...]  # the shared/ modules that call the code's constructor


# OpenAI's error types.
_INVALID, _AUTH, _PERMISSION = "invalid_request_error", "authentication_error", "permission_error"
_RATE, _API = "rate_limit_error", "api_error"

CATALOGUE: Mapping[str, ErrorKind] = {
    "invalid_request": ErrorKind(400, _INVALID, ("request_policy", "responses_policy", "responses_relay", "upstream_errors")),
    "parameter_not_allowed": ErrorKind(400, _INVALID, ("request_policy", "responses_policy")),
    "model_not_allowed": ErrorKind(400, _INVALID, ("request_policy",)),
    "content_filter": ErrorKind(400, _INVALID, ("upstream_errors",)),
    "unauthenticated": ErrorKind(401, _AUTH, ("easyauth",)),
    "forbidden": ErrorKind(403, _PERMISSION, ("easyauth", "client_ip")),
    "source_ip_unavailable": ErrorKind(403, _PERMISSION, ("client_ip",)),
    "user_blocked": ErrorKind(403, _PERMISSION, ("access_controls", "open_streams")),
    "unsupported_route": ErrorKind(404, _INVALID, ("relay",)),
    "not_found": ErrorKind(404, _INVALID, ("responses_policy",)),
    "request_too_large": ErrorKind(413, _INVALID, ("relay",)),
    "rate_limited": ErrorKind(429, _RATE, ("upstream_errors",)),
    "user_quota_exceeded": ErrorKind(429, _RATE, ("budget",)),
    "user_concurrency_exceeded": ErrorKind(429, _RATE, ("access_controls",)),
    "internal_error": ErrorKind(500, _API, ("relay",)),
    "upstream_error": ErrorKind(502, _API, ("relay", "responses_relay", "sse", "upstream_errors")),
    "easy_auth_disabled": ErrorKind(503, _API, ("caller",)),
    "blocklist_unavailable": ErrorKind(503, _API, ("blocklist_cache",)),
    "server_busy": ErrorKind(503, _API, ("upstream",)),
    "responses_unavailable": ErrorKind(503, _API, ("responses_key",)),
    "upstream_timeout": ErrorKind(504, _API, ("relay", "responses_relay", "upstream_errors")),
}


class RelayError(Exception):
    """An error the caller receives as ``{"error": {message, type, param, code}}``.

    ``message`` is shown to the caller, so it never holds a token, a key, an
    upstream URL or a stack trace. ``cause`` is the typed upstream failure it was
    mapped from (shared/upstream_errors.py), if any.
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
        cause: UpstreamFailure | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.code = code
        self.message = message
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        self.cause = cause

    def reworded(self, message: str) -> RelayError:
        """The same error with ``message`` shown instead (its ``str`` too)."""
        return self._copy(message, self.cause)

    def detached(self) -> RelayError:
        """The same answer without its cause or traceback, to keep after the frames that raised it have ended.

        Both lead back to those frames, and through them to whatever holds this error: a reference cycle
        that only an older garbage collection frees (docs/performance.md, "Garbage collection").
        """
        return self._copy(self.message, None)

    def _copy(self, message: str, cause: UpstreamFailure | None) -> RelayError:
        return RelayError(
            self.status,
            self.code,
            message,
            param=self.param,
            error_type=self.error_type,
            headers=self.headers,
            extra=self.extra,
            cause=cause,
        )

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        error.update(self.extra)
        return {"error": error}


def _error(
    code: str,
    message: str,
    *,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    cause: UpstreamFailure | None = None,
) -> RelayError:
    kind = CATALOGUE[code]
    return RelayError(
        kind.status, code, message, param=param, error_type=kind.error_type, headers=headers, extra=extra, cause=cause
    )


# The request -------------------------------------------------------------------------------


def invalid_request(message: str, param: str | None = None, cause: UpstreamFailure | None = None) -> RelayError:
    """The body breaks a rule of the request policy, or Azure OpenAI refused it (400/422)."""
    return _error("invalid_request", message, param=param, cause=cause)


def parameter_not_allowed(message: str, param: str) -> RelayError:
    return _error("parameter_not_allowed", message, param=param)


def model_not_allowed(model: str) -> RelayError:
    return _error("model_not_allowed", f"The model '{model[:64]}' is not available on this relay. See GET /api/v1/models.", param="model")


def request_too_large(limit: int) -> RelayError:
    return _error("request_too_large", f"The request body is larger than {limit} bytes.")


def unsupported_route(responses_served: bool = False) -> RelayError:
    served = (
        "This relay serves the Chat Completions API (POST /api/v1/chat/completions) and the Responses API only "
        "(/api/v1/responses: create, retrieve, delete, cancel, input_items; /api/v1/conversations: create, retrieve, "
        "delete, list items; a conversation's items are added as the next response's input, not through its items route)"
        if responses_served
        else "This relay serves the Chat Completions API only (POST /api/v1/chat/completions)"
    )
    return _error(
        "unsupported_route",
        served + ": that is where Azure accepts "
        "the end-user context (user_security_context) that Microsoft Defender for Cloud attributes every prompt with. "
        "A client of another API can switch to Chat Completions: Vercel AI SDK openai.chat(model); OpenAI Agents SDK "
        "OpenAIChatCompletionsModel (Python) or setOpenAIAPI('chat_completions') (JavaScript); Microsoft Agent Framework "
        "OpenAIChatCompletionClient (Python) or GetChatClient(...).AsAIAgent() (.NET); LangChain "
        "ChatOpenAI(use_responses_api=False); pydantic-ai OpenAIChatModel.",
    )


def not_found(message: str, param: str | None = None) -> RelayError:
    """An id of the Responses API's state that is not the caller's, or does not exist: the two are not told apart."""
    return _error("not_found", message, param=param)


# The caller --------------------------------------------------------------------------------


def easy_auth_disabled() -> RelayError:
    return _error(
        "easy_auth_disabled", "App Service Authentication (Easy Auth) is not enabled on this instance; the relay refuses to serve."
    )


def unauthenticated(message: str) -> RelayError:
    return _error("unauthenticated", message)


def forbidden(message: str) -> RelayError:
    return _error("forbidden", message)


def source_ip_unavailable(reason: str) -> RelayError:
    return _error(
        "source_ip_unavailable",
        f"The caller's IP address could not be established ({reason}); the relay does not serve anonymous requests.",
    )


def user_blocked() -> RelayError:
    # The reason stays in the table and the log: telling a blocked caller why would help them get around it.
    return _error("user_blocked", "Access to this service is blocked for this account or network. Contact your administrator.")


def blocklist_unavailable(retry_after_s: float) -> RelayError:
    return _error(
        "blocklist_unavailable",
        "The relay cannot check its block list right now; try again shortly.",
        headers={"Retry-After": str(int(retry_after_s))},
    )


def user_quota_exceeded(*, per_minute: bool, tenant: bool, retry_after_s: float, held: bool = False) -> RelayError:
    """A budget is used up, or (``held``) what is left of it is held by requests in flight or not yet shared."""
    period = "minute" if per_minute else "day (UTC)"
    whose = "your tenant's" if tenant else "your"
    if held:
        message = "What is left of your token budget is held by your requests in flight, or not yet counted by every instance."
    else:
        message = f"You have used {whose} token budget for this {period}."
    return _error(
        "user_quota_exceeded",
        f"{message} Retry after the time in the Retry-After header.",
        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
    )


def user_concurrency_exceeded(limit: int) -> RelayError:
    return _error(
        "user_concurrency_exceeded",
        f"You have {limit} requests in flight on this relay, the most one user may have. Retry after the time in the Retry-After header.",
        headers={"Retry-After": "1"},
    )


# Azure OpenAI and this instance --------------------------------------------------------------


def content_filter(extra: Mapping[str, Any], cause: UpstreamFailure | None = None) -> RelayError:
    return _error(
        "content_filter", "The prompt was blocked by Azure OpenAI's content management policy.", param="prompt", extra=extra, cause=cause
    )


def rate_limited(retry_after_s: float | None, cause: UpstreamFailure | None = None) -> RelayError:
    return _error(
        "rate_limited",
        "Azure OpenAI is rate limiting this application. Retry after the time in the Retry-After header.",
        headers={"Retry-After": str(math.ceil(retry_after_s if retry_after_s is not None else 1))},
        cause=cause,
    )


def upstream_error(message: str, cause: UpstreamFailure | None = None) -> RelayError:
    return _error("upstream_error", message, cause=cause)


def upstream_timeout(message: str = "Azure OpenAI did not answer in time.", cause: UpstreamFailure | None = None) -> RelayError:
    return _error("upstream_timeout", message, cause=cause)


def answer_too_slow() -> RelayError:
    """A non-streamed answer not complete within the relay's bound: ``upstream_timeout``, saying to stream."""
    return upstream_timeout(
        'Azure OpenAI did not answer in time. Ask for long answers with "stream": true: the platform ends a response '
        "that has not completed within 230 s, and a stream starts at once."
    )


def server_busy() -> RelayError:
    return _error(
        "server_busy",
        "This relay instance has no free connection to Azure OpenAI. Retry after the time in the Retry-After header.",
        headers={"Retry-After": "1"},
    )


def responses_unavailable(retry_after_s: int = 5) -> RelayError:
    """The key that binds Responses ids to their caller could not be read from the relay's table storage."""
    return _error(
        "responses_unavailable",
        f"The Responses API is unavailable on this instance for a moment. Retry after {retry_after_s} seconds.",
        headers={"Retry-After": str(retry_after_s)},
    )


def internal_error() -> RelayError:
    return _error("internal_error", "The relay failed unexpectedly.")


# Causes --------------------------------------------------------------------------------------
# Why a call to Azure OpenAI failed, as the upstream client finds it (modelled on httpx's exception
# hierarchy). A cause stays typed until the retry decision; shared/upstream_errors.py then maps it,
# in one place, to the RelayError the caller gets, which keeps it as ``cause``.


class UpstreamFailure(Exception):
    """A call to Azure OpenAI that did not give a usable answer."""


class UpstreamTransportError(UpstreamFailure):
    """The HTTP exchange itself failed; the message is the one the caller will read."""


class UpstreamTimeout(UpstreamTransportError):
    """Azure OpenAI sent nothing within RELAY_UPSTREAM_TIMEOUT_S: not retried, its time is spent."""


class UpstreamUnreachable(UpstreamTransportError):
    """No connection to Azure OpenAI, or it failed before an answer began: retried."""


class UpstreamBroken(UpstreamTransportError):
    """An answer that had begun broke off."""


class UpstreamRejected(UpstreamFailure):
    """Azure OpenAI answered with a non-2xx status; ``body`` is its parsed JSON, or None."""

    def __init__(self, status: int, body: object, headers: Mapping[str, str]) -> None:
        super().__init__(f"Azure OpenAI answered with status {status}.")
        self.status = status
        self.body = body
        self.headers = headers


class UpstreamCredentialError(UpstreamFailure):
    """The relay's own credential for Azure OpenAI could not be had.

    The message names what an operator should check, never a secret; it is
    logged, and the caller gets a bare ``upstream_error``.
    """
