"""The streams open on this instance and whose they are, so that a block reaching the instance ends the blocked caller's.

A stream joins when its response has started and leaves when it ends, however it ends
(``shared/forwarded_stream.py``). The block list's refresh task checks every open stream
against each copy of the list it reads (``AccessControls`` wires it to ``shared/blocklist_cache.py``):
a look-up per open stream per refresh, nothing per event or per request. Every copy is checked,
not only one that changed, so a stream that opened while a refresh was in flight is caught by
the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.errors import RelayError, user_blocked

if TYPE_CHECKING:
    from shared.blocklist import BlockEntry
    from shared.caller import Caller

EndWith = Callable[[RelayError], None]


class OpenStream:
    """One stream's place in the registry: whose it is; ``opened`` and ``closed`` bracket its serving."""

    __slots__ = ("_end_with", "_registry", "caller", "request_id")

    def __init__(self, registry: OpenStreams, caller: Caller, request_id: str) -> None:
        self.caller = caller
        self.request_id = request_id
        self._registry = registry
        self._end_with: EndWith | None = None

    def opened(self, end_with: EndWith) -> None:
        """The stream is being served; ``end_with`` ends it from outside its task with an error event."""
        self._end_with = end_with
        self._registry._open.add(self)

    def closed(self) -> None:
        self._registry._open.discard(self)
        self._end_with = None

    def _end(self, error: RelayError) -> None:
        if self._end_with is not None:
            self._end_with(error)


class OpenStreams:
    def __init__(self) -> None:
        self._open: set[OpenStream] = set()

    def __len__(self) -> int:
        return len(self._open)

    def watch(self, caller: Caller, request_id: str) -> OpenStream:
        """An entry for one stream of ``caller``, not yet open."""
        return OpenStream(self, caller, request_id)

    def end_blocked(self, blocking: Callable[[Caller], BlockEntry | None]) -> list[tuple[OpenStream, BlockEntry]]:
        """End each open stream whose caller ``blocking`` finds an entry for with a ``user_blocked`` event; return them and the entries.

        An ended stream leaves the registry at once, so a later copy does not end (and log) it again.
        """
        ended = []
        for stream in list(self._open):
            entry = blocking(stream.caller)
            if entry is not None:
                self._open.discard(stream)
                stream._end(user_blocked())
                ended.append((stream, entry))
        return ended
