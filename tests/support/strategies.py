"""Hypothesis strategies and helpers that several property tests share."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from devhost.appservice_auth import principal_headers
from devhost.emulator.json_schema import FORMATS
from shared.caller import identify_caller
from shared.config import load_settings
from shared.errors import upstream_error, upstream_timeout
from shared.request_policy import ALLOWED_PARAMETERS
from tests.support.app_settings import REQUIRED_SETTINGS
from tests.support.identities import ADA_OID, ADA_TID

guids = st.uuids().map(str)
lookalike_guids = st.builds(
    lambda g, i, c: g[:i] + c + g[i + 1 :],
    guids,
    st.integers(0, 35),
    st.sampled_from(["\uff11", "\u0661", "\u00b9", "\u212a", "G", " ", "\n", "{"]),
)
guid_like = st.one_of(guids, guids.map(str.upper), lookalike_guids, guids.map(lambda g: g + "\n"))

# The property tests' profile: examples enough to find edge cases, no per-example deadline on a noisy machine.
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def json_values(texts: st.SearchStrategy[str], *, finite: bool, max_leaves: int) -> st.SearchStrategy[object]:
    """JSON-shaped values; ``finite=False`` also gives NaN and infinities, which ``json.dumps`` writes as non-JSON."""
    floats = st.floats(allow_nan=False, allow_infinity=False) if finite else st.floats()
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | texts,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
        max_leaves=max_leaves,
    )


def header_sets(names: list[str], values: st.SearchStrategy[str], max_size: int = 5) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Header (name, value) pairs, names in random case, possibly repeated."""
    name = st.sampled_from(names).flatmap(
        lambda n: st.lists(st.booleans(), min_size=len(n), max_size=len(n)).map(
            lambda upper: "".join(c.upper() if u else c for c, u in zip(n, upper, strict=True))
        )
    )
    return st.lists(st.tuples(name, values), max_size=max_size)


def as_mapping(pairs: list[tuple[str, str]], starlette: bool) -> dict[str, str] | Headers:
    if starlette:
        try:
            return Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs])
        except UnicodeEncodeError:
            pass
    return dict(pairs)


def values_of(headers: dict[str, str] | Headers, name: str) -> list[str]:
    return [v for k, v in headers.items() if k.lower() == name]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given points (modulo its length), as a network might deliver it."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# Chat completion bodies: allowed, smuggled and arbitrary parameters with arbitrary JSON values,
# for a relay configured with BODY_SETTINGS (two deployments, small caps, so caps are hit).
BODY_SETTINGS = load_settings(
    {
        **REQUIRED_SETTINGS,
        "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini,gpt-4o",
        "WEBSITE_AUTH_ENABLED": "true",
        "RELAY_MAX_TOKENS": "100",
        "RELAY_MAX_N": "2",
    }
)
# The caller those bodies come from, as the platform vouched for it.
CALLER_OID, CALLER_TID = ADA_OID, ADA_TID
CALLER_HEADERS = {
    **{k.decode(): v.decode() for k, v in principal_headers({"oid": CALLER_OID, "tid": CALLER_TID, "scp": "user_impersonation", "name": "Ada"})},
    "client-ip": "203.0.113.7:51234",
}
CALLER = identify_caller(CALLER_HEADERS, BODY_SETTINGS)
CALLER_CONTEXT = {
    "application_name": "contoso-chat-spa",
    "end_user_id": CALLER_OID,
    "end_user_tenant_id": CALLER_TID,
    "source_ip": "203.0.113.7",
}
# Text as JSON can carry it: often with a lone UTF-16 surrogate (category Cs), which st.text() never makes.
body_texts = st.text(max_size=30) | st.builds(
    lambda before, surrogate, after: before + surrogate + after,
    st.text(max_size=10),
    st.characters(categories=["Cs"]),
    st.text(max_size=10),
)
# Where this string stands as a JSON value, raw_bodies writes a number literal too large for a double.
_HUGE = "\x00huge-number\x00"
_HUGE_LITERALS = [b"1e999", b"-1E+400", b"2e308", b"1" + b"0" * 400 + b".5"]
body_json = json_values(body_texts | st.just(_HUGE), finite=True, max_leaves=10)
smuggled = st.sampled_from(["user_security_context", "data_sources", "user", "User_Security_Context", "extra_body", "web_search_options"])
param_names = st.sampled_from(sorted(ALLOWED_PARAMETERS)) | smuggled | body_texts
messages = st.one_of(
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", "wizard"]), "content": body_json | body_texts}),
        max_size=3,
    ),
    body_json,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "messages": messages,
        "model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "gpt-5", "GPT-4O"]) | body_json,
        "max_tokens": st.integers(-5, 10**9) | body_json,
        "max_completion_tokens": st.integers(-5, 10**9),
        "n": st.integers(-1, 5),
        "stream": st.booleans() | body_json,
        "temperature": st.floats(allow_nan=False) | body_json,
    },
).flatmap(lambda base: st.dictionaries(param_names, body_json, max_size=3).map(lambda extra: {**extra, **base}))
# Bodies the policy accepts, with arbitrary text and JSON wherever Azure takes free-form data.
content_parts = st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": body_texts}, optional={"extra": body_json}),
    min_size=1,
    max_size=3,
)
accepted_bodies = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system", "developer", "assistant"]), "content": body_texts | content_parts}
            ),
            min_size=1,
            max_size=3,
        )
    },
    optional={
        "metadata": st.dictionaries(body_texts, body_texts, max_size=3),
        "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": body_json}), max_size=2),
        "prompt_cache_key": body_texts,
        "user": body_texts,
        "stream": st.booleans(),
    },
)
# Bodies as bytes on the wire: JSON escapes for every character (lone surrogates as \\udXXX), huge number literals.
raw_bodies = st.builds(
    lambda body, literal: json.dumps(body).replace(json.dumps(_HUGE), literal.decode()).encode(),
    bodies | accepted_bodies,
    st.sampled_from(_HUGE_LITERALS),
)


# Azure OpenAI event streams: well formed, and noise around well-formed pieces.
chunk_objects = st.dictionaries(st.sampled_from(["id", "choices", "object", "model", "x"]), body_json, max_size=4)
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


sse_noise = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([b"data: {}\n\n", b"data: [DONE]\n\n", b"\n\n", b"event: x\n", b'data: {"usage"', b'completion_tokens"}\n\n']),
        chunk_objects.map(lambda o: b"data: " + json.dumps(o).encode() + b"\n\n"),
    ),
    max_size=10,
).map(b"".join)


# What an upstream stream can be, and how it can end: any bytes or a well-formed stream, then the end or a failure.
any_stream = sse_noise | well_formed_events
upstream_endings = st.sampled_from([None, upstream_timeout(), upstream_error("The stream from Azure OpenAI broke off.")])


# JSON Schemas inside the emulator's subset; ``strict=True`` keeps to Azure's strict rules.
SCHEMA_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
SCHEMA_SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8)


@st.composite
def strings(draw: st.DrawFn, strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if strict:
        return schema
    if draw(st.booleans()):
        schema["format"] = draw(st.sampled_from(sorted(FORMATS)))
        return schema
    low = draw(st.none() | st.integers(0, 30))
    if low is not None:
        schema["minLength"] = low
    high = draw(st.none() | st.integers(low or 0, 40))
    if high is not None:
        schema["maxLength"] = high
    return schema


@st.composite
def numbers(draw: st.DrawFn, strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": draw(st.sampled_from(["integer", "number"]))}
    if strict:
        return schema
    step = draw(st.none() | st.integers(1, 5))
    low = draw(st.none() | st.integers(-50, 50) | st.sampled_from([-2.5, 0.5, 7.25]))
    high = draw(st.none() | st.integers(-50, 50))
    if low is not None and high is not None:
        high = low + 2 * (step or 1) + draw(st.integers(2, 40))
    if low is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = low
    if high is not None:
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = high
    if step is not None:
        schema["multipleOf"] = step
    return schema


def leaves(strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        strings(strict),
        numbers(strict),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.lists(SCHEMA_SCALARS, min_size=1, max_size=4).map(lambda values: {"enum": values}),
        st.lists(st.text(max_size=6), min_size=1, max_size=4).map(lambda values: {"type": ["string", "null"], "enum": [*values, None]}),
        SCHEMA_SCALARS.map(lambda value: {"const": value}),
    )


@st.composite
def objects(draw: st.DrawFn, children: st.SearchStrategy[dict[str, Any]], strict: bool) -> dict[str, Any]:
    properties = draw(st.dictionaries(SCHEMA_NAMES, children, max_size=4))
    names = list(properties)
    required = names if strict else [name for name in names if draw(st.booleans())]
    additional = False if strict else draw(st.booleans())
    return {"type": "object", "title": "Thing", "properties": properties, "required": required, "additionalProperties": additional}


@st.composite
def arrays(draw: st.DrawFn, children: st.SearchStrategy[dict[str, Any]], strict: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": draw(children), "description": "a list"}
    if not strict:
        low = draw(st.integers(0, 3))
        schema["minItems"] = low
        if draw(st.booleans()):
            schema["maxItems"] = draw(st.integers(low, 5))
    return schema


def json_schemas(strict: bool) -> st.SearchStrategy[dict[str, Any]]:
    def extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            objects(children, strict),
            arrays(children, strict),
            st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches}),
        )

    return st.recursive(leaves(strict), extend, max_leaves=12)
