"""shared.open_streams: a new copy of the block list ends the open streams of the callers it blocks, and only theirs.

How a stream ends when told to: tests/unit/test_forwarded_stream.py; a block written to the table ending a
stream served by the relay: tests/unit/test_access_controls.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from shared.blocklist import BlockEntry, Snapshot
from shared.caller import Caller
from shared.easyauth import Principal
from shared.errors import RelayError
from shared.open_streams import OpenStream, OpenStreams
from tests.support.identities import ADA_OID, ADA_TID, OTHER_OID

NOW = 1_800_000_000.0


def caller(oid: str, ip: str = "203.0.113.7") -> Caller:
    return Caller(Principal(oid, ADA_TID, None, None, "aad", frozenset(), None, False, ()), ip)


class Stream:
    """A stream being served: the errors it was ended with."""

    def __init__(self, streams: OpenStreams, who: Caller, request_id: str) -> None:
        self.ended_with: list[RelayError] = []
        self.entry: OpenStream = streams.watch(who, request_id)
        self.entry.opened(self.ended_with.append)


def blocking(snapshot: Snapshot) -> Callable[[Caller], BlockEntry | None]:
    return lambda who: snapshot.match(who.principal.object_id, who.principal.tenant_id, who.source_ip, NOW)


def test_a_copy_that_blocks_a_caller_ends_each_of_their_streams_with_user_blocked_and_no_one_elses() -> None:
    streams = OpenStreams()
    ada_1, ada_2 = Stream(streams, caller(ADA_OID), "a1"), Stream(streams, caller(ADA_OID), "a2")
    other = Stream(streams, caller(OTHER_OID), "o1")
    row = BlockEntry("oid", ADA_OID, ADA_OID, alert_id="alert-7")

    ended = streams.end_blocked(blocking(Snapshot([row], NOW)))

    assert sorted((stream.request_id, entry.alert_id) for stream, entry in ended) == [("a1", "alert-7"), ("a2", "alert-7")]
    assert [(e.status, e.code) for e in ada_1.ended_with + ada_2.ended_with] == [(403, "user_blocked")] * 2
    assert other.ended_with == []
    assert len(streams) == 1


def test_an_address_range_block_ends_the_streams_of_whoever_calls_from_it() -> None:
    streams = OpenStreams()
    inside, outside = Stream(streams, caller(OTHER_OID, "198.51.100.200"), "in"), Stream(streams, caller(ADA_OID, "198.51.101.1"), "out")
    streams.end_blocked(blocking(Snapshot([BlockEntry("ip", "198.51.100.0/24", "198.51.100.0_24")], NOW)))
    assert (len(inside.ended_with), len(outside.ended_with)) == (1, 0)


def test_a_copy_that_blocks_no_open_caller_ends_nothing() -> None:
    streams = OpenStreams()
    ada = Stream(streams, caller(ADA_OID), "a1")
    lapsed = BlockEntry("oid", ADA_OID, ADA_OID, expires_at=datetime.fromtimestamp(NOW - 1, UTC))
    assert streams.end_blocked(blocking(Snapshot([BlockEntry("oid", OTHER_OID, OTHER_OID)], NOW))) == []
    assert streams.end_blocked(blocking(Snapshot([lapsed], NOW))) == []
    assert streams.end_blocked(blocking(Snapshot([], NOW))) == []
    assert ada.ended_with == [] and len(streams) == 1


def test_an_ended_stream_is_not_ended_or_reported_again_by_the_next_copy() -> None:
    streams = OpenStreams()
    ada = Stream(streams, caller(ADA_OID), "a1")
    snapshot = Snapshot([BlockEntry("oid", ADA_OID, ADA_OID)], NOW)
    assert len(streams.end_blocked(blocking(snapshot))) == 1
    assert streams.end_blocked(blocking(snapshot)) == []
    assert len(ada.ended_with) == 1


def test_only_streams_being_served_are_ended() -> None:
    streams = OpenStreams()
    not_started = streams.watch(caller(ADA_OID), "a0")
    finished = Stream(streams, caller(ADA_OID), "a1")
    finished.entry.closed()
    assert len(streams) == 0
    assert streams.end_blocked(blocking(Snapshot([BlockEntry("oid", ADA_OID, ADA_OID)], NOW))) == []
    assert finished.ended_with == []
    not_started.opened(lambda error: None)
    assert len(streams) == 1
