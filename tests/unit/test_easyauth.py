"""shared.easyauth: the caller from App Service Authentication headers.

Examples first, then properties: whatever header content arrives,
``principal_from_headers`` returns a Principal or raises a 401/403
RelayError, and never invents an identity.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from shared.config import AuthPolicy
from shared.easyauth import (
    MAX_PRINCIPAL_HEADER_CHARS,
    OID_CLAIMS,
    TID_CLAIMS,
    Principal,
    principal_from_headers,
)
from shared.errors import RelayError
from shared.header_checks import is_guid
from tests.support.identities import ADA_OID as OID
from tests.support.identities import ADA_TID as TID
from tests.support.strategies import FAST, as_mapping, guid_like, guids, header_sets, json_values, values_of

# A decoded X-MS-CLIENT-PRINCIPAL as App Service sends it (claims after its default mapping; see docs/design.md).
REFERENCE_PRINCIPAL = """{"auth_typ": "aad",
 "claims": [
  {"typ": "aud", "val": "api://6f1c2d3e-0000-4000-8000-000000000001"},
  {"typ": "iss", "val": "https://sts.windows.net/72f988bf-0000-4000-8000-000000000002/"},
  {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "1b2c3d4e-0000-4000-8000-000000000003"},
  {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": "72f988bf-0000-4000-8000-000000000002"},
  {"typ": "name", "val": "Ada Lovelace"},
  {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "val": "ada@contoso.example"},
  {"typ": "http://schemas.microsoft.com/identity/claims/scope", "val": "user_impersonation"},
  {"typ": "roles", "val": "Relay.User"}],
 "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
 "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}"""

AUD = "api://6f1c2d3e-0000-4000-8000-000000000001"
OID_URI = "http://schemas.microsoft.com/identity/claims/objectidentifier"
TID_URI = "http://schemas.microsoft.com/identity/claims/tenantid"
SCOPE_URI = "http://schemas.microsoft.com/identity/claims/scope"
ROLE_URI = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
UPN_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
NAME_URI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"

EXPECTED = Principal(
    object_id=OID,
    tenant_id=TID,
    home_tenant_id=None,
    name="Ada Lovelace",
    identity_provider="aad",
    roles=frozenset({"Relay.User"}),
    audience=AUD,
    is_app=False,
    claims=(
        ("aud", AUD),
        ("iss", "https://sts.windows.net/72f988bf-0000-4000-8000-000000000002/"),
        (OID_URI, OID),
        (TID_URI, TID),
        ("name", "Ada Lovelace"),
        (UPN_URI, "ada@contoso.example"),
        (SCOPE_URI, "user_impersonation"),
        ("roles", "Relay.User"),
    ),
)


def reference() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(REFERENCE_PRINCIPAL)
    return document


def b64(data: bytes, urlsafe: bool = False, padded: bool = True) -> str:
    text = (base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)).decode()
    return text if padded else text.rstrip("=")


def encode(document: object, *, urlsafe: bool = False, padded: bool = True) -> str:
    return b64(json.dumps(document).encode(), urlsafe, padded)


def with_claims(*claims: tuple[str, str], drop: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """The reference principal without claims of types ``drop``, plus ``claims`` and ``fields``."""
    document = reference()
    kept = [c for c in document["claims"] if c["typ"] not in drop]
    document["claims"] = kept + [{"typ": typ, "val": val} for typ, val in claims]
    document.update(fields)
    return document


def headers_for(document: object, **extra: str) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL": encode(document), **{k.replace("_", "-"): v for k, v in extra.items()}}


ANYONE = AuthPolicy()


def refused(headers: dict[str, str] | Headers, policy: AuthPolicy = ANYONE) -> RelayError:
    with pytest.raises(RelayError) as caught:
        principal_from_headers(headers, policy)
    return caught.value


# --- the happy path, as App Service sends it -------------------------------------------------


def test_reference_principal_decodes_exactly() -> None:
    headers = {
        "X-MS-CLIENT-PRINCIPAL": b64(REFERENCE_PRINCIPAL.encode()),
        "X-MS-CLIENT-PRINCIPAL-ID": OID,
        "X-MS-CLIENT-PRINCIPAL-NAME": "ada@contoso.example",
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    }
    assert principal_from_headers(headers, AuthPolicy()) == EXPECTED


@pytest.mark.parametrize(
    ("urlsafe", "padded"),
    [(False, True), (False, False), (True, True), (True, False)],
    ids=["standard-padded", "standard-unpadded", "urlsafe-padded", "urlsafe-unpadded"],
)
def test_base64_alphabets_and_padding(urlsafe: bool, padded: bool) -> None:
    # "~~~" and "???" encode to "+" and "/" in the standard alphabet, so the variants differ.
    document = with_claims(("note", "~~~???>>>"))
    value = encode(document, urlsafe=urlsafe, padded=padded)
    assert ("-" in value or "_" in value) == urlsafe
    assert principal_from_headers({"X-MS-CLIENT-PRINCIPAL": value}, AuthPolicy()).object_id == OID


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ms-client-principal": encode(reference()), "x-ms-client-principal-id": OID},
        {"X-Ms-Client-Principal": encode(reference()), "X-Ms-Client-Principal-Idp": "AAD"},
        Headers(raw=[(b"x-ms-client-principal", encode(reference()).encode())]),
        Headers(
            raw=[
                (b"x-ms-client-principal", encode(reference()).encode()),
                (b"x-ms-client-principal-id", OID.upper().encode()),
                (b"x-ms-client-principal-idp", b"aad"),
            ]
        ),
    ],
    ids=["dict-lower", "dict-title-idp-upper", "starlette", "starlette-id-upper"],
)
def test_header_names_are_case_insensitive(headers: dict[str, str] | Headers) -> None:
    assert principal_from_headers(headers, AuthPolicy()) == EXPECTED


def test_guids_are_lower_cased() -> None:
    document = with_claims(("oid", OID.upper()), ("tid", TID.upper()), drop=(OID_URI, TID_URI))
    principal = principal_from_headers(headers_for(document, X_MS_CLIENT_PRINCIPAL_ID=OID.upper()), AuthPolicy())
    assert (principal.object_id, principal.tenant_id) == (OID, TID)


@pytest.mark.parametrize(
    "claims",
    [
        [("oid", OID), ("tid", TID)],
        [(OID_URI, OID), ("tid", TID), ("oid", OID.upper())],
        [(OID_URI, OID), (TID_URI, TID), ("tid", TID), ("oid", OID)],
    ],
    ids=["short-names", "same-oid-twice-other-case", "both-forms-agree"],
)
def test_object_and_tenant_claim_forms(claims: list[tuple[str, str]]) -> None:
    document = with_claims(*claims, drop=(OID_URI, TID_URI))
    principal = principal_from_headers(headers_for(document), AuthPolicy())
    assert (principal.object_id, principal.tenant_id) == (OID, TID)


@pytest.mark.parametrize(
    ("claims", "role_typ", "roles"),
    [
        ([("roles", "A"), ("roles", "B")], ROLE_URI, {"A", "B"}),
        ([(ROLE_URI, "A")], ROLE_URI, {"A"}),
        ([("custom/role", "A"), ("roles", "B")], "custom/role", {"A", "B"}),
        ([(ROLE_URI, "A")], None, {"A"}),
        ([("groups", "A"), ("roles", "")], ROLE_URI, set()),
    ],
    ids=["roles-claim", "role-uri", "custom-role-typ", "no-role-typ", "not-roles-or-empty"],
)
def test_roles(claims: list[tuple[str, str]], role_typ: str | None, roles: set[str]) -> None:
    document = with_claims(*claims, drop=("roles",), role_typ=role_typ)
    assert principal_from_headers(headers_for(document), AuthPolicy()).roles == roles


@pytest.mark.parametrize(
    ("claims", "name"),
    [
        ([("preferred_username", "ada@contoso.example")], "ada@contoso.example"),
        ([(UPN_URI, "ada@contoso.example")], "ada@contoso.example"),
        ([(NAME_URI, "ADA\\ada")], "ADA\\ada"),
        ([("name", ""), ("preferred_username", "ada@x.example")], "ada@x.example"),
        ([], None),
    ],
    ids=["preferred-username", "upn-uri", "name-typ", "empty-name-skipped", "none"],
)
def test_name_fallbacks(claims: list[tuple[str, str]], name: str | None) -> None:
    document = with_claims(*claims, ("scp", "x"), drop=("name", UPN_URI))
    assert principal_from_headers(headers_for(document), AuthPolicy()).name == name


def test_no_audience_claim() -> None:
    document = with_claims(drop=("aud",))
    assert principal_from_headers(headers_for(document), AuthPolicy()).audience is None


def test_repeated_identical_principal_headers_are_accepted() -> None:
    value = encode(reference()).encode()
    headers = Headers(raw=[(b"x-ms-client-principal", value), (b"x-ms-client-principal", value)])
    assert principal_from_headers(headers, AuthPolicy()) == EXPECTED


# --- app-only detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "drop", "is_app"),
    [
        ([], (), False),
        ([("idtyp", "app")], (), True),
        ([("idtyp", "APP")], (), True),
        ([("idtyp", "user")], (), False),
        ([], (SCOPE_URI,), False),  # ID token session: no scope, but user claims
        ([], ("name", UPN_URI), False),  # delegated token with only a scope
        ([], (SCOPE_URI, "name", UPN_URI), True),  # client credentials: roles, no scope, no user
        ([("scp", "")], (SCOPE_URI, "name", UPN_URI), True),  # an empty scope is no scope
        ([("scp", "Chat.Read")], (SCOPE_URI, "name", UPN_URI), False),
        ([("preferred_username", "svc@x.example")], (SCOPE_URI, "name", UPN_URI), False),
        ([("appid", "6f1c2d3e-0000-4000-8000-000000000009")], (SCOPE_URI, "name", UPN_URI), True),
    ],
    ids=[
        "delegated-user",
        "idtyp-app",
        "idtyp-app-upper",
        "idtyp-user",
        "id-token-session",
        "scope-only",
        "client-credentials",
        "empty-scp",
        "scp-short-name",
        "preferred-username",
        "appid-no-user",
    ],
)
def test_app_only_detection(claims: list[tuple[str, str]], drop: tuple[str, ...], is_app: bool) -> None:
    headers = headers_for(with_claims(*claims, drop=drop))
    assert principal_from_headers(headers, AuthPolicy(allow_app_tokens=True)).is_app is is_app
    if is_app:
        error = refused(headers)
        assert (error.status, error.code, error.message) == (
            403,
            "forbidden",
            "app-only tokens are not allowed: call with a user's delegated token",
        )
    else:
        assert principal_from_headers(headers, AuthPolicy()).is_app is False


# --- 401: no principal, malformed principal, inconsistent headers ----------------------------


DEEP_JSON_REASON = "is not a JSON object" if sys.version_info >= (3, 13) else "is not valid JSON"
UNAUTHENTICATED: list[tuple[str, dict[str, str], str]] = [
    ("missing", {}, "no X-MS-CLIENT-PRINCIPAL header"),
    ("only-other-headers", {"X-MS-CLIENT-PRINCIPAL-ID": OID, "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}, "no X-MS-CLIENT-PRINCIPAL header"),
    ("empty", {"X-MS-CLIENT-PRINCIPAL": ""}, "is empty"),
    ("blank", {"X-MS-CLIENT-PRINCIPAL": "  \t "}, "is empty"),
    ("too-large", headers_for(with_claims(("pad", "x" * MAX_PRINCIPAL_HEADER_CHARS))), "too large"),
    ("not-base64-chars", {"X-MS-CLIENT-PRINCIPAL": "eyJhdXRoX3R5cCI6!!"}, "is not base64"),
    ("base64-bad-length", {"X-MS-CLIENT-PRINCIPAL": "abcde"}, "is not base64"),
    ("base64-excess-padding", {"X-MS-CLIENT-PRINCIPAL": "e30==="}, "is not base64"),
    ("base64-padding-inside", {"X-MS-CLIENT-PRINCIPAL": "e3=0"}, "is not base64"),
    ("base64-internal-space", {"X-MS-CLIENT-PRINCIPAL": "e3 0="}, "is not base64"),
    ("fullwidth-base64", {"X-MS-CLIENT-PRINCIPAL": "\uff45\uff13\uff10="}, "is not base64"),
    ("not-utf8", {"X-MS-CLIENT-PRINCIPAL": b64(b"\xff\xfe{}")}, "not UTF-8"),
    ("utf8-bom", {"X-MS-CLIENT-PRINCIPAL": b64(b"\xef\xbb\xbf" + REFERENCE_PRINCIPAL.encode())}, "is not valid JSON"),
    ("not-json", {"X-MS-CLIENT-PRINCIPAL": b64(b"auth_typ=aad")}, "is not valid JSON"),
    ("json-truncated", {"X-MS-CLIENT-PRINCIPAL": b64(REFERENCE_PRINCIPAL.encode()[:-1])}, "is not valid JSON"),
    ("json-array", {"X-MS-CLIENT-PRINCIPAL": encode([reference()])}, "is not a JSON object"),
    ("json-string", {"X-MS-CLIENT-PRINCIPAL": encode("aad")}, "is not a JSON object"),
    ("json-null", {"X-MS-CLIENT-PRINCIPAL": encode(None)}, "is not a JSON object"),
    # Python 3.13's JSON parser accepts 5,000 levels (earlier ones stop at their recursion limit): refused either way.
    ("json-deeply-nested", {"X-MS-CLIENT-PRINCIPAL": b64(b"[" * 5_000 + b"]" * 5_000)}, DEEP_JSON_REASON),
    ("json-duplicate-key", {"X-MS-CLIENT-PRINCIPAL": b64(b'{"auth_typ": "aad", "claims": [], "claims": []}')}, "is not valid JSON"),
    ("json-huge-int", {"X-MS-CLIENT-PRINCIPAL": b64(b'{"auth_typ": ' + b"9" * 5000 + b"}")}, "is not valid JSON"),
    ("no-claims", headers_for({"auth_typ": "aad"}), "claims is not a list"),
    ("claims-object", headers_for({"auth_typ": "aad", "claims": {"oid": OID, "tid": TID}}), "claims is not a list"),
    ("claim-not-object", headers_for({**reference(), "claims": ["oid", OID]}), "{typ, val} string pairs"),
    (
        "claim-typ-not-string",
        headers_for({**reference(), "claims": [*reference()["claims"], {"typ": 1, "val": "x"}]}),
        "{typ, val} string pairs",
    ),
    (
        "claim-val-null",
        headers_for({**reference(), "claims": [*reference()["claims"], {"typ": "x", "val": None}]}),
        "{typ, val} string pairs",
    ),
    ("claim-val-missing", headers_for({**reference(), "claims": [*reference()["claims"], {"typ": "x"}]}), "{typ, val} string pairs"),
    (
        "claim-val-list",
        headers_for({**reference(), "claims": [*reference()["claims"], {"typ": "oid", "val": [OID]}]}),
        "{typ, val} string pairs",
    ),
    (
        "claim-lone-surrogate",
        {"X-MS-CLIENT-PRINCIPAL": b64(REFERENCE_PRINCIPAL.replace("Ada", "\\ud800").encode())},
        "{typ, val} string pairs",
    ),
    ("auth-typ-missing", headers_for(with_claims(auth_typ=None)), "no auth_typ"),
    ("auth-typ-empty", headers_for(with_claims(auth_typ="")), "no auth_typ"),
    ("auth-typ-not-string", headers_for(with_claims(auth_typ=["aad"])), "auth_typ is not a string"),
    ("name-typ-not-string", headers_for(with_claims(name_typ=1)), "name_typ is not a string"),
    ("role-typ-not-string", headers_for(with_claims(role_typ={"x": 1})), "role_typ is not a string"),
    ("oid-missing", headers_for(with_claims(drop=(OID_URI,))), "no object ID (oid) claim"),
    ("tid-missing", headers_for(with_claims(drop=(TID_URI,))), "no tenant ID (tid) claim"),
    ("oid-empty", headers_for(with_claims(("oid", ""), drop=(OID_URI,))), "object ID (oid) is not a GUID"),
    ("oid-not-guid", headers_for(with_claims(("oid", "ada@contoso.example"), drop=(OID_URI,))), "object ID (oid) is not a GUID"),
    ("oid-braces", headers_for(with_claims(("oid", "{" + OID + "}"), drop=(OID_URI,))), "object ID (oid) is not a GUID"),
    ("oid-no-hyphens", headers_for(with_claims(("oid", OID.replace("-", "")), drop=(OID_URI,))), "object ID (oid) is not a GUID"),
    ("oid-trailing-newline", headers_for(with_claims(("oid", OID + "\n"), drop=(OID_URI,))), "object ID (oid) is not a GUID"),
    ("oid-padded", headers_for(with_claims(("oid", f" {OID} "), drop=(OID_URI,))), "object ID (oid) is not a GUID"),
    (
        "oid-fullwidth-digits",
        headers_for(with_claims(("oid", "\uff11b2c3d4e-0000-4000-8000-000000000003"), drop=(OID_URI,))),
        "object ID (oid) is not a GUID",
    ),
    (
        "tid-arabic-indic-digits",
        headers_for(with_claims(("tid", "\u06672f988bf-0000-4000-8000-000000000002"), drop=(TID_URI,))),
        "tenant ID (tid) is not a GUID",
    ),
    (
        "tid-superscript-digit",
        headers_for(with_claims(("tid", "72f988bf-0000-4000-8000-00000000000²"), drop=(TID_URI,))),
        "tenant ID (tid) is not a GUID",
    ),
    ("oid-conflict-forms", headers_for(with_claims(("oid", "2b2c3d4e-0000-4000-8000-000000000003"))), "conflicting object ID (oid) claims"),
    ("tid-conflict-forms", headers_for(with_claims(("tid", "82f988bf-0000-4000-8000-000000000002"))), "conflicting tenant ID (tid) claims"),
    ("oid-second-not-guid", headers_for(with_claims(("oid", "not-a-guid"))), "object ID (oid) is not a GUID"),
    (
        "principal-id-mismatch",
        headers_for(reference(), X_MS_CLIENT_PRINCIPAL_ID="2b2c3d4e-0000-4000-8000-000000000003"),
        "X-MS-CLIENT-PRINCIPAL-ID does not match",
    ),
    ("principal-id-empty", headers_for(reference(), X_MS_CLIENT_PRINCIPAL_ID=""), "X-MS-CLIENT-PRINCIPAL-ID does not match"),
    (
        "principal-id-upn",
        headers_for(reference(), X_MS_CLIENT_PRINCIPAL_ID="ada@contoso.example"),
        "X-MS-CLIENT-PRINCIPAL-ID does not match",
    ),
    (
        "principal-id-fullwidth",
        headers_for(reference(), X_MS_CLIENT_PRINCIPAL_ID="\uff11b2c3d4e-0000-4000-8000-000000000003"),
        "X-MS-CLIENT-PRINCIPAL-ID does not match",
    ),
    ("idp-disagrees", headers_for(reference(), X_MS_CLIENT_PRINCIPAL_IDP="google"), "X-MS-CLIENT-PRINCIPAL-IDP does not match"),
    ("idp-empty", headers_for(reference(), X_MS_CLIENT_PRINCIPAL_IDP=""), "X-MS-CLIENT-PRINCIPAL-IDP does not match"),
    (
        "idp-aad-but-auth-typ-other",
        headers_for(with_claims(auth_typ="github"), X_MS_CLIENT_PRINCIPAL_IDP="aad"),
        "X-MS-CLIENT-PRINCIPAL-IDP does not match",
    ),
    ("aud-conflict", headers_for(with_claims(("aud", "api://other"))), "conflicting aud claims"),
    (
        "principal-headers-conflict",
        {"X-MS-CLIENT-PRINCIPAL": encode(reference()), "x-ms-client-principal": encode(with_claims(("x", "y")))},
        "conflicting x-ms-client-principal headers",
    ),
    (
        "principal-id-headers-conflict",
        {**headers_for(reference()), "X-MS-CLIENT-PRINCIPAL-ID": OID, "x-ms-client-principal-id": OID.upper()},
        "conflicting x-ms-client-principal-id headers",
    ),
]


@pytest.mark.parametrize(("case", "headers", "reason"), UNAUTHENTICATED, ids=[case for case, *_ in UNAUTHENTICATED])
def test_unauthenticated(case: str, headers: dict[str, str], reason: str) -> None:
    error = refused(headers)
    assert (error.status, error.code) == (401, "unauthenticated")
    assert reason in error.message
    assert error.body() == {"error": {"message": error.message, "type": "authentication_error", "param": None, "code": "unauthenticated"}}
    assert "X-MS-CLIENT-PRINCIPAL" in error.message or "x-ms-client-principal" in error.message
    for value in headers.values():
        if len(value) > 3:
            assert value not in error.message
    for secret in ("Ada", "ada@", "2b2c3d4e", "82f988bf", "google", "github", "api://other"):
        assert secret not in error.message


def test_starlette_repeated_conflicting_principal_headers() -> None:
    headers = Headers(
        raw=[
            (b"x-ms-client-principal", encode(reference()).encode()),
            (b"x-ms-client-principal", encode(with_claims(("oid", "2b2c3d4e-0000-4000-8000-000000000003"), drop=(OID_URI,))).encode()),
        ]
    )
    assert (refused(headers).status, refused(headers).code) == (401, "unauthenticated")


def test_oversized_header_is_refused_before_decoding() -> None:
    just_fits = "e30=" + " " * (MAX_PRINCIPAL_HEADER_CHARS - 4)  # "{}" padded out to the cap
    assert "claims is not a list" in refused({"X-MS-CLIENT-PRINCIPAL": just_fits}).message
    assert "too large" in refused({"X-MS-CLIENT-PRINCIPAL": just_fits + " "}).message


# --- 403: a well-formed caller this instance does not accept ---------------------------------

OTHER_TENANT = "0a0a0a0a-bbbb-4ccc-8ddd-eeeeeeeeeeee"

FORBIDDEN: list[tuple[str, dict[str, str], AuthPolicy, str]] = [
    ("auth-typ-google", headers_for(with_claims(auth_typ="google")), AuthPolicy(), "identity provider"),
    (
        "auth-typ-and-idp-github",
        headers_for(with_claims(auth_typ="github"), X_MS_CLIENT_PRINCIPAL_IDP="GitHub"),
        AuthPolicy(),
        "identity provider",
    ),
    ("auth-typ-aad-lookalike", headers_for(with_claims(auth_typ="aad ")), AuthPolicy(), "identity provider"),
    ("tenant", headers_for(reference()), AuthPolicy(allowed_tenants=frozenset({OTHER_TENANT})), "tenant not allowed"),
    ("tenant-empty-allow-list", headers_for(reference()), AuthPolicy(allowed_tenants=frozenset()), "tenant not allowed"),
    ("audience", headers_for(reference()), AuthPolicy(allowed_audiences=frozenset({"api://relay"})), "audience"),
    (
        "audience-case-differs",
        headers_for(reference()),
        AuthPolicy(allowed_audiences=frozenset({AUD.upper()})),
        "audience",
    ),
    (
        "audience-missing",
        headers_for(with_claims(drop=("aud",))),
        AuthPolicy(allowed_audiences=frozenset({AUD})),
        "audience",
    ),
    ("role", headers_for(reference()), AuthPolicy(required_roles=frozenset({"Relay.Admin"})), "role"),
    ("role-case-differs", headers_for(reference()), AuthPolicy(required_roles=frozenset({"relay.user"})), "role"),
    (
        "role-no-roles",
        headers_for(with_claims(drop=("roles",))),
        AuthPolicy(required_roles=frozenset({"Relay.User"})),
        "role",
    ),
    ("app-only", headers_for(with_claims(("idtyp", "app"))), AuthPolicy(), "app-only"),
]


@pytest.mark.parametrize(("case", "headers", "policy", "reason"), FORBIDDEN, ids=[case for case, *_ in FORBIDDEN])
def test_forbidden(case: str, headers: dict[str, str], policy: AuthPolicy, reason: str) -> None:
    error = refused(headers, policy)
    assert (error.status, error.code) == (403, "forbidden")
    assert error.body() == {"error": {"message": error.message, "type": "permission_error", "param": None, "code": "forbidden"}}
    assert reason in error.message
    for secret in (OTHER_TENANT, "api://relay", "Relay.Admin", "Relay.User", AUD, TID, "google", "github"):
        assert secret.lower() not in error.message.lower()


@pytest.mark.parametrize(
    "policy",
    [
        AuthPolicy(allowed_tenants=frozenset({OTHER_TENANT, TID})),
        AuthPolicy(allowed_tenants=frozenset({TID.upper()})),
        AuthPolicy(allowed_audiences=frozenset({AUD, "api://relay"})),
        AuthPolicy(required_roles=frozenset({"Relay.Admin", "Relay.User"})),
        AuthPolicy(
            allowed_tenants=frozenset({TID}),
            allowed_audiences=frozenset({AUD}),
            required_roles=frozenset({"Relay.User"}),
        ),
    ],
    ids=["tenant-listed", "tenant-upper-in-policy", "audience-listed", "any-one-role", "all-policies"],
)
def test_policy_allows(policy: AuthPolicy) -> None:
    assert principal_from_headers(headers_for(reference()), policy) == EXPECTED


def test_role_from_role_typ_satisfies_policy() -> None:
    document = with_claims((ROLE_URI, "Relay.Admin"), drop=("roles",))
    principal = principal_from_headers(headers_for(document), AuthPolicy(required_roles=frozenset({"Relay.Admin"})))
    assert principal.roles == {"Relay.Admin"}


def test_app_token_allowed_when_policy_says_so() -> None:
    document = with_claims(("idtyp", "app"), drop=(SCOPE_URI, "name", UPN_URI))
    principal = principal_from_headers(headers_for(document), AuthPolicy(allow_app_tokens=True))
    assert (principal.is_app, principal.name, principal.object_id) == (True, None, OID)


def test_provider_is_checked_before_identity_claims() -> None:
    """A Google caller has no oid: the answer is "wrong provider", not "malformed"."""
    document = {"auth_typ": "google", "claims": [{"typ": "sub", "val": "1234"}]}
    assert (refused(headers_for(document)).status, refused(headers_for(document)).code) == (403, "forbidden")


HOME_TID = "5e5e5e5e-0000-4000-8000-00000000000e"


@pytest.mark.parametrize(
    ("idp", "home"),
    [
        pytest.param(f"https://sts.windows.net/{HOME_TID}/", HOME_TID, id="v1-issuer"),
        pytest.param(f"https://login.microsoftonline.com/{HOME_TID.upper()}/v2.0", HOME_TID, id="v2-issuer"),
        pytest.param(f"https://sts.windows.net/{TID}/", None, id="own-tenant"),
        pytest.param("live.com", None, id="microsoft-account"),
        pytest.param(f"https://evil.example/{HOME_TID}/", None, id="not-an-entra-issuer"),
    ],
)
def test_a_guests_home_tenant_comes_from_the_idp_claim(idp: str, home: str | None) -> None:
    """Guests: ``tid`` is the resource tenant (it stays end_user_tenant_id); the home tenant is kept for the log."""
    for typ in ("idp", "http://schemas.microsoft.com/identity/claims/identityprovider"):
        principal = principal_from_headers(headers_for(with_claims((typ, idp))), ANYONE)
        assert (principal.tenant_id, principal.home_tenant_id) == (TID, home)


# --- properties ------------------------------------------------------------------------------

texts = st.text(max_size=40)
any_json = json_values(texts, finite=False, max_leaves=12)
CLAIM_TYPES = [
    *OID_CLAIMS,
    *TID_CLAIMS,
    "roles",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    "scp",
    "http://schemas.microsoft.com/identity/claims/scope",
    "idtyp",
    "name",
    "preferred_username",
    "aud",
]
claims = st.lists(
    st.fixed_dictionaries(
        {"typ": st.sampled_from(CLAIM_TYPES) | texts, "val": guid_like | st.sampled_from(["app", "Relay.User", ""]) | texts}
    )
    | any_json,
    max_size=8,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "auth_typ": st.sampled_from(["aad", "AAD", "google", ""]) | any_json,
        "claims": claims | any_json,
        "name_typ": st.sampled_from(["name", "roles"]) | any_json,
        "role_typ": st.sampled_from(["roles", "idtyp"]) | any_json,
    },
)


principal_values = st.one_of(
    texts,
    st.builds(b64, st.binary(max_size=200), st.booleans(), st.booleans()),
    st.builds(lambda d, u, p: b64(json.dumps(d).encode(), u, p), any_json, st.booleans(), st.booleans()),
    st.builds(lambda d, u, p: b64(json.dumps(d).encode(), u, p), documents, st.booleans(), st.booleans()),
)
policies = st.just(AuthPolicy()) | st.builds(
    AuthPolicy,
    allowed_tenants=st.none() | st.frozensets(guids | guids.map(str.upper), max_size=2),
    required_roles=st.frozensets(st.sampled_from(["Relay.User", "Relay.Admin"]), max_size=2),
    allowed_audiences=st.none() | st.frozensets(guids | texts, max_size=2),
    allow_app_tokens=st.booleans(),
)


@st.composite
def near_valid_principal_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    """An App Service-shaped principal for a random user, with random extra claims and headers."""
    oid, tid = draw(guids), draw(guids)
    base = [
        {"typ": draw(st.sampled_from(sorted(OID_CLAIMS))), "val": draw(st.sampled_from([oid, oid.upper()]))},
        {"typ": draw(st.sampled_from(sorted(TID_CLAIMS))), "val": tid},
        {"typ": "aud", "val": draw(st.sampled_from(["api://relay", tid]))},
        *draw(st.sampled_from([[], [{"typ": "scp", "val": "user_impersonation"}], [{"typ": "name", "val": "Ada"}]])),
    ]
    extra = draw(
        st.lists(st.fixed_dictionaries({"typ": st.sampled_from(CLAIM_TYPES), "val": guid_like | st.just("Relay.User")}), max_size=4)
    )
    document = {
        "auth_typ": draw(st.sampled_from(["aad", "AAD", "google"])),
        "claims": draw(st.permutations(base + extra)),
        "name_typ": "name",
        "role_typ": "roles",
    }
    pairs = [("X-MS-CLIENT-PRINCIPAL", b64(json.dumps(document).encode(), draw(st.booleans()), draw(st.booleans())))]
    principal_id = draw(st.none() | st.sampled_from([oid, oid.upper()]) | guid_like)
    if principal_id is not None:
        pairs.append(("X-MS-CLIENT-PRINCIPAL-ID", principal_id))
    idp = draw(st.none() | st.sampled_from(["aad", "AAD", "google"]))
    if idp is not None:
        pairs.append(("x-ms-client-principal-idp", idp))
    return pairs


principal_headers = st.one_of(
    header_sets(["x-ms-client-principal"], principal_values),
    st.tuples(
        header_sets(["x-ms-client-principal"], principal_values),
        header_sets(["x-ms-client-principal-id"], guid_like | texts),
        header_sets(["x-ms-client-principal-idp"], st.sampled_from(["aad", "AAD", "google"]) | texts),
    ).map(lambda parts: parts[0] + parts[1] + parts[2]),
    near_valid_principal_headers(),
)


def claims_of(headers: dict[str, str] | Headers) -> list[tuple[str, str]]:
    """The claims of the one principal header, decoded independently of the code under test."""
    (raw,) = set(values_of(headers, "x-ms-client-principal"))
    raw = raw.strip(" \t").rstrip("=").replace("-", "+").replace("_", "/")
    document = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    return [(c["typ"], c["val"]) for c in document["claims"]]


@FAST
@given(pairs=principal_headers, policy=policies, starlette=st.booleans())
def test_principal_is_decoded_or_refused_never_invented(pairs: list[tuple[str, str]], policy: AuthPolicy, starlette: bool) -> None:
    check_principal(as_mapping(pairs, starlette), policy)


@FAST
@given(pairs=near_valid_principal_headers(), policy=policies, starlette=st.booleans())
def test_near_valid_principal_is_decoded_or_refused_never_invented(
    pairs: list[tuple[str, str]], policy: AuthPolicy, starlette: bool
) -> None:
    check_principal(as_mapping(pairs, starlette), policy)


def check_principal(headers: dict[str, str] | Headers, policy: AuthPolicy) -> None:
    try:
        principal = principal_from_headers(headers, policy)
    except RelayError as error:
        event(f"refused {error.status}")
        assert (error.status, error.code) in {(401, "unauthenticated"), (403, "forbidden")}
        return
    event("accepted")
    present = claims_of(headers)
    assert is_guid(principal.object_id) and principal.object_id == principal.object_id.lower()
    assert is_guid(principal.tenant_id) and principal.tenant_id == principal.tenant_id.lower()
    assert principal.object_id in {val.lower() for typ, val in present if typ in OID_CLAIMS}
    assert principal.tenant_id in {val.lower() for typ, val in present if typ in TID_CLAIMS}
    assert {val.lower() for typ, val in present if typ in OID_CLAIMS} == {principal.object_id}
    assert principal.identity_provider == "aad"
    assert principal.claims == tuple(present)
    for value in values_of(headers, "x-ms-client-principal-id"):
        assert value.strip(" \t").lower() == principal.object_id
    if policy.allowed_tenants is not None:
        assert principal.tenant_id in {t.lower() for t in policy.allowed_tenants}
    if policy.allowed_audiences is not None:
        assert principal.audience in policy.allowed_audiences
    if policy.required_roles:
        assert principal.roles & policy.required_roles
    if not policy.allow_app_tokens:
        assert not principal.is_app


@FAST
@given(oid=guid_like, tid=guid_like, typ_oid=st.sampled_from(sorted(OID_CLAIMS)), typ_tid=st.sampled_from(sorted(TID_CLAIMS)))
def test_a_well_formed_principal_is_accepted_exactly_when_its_ids_are_ascii_guids(oid: str, tid: str, typ_oid: str, typ_tid: str) -> None:
    document: dict[str, Any] = {
        "auth_typ": "aad",
        "claims": [{"typ": typ_oid, "val": oid}, {"typ": typ_tid, "val": tid}, {"typ": "scp", "val": "x"}],
    }
    headers = {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode()}
    try:
        principal = principal_from_headers(headers, AuthPolicy())
    except RelayError as error:
        assert (error.status, error.code) == (401, "unauthenticated")
        assert not (is_guid(oid) and is_guid(tid))
        return
    assert (principal.object_id, principal.tenant_id) == (oid.lower(), tid.lower())
    uuid.UUID(principal.object_id)
