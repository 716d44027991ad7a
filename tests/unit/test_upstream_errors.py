"""shared.upstream_errors: each typed cause of an upstream failure becomes the caller's error it always was, keeping the cause."""

from __future__ import annotations

import pytest

from shared.errors import (
    RelayError,
    UpstreamBroken,
    UpstreamCredentialError,
    UpstreamFailure,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from shared.upstream import retry_delay
from shared.upstream_errors import as_caller_errors, relay_error_for, retry_after_seconds


@pytest.mark.parametrize(
    ("cause", "status", "code", "message"),
    [
        (UpstreamTimeout("Azure OpenAI stopped sending in time."), 504, "upstream_timeout", "Azure OpenAI stopped sending in time."),
        (UpstreamUnreachable("Azure OpenAI could not be reached."), 502, "upstream_error", "Azure OpenAI could not be reached."),
        (UpstreamBroken("The stream from Azure OpenAI broke off."), 502, "upstream_error", "The stream from Azure OpenAI broke off."),
        (
            UpstreamCredentialError("Key Vault secret aoai-key not readable: grant Key Vault Secrets User"),
            502,
            "upstream_error",
            "The relay could not obtain its credentials for Azure OpenAI.",
        ),
        (UpstreamRejected(401, None, {}), 502, "upstream_error", "The relay could not authenticate to Azure OpenAI."),
        (UpstreamRejected(403, None, {}), 502, "upstream_error", "The relay could not authenticate to Azure OpenAI."),
        (UpstreamRejected(404, None, {}), 502, "upstream_error", "The deployment was not found on Azure OpenAI."),
        (UpstreamRejected(503, b"", {}), 502, "upstream_error", "Azure OpenAI answered with status 503."),
        (UpstreamRejected(418, None, {}), 502, "upstream_error", "Azure OpenAI answered with status 418."),
        (UpstreamRejected(422, None, {}), 400, "invalid_request", "Azure OpenAI rejected the request."),
    ],
)
def test_each_cause_maps_to_its_callers_error_and_is_kept(cause: UpstreamFailure, status: int, code: str, message: str) -> None:
    error = relay_error_for(cause)
    assert (error.status, error.code, error.message) == (status, code, message)
    assert error.cause is cause


def test_an_operator_detail_of_a_credential_failure_never_reaches_the_caller() -> None:
    error = relay_error_for(UpstreamCredentialError("Key Vault kv-relay.vault.azure.net refused: 403"))
    assert "kv-relay" not in str(error.body())


def test_azures_400_passes_its_reason_and_param_with_hosts_redacted() -> None:
    body = {"error": {"code": "invalid_value", "message": "bad see https://x.openai.azure.com/a and y.vault.azure.net", "param": "messages"}}
    error = relay_error_for(UpstreamRejected(400, body, {}))
    assert (error.status, error.code, error.param, error.message) == (400, "invalid_request", "messages", "bad see <redacted> and <redacted>")


def test_a_content_filter_refusal_keeps_azures_filter_results() -> None:
    result = {"hate": {"filtered": True, "severity": "high"}}
    body = {"error": {"code": "content_filter", "message": "filtered", "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result}}}
    error = relay_error_for(UpstreamRejected(400, body, {}))
    assert (error.status, error.code, error.param) == (400, "content_filter", "prompt")
    assert error.body()["error"]["content_filter_result"] == result
    assert error.body()["error"]["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    # On 422 the same body is an ordinary refusal: only a 400 is Azure's content filter.
    assert relay_error_for(UpstreamRejected(422, body, {})).code == "invalid_request"


def test_a_429_passes_on_azures_wait_in_whole_seconds() -> None:
    error = relay_error_for(UpstreamRejected(429, None, {"retry-after-ms": "2500"}))
    assert (error.status, error.code, error.headers) == (429, "rate_limited", {"Retry-After": "3"})
    assert relay_error_for(UpstreamRejected(429, None, {})).headers == {"Retry-After": "1"}


def test_retry_after_prefers_milliseconds_and_skips_what_is_not_a_number() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "4"}) == 4.0
    assert retry_after_seconds({"retry-after": "inf"}) is None
    assert retry_after_seconds({"retry-after": "-1"}) is None


async def test_as_caller_errors_raises_the_mapped_error_and_leaves_others_alone() -> None:
    cause = UpstreamTimeout("Azure OpenAI did not answer in time.")
    with pytest.raises(RelayError) as caught, as_caller_errors():
        raise cause
    assert (caught.value.code, caught.value.cause, caught.value.__cause__) == ("upstream_timeout", cause, cause)
    with pytest.raises(KeyError), as_caller_errors():
        raise KeyError("not an upstream failure")


@pytest.mark.parametrize(
    ("cause", "retried"),
    [
        (UpstreamUnreachable("Azure OpenAI could not be reached."), True),
        (UpstreamRejected(500, None, {}), True),
        (UpstreamRejected(502, None, {}), True),
        (UpstreamRejected(503, None, {}), True),
        (UpstreamRejected(504, None, {}), True),
        (UpstreamRejected(501, None, {}), False),
        (UpstreamRejected(400, None, {}), False),
        (UpstreamRejected(404, None, {}), False),
        (UpstreamRejected(429, None, {"retry-after": "3"}), False),
        (UpstreamRejected(429, None, {}), False),
        (UpstreamTimeout("Azure OpenAI did not answer in time."), False),
        (UpstreamBroken("Azure OpenAI's response broke off."), False),
        (UpstreamCredentialError("no token"), False),
    ],
)
def test_the_retry_decision_goes_by_the_cause(cause: UpstreamFailure, retried: bool) -> None:
    assert (retry_delay(cause, 0) is not None) is retried


def test_a_short_429_is_retried_after_azures_wait() -> None:
    assert retry_delay(UpstreamRejected(429, None, {"retry-after-ms": "800"}), 0) == 0.8


def test_a_long_400_message_is_cut_between_words_so_no_id_goes_out_cut_short() -> None:
    raw_id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    filler = "word " * 95  # 475 characters: the id starts at 475 and runs past the 500-character bound
    body = {"error": {"code": "invalid_value", "message": f"{filler}{raw_id} could not be continued."}}
    error = relay_error_for(UpstreamRejected(400, body, {}))
    assert error.message == filler.rstrip() + "…"
    assert "resp_" not in error.message
    assert len(error.message) <= 500


def test_a_400_message_of_500_characters_passes_whole_and_a_longer_one_is_cut_at_a_space() -> None:
    message = "x" * 499 + " y"
    error = relay_error_for(UpstreamRejected(400, {"error": {"message": message}}, {}))
    assert error.message == "x" * 499 + "…"
    short = relay_error_for(UpstreamRejected(400, {"error": {"message": "x" * 500}}, {}))
    assert short.message == "x" * 500
