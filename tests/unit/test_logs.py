"""shared.logs: one JSON object per line, whatever the values, each with its time in UTC; a request's line at the level its status deserves."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import pytest

from shared.logs import RequestLog, UpstreamNotes, log_event, log_failure, quiet_client_loggers, request_outcome, utc_timestamp

LOGGER = logging.getLogger("relay.test.logs")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [logging.Formatter().format(record) for record in caplog.records]


def test_a_hostile_value_cannot_break_a_line_or_forge_a_field(caplog: pytest.LogCaptureFixture) -> None:
    hostile = 'x"\n{"event":"forged","status":200}\r\n\u2028é'
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        log_event(LOGGER, logging.INFO, "relay.test", source_ip=hostile)
    [line] = lines(caplog)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and line.isascii()
    fields = json.loads(line)
    del fields["time"]
    assert fields == {"event": "relay.test", "source_ip": hostile}


def test_nothing_is_encoded_for_a_level_that_is_off(caplog: pytest.LogCaptureFixture) -> None:
    class Unencodable:
        def __str__(self) -> str:
            raise AssertionError("encoded although the level is off")

    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        log_event(LOGGER, logging.INFO, "relay.test", value=Unencodable())
    assert caplog.records == []


@pytest.mark.parametrize(("status", "level"), [(200, logging.INFO), (429, logging.INFO), (499, logging.INFO), (502, logging.WARNING)])
def test_a_request_line_holds_its_fields_and_server_failures_are_warnings(
    caplog: pytest.LogCaptureFixture, status: int, level: int
) -> None:
    record = RequestLog("0" * 32, "chat.completions", client_request_id="spa-7", oid="oid-1", stream=True)
    record.usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "completion_tokens_details": {"reasoning_tokens": 1}}
    with caplog.at_level(logging.INFO, logger="relay.request"):
        record.emit(status, None if status == 200 else "some_code")
    [logged] = caplog.records
    line = json.loads(logged.getMessage())
    assert logged.levelno == level
    assert line["event"] == "relay.request" and (line["status"], line["route"], line["client_request_id"]) == (status, "chat.completions", "spa-7")
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (9, 3, 12)
    assert "completion_tokens_details" not in line and isinstance(line["latency_ms"], float)


def test_a_failure_is_one_line_with_its_type_and_innermost_frames_never_its_message(caplog: pytest.LogCaptureFixture) -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("prompt: tell me the launch codes")
        deep(n - 1)

    try:
        deep(20)
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger=LOGGER.name):
            log_failure(LOGGER, "relay.test_failed", exc, request_id="r-1")
    [line] = lines(caplog)
    assert "\n" not in line and "launch codes" not in line
    fields = json.loads(line)
    assert (fields["event"], fields["request_id"], fields["error_type"]) == ("relay.test_failed", "r-1", "ValueError")
    frames = fields["trace"].split(" < ")
    assert len(frames) == 6 and all(frame.startswith("test_logs.py:") and frame.endswith(" deep") for frame in frames)


def test_chatty_client_loggers_are_quieted_to_warnings() -> None:
    chatty = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    chatty.setLevel(logging.NOTSET)
    quiet_client_loggers()
    assert not chatty.isEnabledFor(logging.INFO) and chatty.isEnabledFor(logging.WARNING)
    assert not logging.getLogger("azure.identity").isEnabledFor(logging.INFO)


def test_the_worker_librarys_info_lines_are_quieted_unless_the_worker_is_being_debugged() -> None:
    library = logging.getLogger("azure.functions")
    try:
        library.setLevel(logging.NOTSET)
        quiet_client_loggers({})
        assert not library.isEnabledFor(logging.INFO) and library.isEnabledFor(logging.WARNING)
        library.setLevel(logging.DEBUG)
        quiet_client_loggers({"PYTHON_ENABLE_DEBUG_LOGGING": "true"})
        assert library.isEnabledFor(logging.DEBUG)
    finally:
        library.setLevel(logging.NOTSET)


def test_the_exporters_line_after_every_batch_it_sends_is_quieted() -> None:
    root, before = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.INFO)  # as the Functions worker runs it
    try:
        logging.getLogger("azure.monitor.opentelemetry.exporter").setLevel(logging.NOTSET)
        assert logging.getLogger("azure.monitor.opentelemetry.exporter.export._base").isEnabledFor(logging.INFO)
        quiet_client_loggers()
        assert not logging.getLogger("azure.monitor.opentelemetry.exporter.export._base").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(before)


def test_every_line_starts_with_its_time_in_iso_8601_utc(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        before = time.time()
        log_event(LOGGER, logging.INFO, "relay.test", status=200)
        RequestLog("r-1", "chat.completions").emit(200)
        after = time.time()
    assert len(caplog.records) == 2
    for record in caplog.records:
        line = json.loads(record.getMessage())
        assert next(iter(line)) == "time", line
        written = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert written.tzinfo == UTC and before - 0.001 <= written.timestamp() <= after


def test_the_time_is_utc_to_the_millisecond() -> None:
    assert utc_timestamp(1_796_621_401.25) == "2026-12-07T05:30:01.250Z"
    assert utc_timestamp(0.999) == "1970-01-01T00:00:00.999Z"


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (200, None, "ok"),
        (400, "invalid_request", "refused"),
        (403, "user_blocked", "blocked"),
        (429, "user_quota_exceeded", "over_budget"),
        (429, "rate_limited", "upstream_error"),
        (502, "upstream_error", "upstream_error"),
        (504, "upstream_timeout", "upstream_error"),
        (499, "client_closed_request", "client_gone"),
        (499, "caller_stalled", "client_gone"),
        (500, "internal_error", "error"),
        (503, "server_busy", "error"),
    ],
)
def test_a_records_outcome_says_who_decided(status: int, code: str | None, outcome: str) -> None:
    assert request_outcome(status, code) == outcome


def test_a_record_holds_the_schemas_fields_and_what_azure_answered() -> None:
    record = RequestLog("a" * 32, "chat.completions", app="contoso", deployment="gpt-4o", model="gpt-4o-2024-11-20", stream=True)
    record.usage = {
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    record.blocklist, record.budget = "pass", "admitted"
    record.upstream = UpstreamNotes(traceparent=f"00-{'1' * 32}-{'2' * 16}-01", retries=1, azure_request_id="apim-1", azure_x_request_id="x-1")
    record.mark_first_byte()
    fields = record.fields(200)
    assert fields["schema"] == "relay.request/1" and fields["outcome"] == "ok" and fields["app"] == "contoso"
    assert (fields["cached_tokens"], fields["reasoning_tokens"], fields["retries"]) == (4, 2, 1)
    assert (fields["azure_request_id"], fields["azure_x_request_id"]) == ("apim-1", "x-1")
    # Without an invocation's trace context, the operation is the trace the call to Azure started.
    assert fields["operation_id"] == "1" * 32
    assert (fields["blocklist"], fields["budget"]) == ("pass", "admitted")
    assert 0 <= fields["first_byte_ms"] <= fields["latency_ms"]
    assert "usage_estimated" not in fields


def test_a_refusal_by_a_control_is_the_controls_decision_in_the_record() -> None:
    record = RequestLog("b" * 32, "chat.completions", blocklist="pass", budget="admitted")
    assert record.fields(403, "user_blocked")["blocklist"] == "blocked"
    assert record.fields(503, "blocklist_unavailable")["blocklist"] == "unavailable"
    assert record.fields(429, "user_quota_exceeded")["budget"] == "refused"


def test_a_record_goes_to_its_sink_instead_of_the_log_when_it_has_one(caplog: pytest.LogCaptureFixture) -> None:
    written: list[tuple[dict[str, object], int]] = []

    class Sink:
        def write(self, fields: dict[str, object], level: int, trace_context: object = None) -> None:
            written.append((fields, level))

    record = RequestLog("c" * 32, "me", sink=Sink())
    with caplog.at_level(logging.INFO, logger="relay.request"):
        record.emit(502, "upstream_error")
    assert caplog.records == []
    [(fields, level)] = written
    assert (fields["status"], fields["outcome"], level) == (502, "upstream_error", logging.WARNING)


def test_the_controls_health_and_audit_events_are_forwarded_and_per_request_events_are_not() -> None:
    from shared.logs import forward_events

    sent: list[tuple[str, dict[str, object], int]] = []
    forward_events(lambda event, fields, level: sent.append((event, fields, level)))
    try:
        for event in ("blocklist.refresh_failed", "budget.sync_failed", "relay.audit", "relay.unhandled", "relay.blocked", "budget.usage_estimated"):
            log_event(LOGGER, logging.WARNING, event, n=1)
    finally:
        forward_events(None)
    log_event(LOGGER, logging.WARNING, "blocklist.loaded", n=2)  # no sink: the log line only
    assert [(event, fields, level) for event, fields, level in sent] == [
        ("blocklist.refresh_failed", {"n": 1}, logging.WARNING),
        ("budget.sync_failed", {"n": 1}, logging.WARNING),
        ("relay.audit", {"n": 1}, logging.WARNING),
        ("relay.unhandled", {"n": 1}, logging.WARNING),
    ]
