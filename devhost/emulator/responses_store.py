"""What a Foundry project keeps of the Responses API: responses, their items, and conversations, per project.

A stored response (``store`` defaults to true) can be retrieved, deleted, listed for its
input items, and continued with ``previous_response_id``: the continuation sees the chain's
items (every earlier input and output) before its own input. Its input and output items can
be named by ``item_reference``. A conversation is a list of items every response made in it
extends (OpenAI's Responses API reference, "Conversation state").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from devhost.emulator.responses_input import new_id


@dataclass
class StoredResponse:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    context: list[dict[str, Any]]
    """The items a continuation sees before its own input: the chain's, this request's input, this output."""
    task: asyncio.Task[None] | None = None
    """A background response still being answered."""


@dataclass
class Conversation:
    body: dict[str, Any]
    items: list[dict[str, Any]] = field(default_factory=list)


class ResponsesStore:
    def __init__(self) -> None:
        self._responses: dict[tuple[str, str], StoredResponse] = {}
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._conversations: dict[tuple[str, str], Conversation] = {}

    def save(self, project: str, stored: StoredResponse) -> None:
        self._responses[(project, stored.response["id"])] = stored
        self.index(project, [*stored.input_items, *stored.response["output"]])

    def index(self, project: str, items: list[dict[str, Any]]) -> None:
        for item in items:
            self._items[(project, item["id"])] = item

    def response(self, project: str, response_id: str) -> StoredResponse | None:
        return self._responses.get((project, response_id))

    def delete_response(self, project: str, response_id: str) -> bool:
        stored = self._responses.pop((project, response_id), None)
        if stored is not None and stored.task is not None:
            stored.task.cancel()
        return stored is not None

    def item(self, project: str, item_id: str) -> dict[str, Any] | None:
        item = self._items.get((project, item_id))
        return None if item is None else dict(item)

    def new_conversation(self, project: str, created_at: int, metadata: dict[str, Any], items: list[dict[str, Any]]) -> Conversation:
        conversation_id = new_id("conv")
        body = {"id": conversation_id, "object": "conversation", "created_at": created_at, "metadata": metadata}
        conversation = Conversation(body, list(items))
        self._conversations[(project, conversation_id)] = conversation
        self.index(project, items)
        return conversation

    def conversation(self, project: str, conversation_id: str) -> Conversation | None:
        return self._conversations.get((project, conversation_id))

    def delete_conversation(self, project: str, conversation_id: str) -> bool:
        return self._conversations.pop((project, conversation_id), None) is not None

    def clear(self) -> None:
        for stored in self._responses.values():
            if stored.task is not None:
                stored.task.cancel()
        self._responses.clear()
        self._items.clear()
        self._conversations.clear()
