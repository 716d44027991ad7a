"""What the caller gets when Azure OpenAI could not be used: the one mapping from a typed cause to a RelayError.

The upstream client raises typed causes (shared/errors.py, "Causes"), decides on retries with
them, and only then maps them here, as httpx's ``map_httpcore_exceptions`` maps transport
exceptions in one place. Azure's non-2xx answers are mapped by status through one table, as
azure-core's ``map_error`` does with its ``error_map``. No mapped message passes on an upstream
URL, host name, token or key.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from shared.errors import (
    RelayError,
    UpstreamCredentialError,
    UpstreamFailure,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamTransportError,
    content_filter,
    invalid_request,
    rate_limited,
    upstream_error,
    upstream_timeout,
)

# What an upstream message may hold that the caller must not see: URLs, Azure host names, tokens.
_UPSTREAM_DETAILS = re.compile(
    r"https?://\S+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:azure\.com|azure\.net|windows\.net|azure\.us|azure\.cn|microsoft\.com)\b"
    r"|\beyJ[\w-]*\.[\w-]+\.[\w-]*",
    re.IGNORECASE,
)
# The longest upstream message passed on, in characters.
MESSAGE_MAX = 500
_WORD_AT_END = re.compile(r"\S+\Z")


def relay_error_for(cause: UpstreamFailure) -> RelayError:
    """The caller's error for ``cause``; it keeps ``cause``, so later decisions can go by its type."""
    if isinstance(cause, UpstreamTimeout):
        return upstream_timeout(str(cause), cause)
    if isinstance(cause, UpstreamTransportError):
        return upstream_error(str(cause), cause)
    if isinstance(cause, UpstreamCredentialError):
        return upstream_error("The relay could not obtain its credentials for Azure OpenAI.", cause)
    if isinstance(cause, UpstreamRejected):
        row = _BY_STATUS.get(cause.status)
        return row(cause) if row is not None else upstream_error(f"Azure OpenAI answered with status {cause.status}.", cause)
    raise TypeError(f"no caller's error for {type(cause).__name__}")


@contextlib.contextmanager
def as_caller_errors() -> Iterator[None]:
    """Raise a typed cause from the block as the caller's error (for failures past any retry decision)."""
    try:
        yield
    except UpstreamFailure as cause:
        raise relay_error_for(cause) from cause


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Azure's ``retry-after-ms`` or ``retry-after`` (seconds), whichever comes first and is a number."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def _error_fields(body: object) -> dict[str, Any]:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _refused_request(cause: UpstreamRejected) -> RelayError:
    fields = _error_fields(cause.body)
    if cause.status == 400 and fields.get("code") == "content_filter":
        innererror = fields.get("innererror")
        result = innererror.get("content_filter_result") if isinstance(innererror, dict) else None
        # innererror as Azure sends it: Semantic Kernel and Agent Framework read the filter results there.
        detail = {"innererror": innererror} if isinstance(innererror, dict) else {}
        return content_filter({"content_filter_result": result if isinstance(result, dict) else {}, **detail}, cause)
    message = fields.get("message")
    text = _clipped(_UPSTREAM_DETAILS.sub("<redacted>", message)) if isinstance(message, str) else "Azure OpenAI rejected the request."
    param = fields.get("param")
    return invalid_request(text, param=param if isinstance(param, str) else None, cause=cause)


def _clipped(text: str) -> str:
    """``text`` cut to :data:`MESSAGE_MAX` characters between words, never inside one.

    A word cut short would pass on part of what a later step rewrites whole: the Responses relay
    seals the ids a message names, and a cut id no longer has their shape.
    """
    if len(text) <= MESSAGE_MAX:
        return text
    kept = text[: MESSAGE_MAX - 1]
    if not text[MESSAGE_MAX - 1].isspace():
        kept = _WORD_AT_END.sub("", kept)
    return kept.rstrip() + "…"


def _credentials_refused(cause: UpstreamRejected) -> RelayError:
    return upstream_error("The relay could not authenticate to Azure OpenAI.", cause)


def _deployment_missing(cause: UpstreamRejected) -> RelayError:
    return upstream_error("The deployment was not found on Azure OpenAI.", cause)


def _rate_limited(cause: UpstreamRejected) -> RelayError:
    return rate_limited(retry_after_seconds(cause.headers), cause)


# Azure's status → the caller's error; any other status is a 502 naming it.
_BY_STATUS: Mapping[int, Callable[[UpstreamRejected], RelayError]] = {
    400: _refused_request,
    422: _refused_request,
    401: _credentials_refused,
    403: _credentials_refused,
    404: _deployment_missing,
    429: _rate_limited,
}
