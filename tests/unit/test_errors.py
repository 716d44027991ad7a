"""shared.errors: one catalogue of the relay's errors, and docs/design.md's Errors table says the same.

Each code's status, OpenAI type and raising modules are in ``CATALOGUE``; the table in
docs/design.md must list exactly those codes with the same status, type and modules, and the
modules named must be the ones that call the code's constructor.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections import defaultdict
from pathlib import Path

import pytest

from shared import errors
from shared.errors import CATALOGUE, RelayError, UpstreamBroken

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
SHARED = ROOT / "shared"

# One call per constructor, with arguments as the relay passes them.
EXAMPLES: dict[str, RelayError] = {
    "invalid_request": errors.invalid_request("'messages' must be a non-empty list.", param="messages"),
    "parameter_not_allowed": errors.parameter_not_allowed("The parameter 'tools' is not allowed by this relay.", "tools"),
    "model_not_allowed": errors.model_not_allowed("gpt-5"),
    "request_too_large": errors.request_too_large(1_048_576),
    "unsupported_route": errors.unsupported_route(),
    "responses_unavailable": errors.responses_unavailable(),
    "not_found": errors.not_found("No response, item or conversation with id 'resp_1' was found."),
    "easy_auth_disabled": errors.easy_auth_disabled(),
    "unauthenticated": errors.unauthenticated("X-MS-CLIENT-PRINCIPAL is empty"),
    "forbidden": errors.forbidden("tenant not allowed"),
    "source_ip_unavailable": errors.source_ip_unavailable("no client-ip header"),
    "user_blocked": errors.user_blocked(),
    "blocklist_unavailable": errors.blocklist_unavailable(2.0),
    "user_quota_exceeded": errors.user_quota_exceeded(per_minute=True, tenant=False, retry_after_s=12.2),
    "user_concurrency_exceeded": errors.user_concurrency_exceeded(16),
    "content_filter": errors.content_filter({"content_filter_result": {}}),
    "rate_limited": errors.rate_limited(1.5),
    "upstream_error": errors.upstream_error("Azure OpenAI answered with status 500."),
    "upstream_timeout": errors.upstream_timeout(),
    "server_busy": errors.server_busy(),
    "internal_error": errors.internal_error(),
}


def design_table() -> list[dict[str, str]]:
    """The rows of the table under "## Errors" in docs/design.md, by column name, backticks removed."""
    section = DESIGN.read_text(encoding="utf-8").split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def constructor_codes() -> dict[str, str]:
    """Each public constructor in shared/errors.py and the code of the error it builds."""
    codes: dict[str, str] = {}
    for name, function in vars(errors).items():
        if not inspect.isfunction(function) or function.__module__ != errors.__name__ or name.startswith("_"):
            continue
        source = inspect.getsource(function)
        built = re.search(r'_error\(\s*"(\w+)"', source) or re.search(r"return (\w+)\(", source)
        assert built is not None, f"{name} builds no error"
        assert built.group(1) in CATALOGUE, f"{name} builds {built.group(1)}, which the catalogue does not list"
        codes[name] = built.group(1)
    return codes


def test_the_design_table_lists_every_code_of_the_catalogue_and_no_other() -> None:
    assert {row["code"] for row in design_table()} == set(CATALOGUE)


def test_each_row_of_the_design_table_gives_the_catalogues_status_type_and_module() -> None:
    named: dict[str, set[str]] = defaultdict(set)
    for row in design_table():
        kind = CATALOGUE[row["code"]]
        assert (int(row["status"]), row["type"]) == (kind.status, kind.error_type), row["code"]
        named[row["code"]].add(row["raised by"])
    assert {code: set(kind.raised_by) for code, kind in CATALOGUE.items()} == dict(named)


def constructors_called(source: str) -> set[str]:
    """The shared.errors constructors a module calls, by their names in shared/errors.py (aliases followed)."""
    tree = ast.parse(source)
    local = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "shared.errors"
        for alias in node.names
    }
    return {
        local[node.func.id] for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in local
    }


def test_the_modules_named_are_the_ones_that_call_each_constructor() -> None:
    callers: dict[str, set[str]] = defaultdict(set)
    codes = constructor_codes()
    for path in SHARED.glob("*.py"):
        if path.name == "errors.py":
            continue
        for name in constructors_called(path.read_text(encoding="utf-8")):
            if name in codes:
                callers[codes[name]].add(path.stem)
    assert dict(callers) == {code: set(kind.raised_by) for code, kind in CATALOGUE.items()}


def test_relay_error_is_built_only_in_shared_errors() -> None:
    builders = [path.name for path in SHARED.glob("*.py") if path.name != "errors.py" and "RelayError(" in path.read_text(encoding="utf-8")]
    assert builders == []


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_code_has_a_constructor_that_builds_it_as_catalogued(code: str) -> None:
    error = EXAMPLES[code]
    kind = CATALOGUE[code]
    assert (error.status, error.code, error.error_type) == (kind.status, code, kind.error_type)
    body = error.body()["error"]
    assert set(body) >= {"message", "type", "param", "code"} and body["code"] == code and body["message"]
    assert code in constructor_codes().values()


def test_retry_after_headers_are_whole_seconds_and_at_least_one() -> None:
    assert errors.user_quota_exceeded(per_minute=True, tenant=False, retry_after_s=12.2).headers == {"Retry-After": "13"}
    assert errors.user_quota_exceeded(per_minute=False, tenant=True, retry_after_s=0.01).headers == {"Retry-After": "1"}
    assert errors.rate_limited(1.5).headers == {"Retry-After": "2"}
    assert errors.rate_limited(None).headers == {"Retry-After": "1"}
    assert errors.blocklist_unavailable(2.0).headers == {"Retry-After": "2"}
    assert errors.server_busy().headers == {"Retry-After": "1"}


def test_quota_messages_say_whose_budget_and_which_window() -> None:
    assert "your token budget for this minute" in errors.user_quota_exceeded(per_minute=True, tenant=False, retry_after_s=5).message
    assert "your tenant's token budget for this day (UTC)" in errors.user_quota_exceeded(per_minute=False, tenant=True, retry_after_s=5).message
    held = errors.user_quota_exceeded(per_minute=False, tenant=False, retry_after_s=10, held=True)
    assert "held by your requests in flight" in held.message and held.headers == {"Retry-After": "10"}
    assert errors.user_concurrency_exceeded(16).headers == {"Retry-After": "1"}


def test_with_the_responses_api_served_the_404_names_its_routes_and_where_a_conversations_items_go() -> None:
    served = errors.unsupported_route(responses_served=True).message
    assert "/api/v1/responses" in served and "/api/v1/conversations" in served
    assert "next response's input" in served  # the Agents SDK's conversation session adds items by route
    assert "/api/v1/responses" not in errors.unsupported_route().message


def test_a_detached_error_gives_the_same_answer_and_holds_neither_its_cause_nor_a_traceback() -> None:
    cause = UpstreamBroken("the connection was reset")
    try:
        raise errors.upstream_error("The stream from Azure OpenAI broke off.", cause=cause) from cause
    except RelayError as raised:
        kept = raised.detached()
        assert (kept.status, kept.code, kept.body(), kept.headers) == (raised.status, raised.code, raised.body(), raised.headers)
        assert raised.cause is cause and raised.__traceback__ is not None
    assert (kept.cause, kept.__cause__, kept.__traceback__) == (None, None, None)
