"""Pure units: directive parsing and the bounded record store."""

from __future__ import annotations

import pytest

from devhost.emulator.directives import DirectiveError, Directives, parse_directives, strip_directives
from devhost.emulator.records import RecordStore


def test_parse_values_and_defaults() -> None:
    parsed = parse_directives("hi [emulate:rate_limit] [emulate:slow=0.5] [emulate:words=3] [emulate:jailbreak]")
    assert parsed == Directives(rate_limit_s=7, slow_s=0.5, words=3, jailbreak=True)
    assert parse_directives("no directives here") == Directives()
    with pytest.raises(DirectiveError):
        parse_directives("[emulate:status=200]")
    with pytest.raises(DirectiveError):
        parse_directives("[emulate:bad_json=1]")


def test_tool_call_directive_takes_optional_function_names() -> None:
    assert parse_directives("[emulate:tool_call]").tool_call == ()
    assert parse_directives("[emulate:tool_call=get_weather,get_time]").tool_call == ("get_weather", "get_time")
    assert parse_directives("plain").tool_call is None
    with pytest.raises(DirectiveError, match="function names"):
        parse_directives("[emulate:tool_call=get.weather]")
    with pytest.raises(DirectiveError, match="function names"):
        parse_directives("[emulate:tool_call=a,,b]")


def test_strip_leaves_the_words() -> None:
    assert strip_directives("tell [emulate:words=3] me").split() == ["tell", "me"]


def test_records_are_bounded() -> None:
    store = RecordStore(limit=3)
    for _ in range(5):
        store.add("/p", None, {"scheme": "none"}, {})
    assert [r["id"] for r in store.as_list()] == [3, 4, 5]
