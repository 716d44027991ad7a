"""What a response used, from the service's JSON, and what a chain of responses is known to have used.

The Responses API reports ``usage`` as ``input_tokens``/``output_tokens``/``total_tokens``;
the relay's log line and budgets read chat's names, so it is translated once here. A
continuation (``previous_response_id``) is billed by the service for the whole stored
context, not for its small body: the context of the next turn is the previous response's
input and output, which the relay remembers per response it relayed (``ContextSizes``).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

# Responses whose size an instance remembers: enough for every conversation in flight; older ones are re-read.
MAX_REMEMBERED = 100_000


class NotAResponse(ValueError):
    """The service's answer is not a response object."""


def chat_usage(usage: Any) -> dict[str, int] | None:
    """A Responses ``usage`` under chat's names (prompt, completion and total tokens); None when it has none."""
    if not isinstance(usage, Mapping):
        return None
    counts = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
    }
    kept = {name: value for name, value in counts.items() if isinstance(value, int) and not isinstance(value, bool) and value >= 0}
    return kept or None


def response_of(content: bytes) -> dict[str, Any]:
    """The service's response object (create, retrieve, cancel); raise :class:`NotAResponse` for anything else."""
    try:
        response = json.loads(content)
    except ValueError:
        raise NotAResponse("not JSON") from None
    if not isinstance(response, dict) or not isinstance(response.get("id"), str):
        raise NotAResponse("no id")
    return response


class ContextSizes:
    """The tokens each relayed response's chain holds (its input and output): what continuing it costs at least."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._sizes: OrderedDict[str, int] = OrderedDict()

    def remember(self, response_id: str, usage: Mapping[str, int] | None) -> None:
        total = usage.get("total_tokens") if usage else None
        if total is None:
            return
        self._sizes[response_id] = total
        self._sizes.move_to_end(response_id)
        if len(self._sizes) > self._limit:
            self._sizes.popitem(last=False)

    def get(self, response_id: str) -> int | None:
        return self._sizes.get(response_id)
