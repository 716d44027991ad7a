"""Property tests: no request body makes the request policy misbehave, no upstream bytes make the SSE forwarder misbehave.

- ``parse_body``/``prepare_chat_body`` return a body or raise a 400/413-class
  RelayError, never anything else; what they return holds only allowed
  parameters, an allowed model, capped tokens, and never ``user_security_context``.
- Through the chat handler, whatever the body, the answer is never a 500 and
  the ``user_security_context`` sent upstream is exactly the one built from the
  Easy Auth principal and the front end's ``client-ip``.
- ``SseForwarder`` passes a well-formed stream through byte for byte however it
  is split, and for arbitrary bytes forwards only whole, checked events (a
  prefix of the input) or raises ``MalformedStream``; ``_forward`` turns that into
  one closing ``error`` event and never raises.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devhost.easyauth import principal_headers
from shared.config import Settings, load_settings
from shared.errors import RelayError, upstream_error, upstream_timeout
from shared.relay import Relay, _forward
from shared.request_log import RequestLog
from shared.request_policy import ALLOWED_PARAMETERS, parse_body, prepare_chat_body
from shared.sse import MalformedStream, SseForwarder
from shared.upstream import Upstream
from tests.support.asgi import make_request

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OID = "1b2c3d4e-0000-4000-8000-000000000003"
TID = "72f988bf-0000-4000-8000-000000000002"
SETTINGS = load_settings(
    {
        "AZURE_OPENAI_ENDPOINT": "https://contoso-aoai.openai.azure.com",
        "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini,gpt-4o",
        "APPLICATION_NAME": "contoso-chat-spa",
        "WEBSITE_AUTH_ENABLED": "true",
        "RELAY_MAX_TOKENS": "100",
        "RELAY_MAX_N": "2",
    }
)
EXPECTED_CONTEXT = {"application_name": "contoso-chat-spa", "end_user_id": OID, "end_user_tenant_id": TID, "source_ip": "203.0.113.7"}

# --- strategies -------------------------------------------------------------------------------------

texts = st.text(max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
smuggled = st.sampled_from(["user_security_context", "data_sources", "user", "User_Security_Context", "functions", "extra_body"])
param_names = st.sampled_from(sorted(ALLOWED_PARAMETERS)) | smuggled | texts
messages = st.one_of(
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "wizard"]), "content": json_values | texts}),
        max_size=3,
    ),
    json_values,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "messages": messages,
        "model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "gpt-5", "GPT-4O"]) | json_values,
        "max_tokens": st.integers(-5, 10**9) | json_values,
        "max_completion_tokens": st.integers(-5, 10**9),
        "n": st.integers(-1, 5),
        "stream": st.booleans() | json_values,
        "temperature": st.floats(allow_nan=False) | json_values,
    },
).flatmap(lambda base: st.dictionaries(param_names, json_values, max_size=3).map(lambda extra: {**extra, **base}))


# --- request policy ----------------------------------------------------------------------------------


@FAST
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parse_body_returns_an_object_or_a_400(raw: bytes) -> None:
    try:
        body = parse_body(raw)
    except RelayError as error:
        assert (error.status, error.code) == (400, "invalid_request")
    else:
        assert isinstance(body, dict)


@FAST
@given(body=bodies)
def test_prepared_body_holds_only_what_the_policy_allows(body: dict[str, Any]) -> None:
    try:
        prepared = prepare_chat_body(body, SETTINGS)
    except RelayError as error:
        assert error.status == 400
        assert error.code in {"invalid_request", "parameter_not_allowed", "model_not_allowed"}
        assert "Traceback" not in error.message
        return
    assert set(prepared) <= ALLOWED_PARAMETERS
    assert "user_security_context" not in prepared and "data_sources" not in prepared and "user" not in prepared
    assert prepared["model"] in SETTINGS.deployments
    for name in ("max_tokens", "max_completion_tokens"):
        if name in prepared:
            assert 1 <= prepared[name] <= SETTINGS.max_tokens
    assert prepared.get("n", 1) <= SETTINGS.max_n
    assert isinstance(prepared["messages"], list) and prepared["messages"]


class CapturingUpstream:
    """Records what the relay would send to Azure OpenAI, then answers 502 (nothing is streamed)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def open(self, body: dict[str, Any], request_id: str) -> Any:
        self.sent.append(json.loads(json.dumps(body)))
        raise RelayError(502, "upstream_error", "stub")

    async def aclose(self) -> None:
        pass


TRUSTED_HEADERS = {
    **{k.decode(): v.decode() for k, v in principal_headers({"oid": OID, "tid": TID, "scp": "user_impersonation", "name": "Ada"})},
    "client-ip": "203.0.113.7:51234",
}


@FAST
@given(body=bodies.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=200))
def test_no_body_gets_a_500_or_changes_the_security_context(body: bytes) -> None:
    upstream = CapturingUpstream()

    async def factory(settings: Settings) -> Upstream:
        return upstream  # type: ignore[return-value]

    relay = Relay(SETTINGS, factory)
    response = asyncio.run(relay.chat_completions(make_request("POST", "/api/v1/chat/completions", TRUSTED_HEADERS, body)))
    assert response.status_code in {400, 413, 502}, response.body
    payload = json.loads(bytes(response.body))
    assert set(payload["error"]) >= {"message", "type", "param", "code"}
    for sent in upstream.sent:
        assert sent["user_security_context"] == EXPECTED_CONTEXT
        assert "data_sources" not in sent and "user" not in sent


# --- SSE forwarder ----------------------------------------------------------------------------------

chunk_objects = st.dictionaries(st.sampled_from(["id", "choices", "object", "model", "x"]), json_values, max_size=4)
usage_chunk = st.builds(
    lambda p, c: {"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}},
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
well_formed_events = st.lists(
    st.one_of(
        chunk_objects.map(lambda o: b"data: " + json.dumps(o).encode() + b"\n\n"),
        usage_chunk.map(lambda o: b"data: " + json.dumps(o).encode() + b"\n\n"),
        st.just(b": keep-alive\n\n"),
    ),
    max_size=8,
).map(lambda events: b"".join(events) + b"data: [DONE]\n\n")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@FAST
@given(stream=well_formed_events, cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_a_well_formed_stream_passes_byte_for_byte_however_it_is_split(stream: bytes, cuts: list[int]) -> None:
    forwarder = SseForwarder()
    out = b"".join(forwarder.feed(piece) for piece in split(stream, cuts))
    forwarder.finish()
    assert out == stream


sse_noise = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"data: {}\n\n", b"data: [DONE]\n\n", b"\n\n", b"event: x\n", b'data: {"usage"', b'completion_tokens"}\n\n']),
        chunk_objects.map(lambda o: b"data: " + json.dumps(o).encode() + b"\n\n"),
    ),
    max_size=10,
).map(b"".join)


@FAST
@given(stream=well_formed_events, cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_a_usage_chunk_the_caller_did_not_ask_for_is_logged_but_not_forwarded(stream: bytes, cuts: list[int]) -> None:
    forwarder = SseForwarder(hide_usage=True)
    out = b"".join(forwarder.feed(piece) for piece in split(stream, cuts))
    forwarder.finish()
    events = [event + b"\n\n" for event in stream.split(b"\n\n")[:-1]]
    chunks = [(event, json.loads(event[6:])) for event in events if event.startswith(b"data: {")]
    usage_only = [(event, chunk) for event, chunk in chunks if chunk.get("choices") == [] and "usage" in chunk]
    assert out == b"".join(event for event in events if event not in {e for e, _ in usage_only})
    assert forwarder.usage == (usage_only[-1][1]["usage"] if usage_only else None)


@FAST
@given(stream=sse_noise, cuts=st.lists(st.integers(0, 10**6), max_size=12))
def test_arbitrary_bytes_give_whole_checked_events_or_malformed_stream(stream: bytes, cuts: list[int]) -> None:
    forwarder = SseForwarder()
    out = b""
    try:
        for piece in split(stream, cuts):
            out += forwarder.feed(piece)
        forwarder.finish()
    except MalformedStream:
        pass
    assert stream.startswith(out)
    assert out == b"" or out.endswith(b"\n\n")
    for event in out.split(b"\n\n")[:-1]:
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                assert payload == b"[DONE]" or (payload.startswith(b"{") and payload.endswith(b"}"))


class FakeUpstream:
    def __init__(self, pieces: list[bytes], error: BaseException | None) -> None:
        self.pieces, self.error, self.closed = pieces, error, False

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


@FAST
@given(
    stream=sse_noise | well_formed_events,
    cuts=st.lists(st.integers(0, 10**6), max_size=8),
    error=st.sampled_from([None, upstream_timeout(), upstream_error("The stream from Azure OpenAI broke off.")]),
)
def test_forward_never_raises_and_ends_with_done_or_one_error_event(stream: bytes, cuts: list[int], error: BaseException | None) -> None:
    upstream = FakeUpstream(split(stream, cuts), error)
    record = RequestLog("prop", "chat.completions")

    async def run() -> bytes:
        return b"".join([piece async for piece in _forward(upstream, record, SseForwarder())])  # type: ignore[arg-type]

    out = asyncio.run(run())
    assert upstream.closed and record.status is not None
    if out.endswith(b"data: [DONE]\n\n") and error is None:
        assert out == stream and record.status == 200
        return
    head, sep, last = out.rpartition(b"event: error\n")
    assert sep, out[-200:]
    assert stream.startswith(head)
    assert json.loads(last.removeprefix(b"data: "))["error"]["code"] in {"upstream_error", "upstream_timeout"}
    assert record.status in {502, 504}
