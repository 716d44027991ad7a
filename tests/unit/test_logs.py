"""shared.logs: every line says when it was written, in UTC."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import pytest

from shared.logs import RequestLog, log_event, utc_timestamp

LOGGER = logging.getLogger("relay.test")


def test_every_line_starts_with_its_time_in_iso_8601_utc(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        before = time.time()
        log_event(LOGGER, logging.INFO, "relay.test", status=200)
        RequestLog("r-1", "chat.completions").emit(200)
        after = time.time()
    for record in caplog.records:
        line = json.loads(record.getMessage())
        assert next(iter(line)) == "time", line
        written = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert written.tzinfo == UTC and before - 0.001 <= written.timestamp() <= after


def test_the_time_is_utc_to_the_millisecond() -> None:
    assert utc_timestamp(1_796_621_401.25) == "2026-12-07T05:30:01.250Z"
    assert utc_timestamp(0.999) == "1970-01-01T00:00:00.999Z"
