"""Forged-identity matrix: every way a caller could try to choose end_user_id, tenant or source_ip.

Ada, holding a valid token, sends each attempt over a raw socket (so headers
can be duplicated, oddly cased or not ASCII). An attempt "succeeds" if Azure
OpenAI receives any user_security_context other than Ada's own identity and
her real address (127.0.0.1), or, anywhere in the body (messages, content
parts, tools, response_format, audio, prediction, metadata...), a key that
reads as user_security_context or data_sources outside a JSON schema the
caller wrote. Every attempt must instead either be served with exactly that
context or be refused before reaching Azure OpenAI; a schema naming such a
property is served untouched; the relay never answers 500. The test prints
how many attempts it made.
"""

from __future__ import annotations

import base64
import json
import unicodedata
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devhost import jwt
from tests.reliability.common import new_id
from tests.support import rawhttp
from tests.support.identities import ADA_OID, ADA_TID, MALLORY_OID
from tests.support.stack import APPLICATION_NAME, Stack

MALLORY_TID = "66666666-6666-4666-8666-666666666666"
EVIL_IP = "6.6.6.6"
EXPECTED = {"application_name": APPLICATION_NAME, "end_user_id": ADA_OID, "end_user_tenant_id": ADA_TID, "source_ip": "127.0.0.1"}
REFUSED = {400, 401, 403, 404, 405, 413, 431}
FORGED_VALUES = (MALLORY_OID, MALLORY_TID, EVIL_IP, "2001:db8::666")

Headers = list[tuple[str, str]]


def principal(oid: str = MALLORY_OID, tid: str = MALLORY_TID, **extra: Any) -> str:
    claims = [{"typ": "oid", "val": oid}, {"typ": "tid", "val": tid}, {"typ": "scp", "val": "user_impersonation"}]
    document = {"auth_typ": "aad", "claims": claims, **extra}
    return base64.b64encode(json.dumps(document).encode()).decode()


def cases(name: str) -> list[str]:
    mixed = "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name))
    return sorted({name.lower(), name.upper(), name.title(), mixed})


IDENTITY_HEADERS = {
    "X-MS-CLIENT-PRINCIPAL": [principal(), principal(ADA_OID, MALLORY_TID), principal(MALLORY_OID, ADA_TID), "e30=", "x" * 20_000],
    "X-MS-CLIENT-PRINCIPAL-ID": [MALLORY_OID, f" {MALLORY_OID}", MALLORY_OID.upper()],
    "X-MS-CLIENT-PRINCIPAL-NAME": ["mallory@contoso.example"],
    "X-MS-CLIENT-PRINCIPAL-IDP": ["aad", "google"],
    "X-MS-TOKEN-AAD-ACCESS-TOKEN": ["forged.token.value"],
}
IP_HEADERS = {
    name: [EVIL_IP, f"{EVIL_IP}:443", "[2001:db8::666]:1", f"127.0.0.1, {EVIL_IP}", "\uff16.\uff16.\uff16.\uff16", "1." * 3000 + "1"]
    for name in (
        "client-ip",
        "X-Client-IP",
        "X-Forwarded-For",
        "X-Real-IP",
        "Forwarded",
        "X-Azure-ClientIP",
        "X-Azure-SocketIP",
        "X-Azure-FDID",
        "X-Original-Forwarded-For",
        "True-Client-IP",
        "CF-Connecting-IP",
    )
}


def header_attempts() -> list[Headers]:
    attempts: list[Headers] = []
    for table in (IDENTITY_HEADERS, IP_HEADERS):
        for name, values in table.items():
            variants = [*cases(name), name.replace("-", "_")]
            for value in values:
                for variant in variants:
                    attempts.append([(variant, value)])
                # Duplicated: two spellings of the same header, forged value in each position.
                attempts.append([(variants[0], value), (variants[1], value)])
                attempts.append([(variants[1], value), (variants[-1], "127.0.0.1")])
    # Everything at once, and unicode look-alike header names.
    everything = [(name, values[0]) for table in (IDENTITY_HEADERS, IP_HEADERS) for name, values in table.items()]
    attempts.append(everything)
    attempts.append(everything + everything[::-1])
    for lookalike in ("X-MS-CLIENT-PRINC\u0406PAL", "X-MS-CL\u0406ENT-PRINCIPAL-ID", "cl\u0456ent-ip", "X-Forwarded-F\u043er"):
        attempts.append([(lookalike, principal() if "PRINC" in lookalike else EVIL_IP)])
    return attempts


def body_attempts() -> list[dict[str, Any]]:
    usc = {"application_name": "evil", "end_user_id": MALLORY_OID, "end_user_tenant_id": MALLORY_TID, "source_ip": EVIL_IP}
    names = [
        "user_security_context",
        "User_Security_Context",
        "USER_SECURITY_CONTEXT",
        "user-security-context",
        "userSecurityContext",
        "user_security_context ",
        "us\u0435r_security_context",  # Cyrillic e
        "\uff55ser_security_context",  # fullwidth u
        "user_security_context\u200b",  # zero-width space
        "data_sources",
        "dataSources",
        "user",
        "end_user_id",
        "end_user_tenant_id",
        "source_ip",
        "oid",
        "tid",
        "extra_body",
        "extra_headers",
        "x-ms-client-principal",
        "azure_extensions",
    ]
    attempts: list[dict[str, Any]] = [{name: usc} for name in names]
    attempts += [{name: MALLORY_OID} for name in names]
    attempts += [
        {"metadata": usc},
        {"metadata": {"user_security_context": json.dumps(usc)}},
        {"prompt_cache_key": MALLORY_OID},
        {"messages": [{"role": "system", "content": json.dumps({"user_security_context": usc})}, {"role": "user", "content": "hi"}]},
        {"stream_options": {"include_usage": True, "user_security_context": usc}, "stream": True},
        {"user_security_context": "x" * 60_000},
        *SCHEMA_ATTEMPTS,
    ]
    # The same names as keys of the request's own objects, wherever a request holds one.
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    for name in names[:11]:
        attempts += [
            {"messages": [{"role": "user", "content": "hi", "name": MALLORY_OID, name: usc}]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", name: usc}]}]},
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png", name: usc}}]}
                ]
            },
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, name: usc}]},
            {"tools": [{**tool, name: usc}]},
            {"tools": [{"type": "function", "function": {"name": "f", name: usc, "parameters": {"type": "object"}}}]},
            {"functions": [{"name": "f", name: usc}]},
            {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "f", name: usc}}},
            {"response_format": {"type": "text", name: usc}},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "s", name: usc, "schema": {"type": "object"}}}},
            {"audio": {"voice": "alloy", "format": "wav", name: usc}, "modalities": ["text", "audio"]},
            {"prediction": {"type": "content", "content": [{"type": "text", "text": "x", name: usc}]}},
            {"stream": True, "stream_options": {"include_usage": True, name: usc}},
            {"metadata": {name: MALLORY_OID}},
            {"messages": [{"role": "user", "content": "hi", "x": {"y": [{name: usc}]}}]},
        ]
    return attempts


# A JSON schema the caller writes may name a property so: served, and forwarded untouched.
_SCHEMA = {"type": "object", "properties": {"user_security_context": {"type": "object"}, "data_sources": {"type": "array"}}}
SCHEMA_ATTEMPTS: list[dict[str, Any]] = [
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": _SCHEMA}}]},
    {"functions": [{"name": "f", "parameters": _SCHEMA}]},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": _SCHEMA}}},
]
# Where a request holds a JSON schema (paths in the body; an int stands for any index).
_SCHEMA_PATHS = (("tools", 0, "function", "parameters"), ("functions", 0, "parameters"), ("response_format", "json_schema", "schema"))
_RELAY_KEYS = ("usersecuritycontext", "datasources")


def _is_schema(path: tuple[str | int, ...]) -> bool:
    general = tuple(0 if isinstance(part, int) else part for part in path)
    return general in _SCHEMA_PATHS


def relay_keys_outside_schemas(body: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    """Every key, anywhere in what Azure OpenAI received, that reads as user_security_context or data_sources
    to a lenient parser (any case, separators or width), but the relay's own at the top and those inside a schema."""
    found: list[str] = []
    if isinstance(body, dict) and not _is_schema(path):
        for key, value in body.items():
            folded = "".join(c for c in unicodedata.normalize("NFKC", key).lower() if c.isalnum())
            if folded in _RELAY_KEYS and not (path == () and key == "user_security_context"):
                found.append(".".join(map(str, (*path, key))))
            found += relay_keys_outside_schemas(value, (*path, key))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found += relay_keys_outside_schemas(value, (*path, index))
    return found


QUERIES = [
    f"user_security_context={urllib.parse.quote(json.dumps({'end_user_id': MALLORY_OID}))}",
    f"end_user_id={MALLORY_OID}&end_user_tenant_id={MALLORY_TID}&source_ip={EVIL_IP}",
    f"oid={MALLORY_OID}&tid={MALLORY_TID}",
    f"x-ms-client-principal={principal()}",
    "api-version=2023-05-15",
    f"client-ip={EVIL_IP}",
    f"user={MALLORY_OID}&user={MALLORY_OID}",
    "a=" + "b" * 8000,
]


def token_attempts(stack: Stack) -> list[str]:
    """Bearer tokens Ada could forge: Mallory's claims signed with the wrong key, or not signed at all."""
    now = 2_000_000_000
    claims = {"aud": "api://relay-local", "oid": MALLORY_OID, "tid": MALLORY_TID, "scp": "user_impersonation", "exp": now}
    unsigned = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    ada = stack.token(oid=ADA_OID, tid=ADA_TID)
    head, _, sig = ada.split(".")
    return [
        jwt.encode(claims, b"guessed-key"),
        f"{unsigned}.{payload}.",
        f"{head}.{payload}.{sig}",  # Ada's signature on Mallory's claims
        ada + "\u0000",
    ]


def send(stack: Stack, headers: Headers, body: dict[str, Any], query: str = "", token: str | None = None) -> tuple[int, str]:
    request_id = new_id("forge")
    auth = [("Authorization", f"Bearer {token}")] if token is not None else [("Authorization", f"Bearer {ADA_TOKEN[stack.base_url]}")]
    full_body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "who am I"}], **body}
    target = "/api/v1/chat/completions" + (f"?{query}" if query else "")
    try:
        response = rawhttp.request(
            stack.port,
            "POST",
            target,
            [*auth, ("Content-Type", "application/json"), ("x-request-id", request_id), *headers],
            json.dumps(full_body).encode(),
        )
    except ConnectionError:
        return 0, request_id  # the server hung up on a request it would not parse: refused
    return response.status, request_id


ADA_TOKEN: dict[str, str] = {}


def test_no_forged_identity_tenant_or_ip_reaches_azure_openai(stack: Stack) -> None:
    ADA_TOKEN[stack.base_url] = stack.token(oid=ADA_OID, tid=ADA_TID)
    stack.emulator("DELETE", "/_emulator/requests")  # at most 1000 records are kept: make room for these
    attempts: list[tuple[Headers, dict[str, Any], str, str | None]] = []
    attempts += [(headers, {}, "", None) for headers in header_attempts()]
    attempts += [(headers, {}, "", "") for headers in header_attempts()[::7]]  # forged headers with no token at all
    attempts += [([], body, "", None) for body in body_attempts()]
    attempts += [([], {}, query, None) for query in QUERIES]
    attempts += [([("X-MS-CLIENT-PRINCIPAL", principal())], {}, "", token) for token in token_attempts(stack)]
    attempts += [([("Cookie", f"AppServiceAuthSession={jwt.encode({'oid': MALLORY_OID}, b'k')}")], {}, "", "")]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda a: (a, send(stack, a[0], a[1], a[2], a[3])), attempts))

    # The relay sends its own request ID upstream; its log lines map each caller's ID to it.
    relay_ids = stack.relay_request_ids()
    received = stack.requests()
    records = {r["headers"].get("x-ms-client-request-id"): r for r in received}
    served = refused = 0
    failures = []
    for attempt, (status, request_id) in results:
        record = records.get(relay_ids.get(request_id))
        if status == 200 and record is not None and record["user_security_context"] == EXPECTED:
            served += 1
        elif (status in REFUSED or status == 0) and record is None:
            refused += 1
        else:
            failures.append((status, record and record["user_security_context"], attempt))
        if record is not None:
            context = json.dumps(record["user_security_context"])
            assert not any(value in context for value in FORGED_VALUES), attempt
            assert not relay_keys_outside_schemas(record["body"]), attempt
            if attempt[1] in SCHEMA_ATTEMPTS:
                assert all(record["body"][name] == value for name, value in attempt[1].items()), attempt
    schemas_served = [r for a, r in results if a[1] in SCHEMA_ATTEMPTS and r[0] == 200]
    assert len(schemas_served) == len(SCHEMA_ATTEMPTS), "a schema naming user_security_context was refused"
    print(f"\nforged-identity matrix: {len(attempts)} attempts, {served} served as Ada, {refused} refused, {len(failures)} failed")
    assert not failures, failures[:5]
    # Nothing reached Azure OpenAI that the matrix did not count as served as Ada (a refusal's mapping cannot hide it).
    assert len(received) == served, f"{len(received)} requests reached Azure OpenAI, {served} were served"
    assert len(attempts) >= 500
