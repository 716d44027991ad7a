"""The Functions host stand-in's pure parts: routes, the worker's command line, forwarded headers, trigger metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devhost.functions_host.build_protos import relative_imports
from devhost.functions_host.host_config import format_timespan, function_timeout, parse_timespan
from devhost.functions_host.http_proxy import forwarded_headers, invocation_request
from devhost.functions_host.routes import RouteTemplateError, http_function, parse_template, route_prefix, select
from devhost.functions_host.shell import parse_args
from devhost.functions_host.worker_channel import worker_command, worker_environment


def binding(**fields: Any) -> str:
    return json.dumps({"direction": "IN", "type": "httpTrigger", "name": "req", "authLevel": "ANONYMOUS", **fields})


RETURN = json.dumps({"direction": "OUT", "type": "http", "name": "$return"})


def functions() -> list[Any]:
    chat = http_function("chat_completions", "id-chat", [binding(route="v1/chat/completions", methods=["POST"]), RETURN], "api")
    item = http_function("item", "id-item", [binding(route="items/{id}", methods=["GET"]), RETURN], "api")
    named = http_function("items_special", "id-special", [binding(route="items/special")], "api")
    files = http_function("files", "id-files", [binding(route="files/{*rest}")], "api")
    return [f for f in (chat, item, named, files) if f is not None]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/v1/chat/completions", ("chat_completions", {})),
        ("POST", "/API/V1/Chat/Completions", ("chat_completions", {})),
        ("GET", "/api/v1/chat/completions", None),
        ("POST", "/api/v1/chat/completions/extra", None),
        ("GET", "/api/items/42", ("item", {"id": "42"})),
        ("DELETE", "/api/items/special", ("items_special", {})),
        ("GET", "/api/items/special", ("items_special", {})),
        ("GET", "/api/files/a/b/c.txt", ("files", {"rest": "a/b/c.txt"})),
        ("GET", "/api/files", ("files", {})),
        ("GET", "/v1/chat/completions", None),
    ],
)
def test_requests_select_the_function_the_host_would_route_them_to(method: str, path: str, expected: Any) -> None:
    selected = select(functions(), method, path)
    assert (None if selected is None else (selected[0].name, selected[1])) == expected


def test_a_function_without_a_route_is_served_at_its_name_and_any_method() -> None:
    function = http_function("healthz", "id", [binding()], "api")
    assert function is not None and function.template == "api/healthz" and function.methods == frozenset()
    assert http_function("timer", "id", [json.dumps({"direction": "IN", "type": "timerTrigger", "name": "t"})], "api") is None


@pytest.mark.parametrize("template", ["api/{id:int}", "api/{rest?}/more", "api/{*rest}/more", "api/pre{id}"])
def test_route_templates_this_host_cannot_match_are_refused_at_load(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        parse_template(template)


def test_the_route_prefix_comes_from_host_json(tmp_path: Path) -> None:
    assert route_prefix(tmp_path) == "api"
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": "/relay/"}}}))
    assert route_prefix(tmp_path) == "relay"
    assert route_prefix(Path(__file__).resolve().parents[2]) == "api"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:30:00", 1800.0), ("00:00:03", 3.0), ("1.02:03:04", 93784.0), ("00:00:01.5", 1.5), ("01:00", 3600.0), ("2", 172800.0)],
)
def test_a_timespan_is_read_and_written_as_dotnet_does(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds
    assert parse_timespan(format_timespan(seconds)) == seconds
    assert format_timespan(1800) == "00:30:00" and format_timespan(93784) == "1.02:03:04" and format_timespan(1.5) == "00:00:01.5000000"


def test_the_function_timeout_is_host_jsons_overridden_by_the_app_setting_and_thirty_minutes_by_default(tmp_path: Path) -> None:
    assert function_timeout(tmp_path, {}) == 1800.0
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "functionTimeout": "00:10:00"}), encoding="utf-8")
    assert function_timeout(tmp_path, {}) == 600.0
    assert function_timeout(tmp_path, {"AzureFunctionsJobHost__functionTimeout": "00:00:04"}) == 4.0
    assert function_timeout(tmp_path, {"AzureFunctionsJobHost__functionTimeout": "-1"}) is None
    for bad in ("00:00:00.5", "soon", "00:61:00"):
        with pytest.raises(ValueError):
            function_timeout(tmp_path, {"AzureFunctionsJobHost__functionTimeout": bad})


def test_the_worker_gets_both_forms_of_the_hosts_command_line_and_reads_the_functions_forms_first() -> None:
    command = worker_command(51234, "worker-1", "request-1")
    args = command[command.index("devhost.functions_host.shell") + 1 :]
    address = parse_args(args)
    assert (address.host, address.port, address.worker_id, address.request_id) == ("127.0.0.1", 51234, "worker-1", "request-1")
    assert address.max_message_length == 2_147_483_647
    preferred = parse_args(["--host", "10.0.0.1", "--port", "1", "--workerId", "old", "--requestId", "old",
                            "--functions-uri", "http://127.0.0.1:7000/", "--functions-worker-id", "new",
                            "--functions-request-id", "new-request"])  # fmt: skip
    assert (preferred.host, preferred.port, preferred.worker_id, preferred.request_id) == ("127.0.0.1", 7000, "new", "new-request")
    with pytest.raises(SystemExit):
        parse_args(["--host", "127.0.0.1"])


def test_the_worker_environment_is_the_apps_plus_what_the_host_adds(tmp_path: Path) -> None:
    env = worker_environment({"APPLICATION_NAME": "app", "PYTHON_THREADPOOL_THREAD_COUNT": "4"}, tmp_path)
    assert env["APPLICATION_NAME"] == "app" and env["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert env["FUNCTIONS_APPLICATION_DIRECTORY"] == str(tmp_path)
    assert env["PYTHON_THREADPOOL_THREAD_COUNT"] == "4"
    assert worker_environment({}, tmp_path)["PYTHON_THREADPOOL_THREAD_COUNT"] == "1000"


def scope(headers: list[tuple[str, str]], query: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "http",
        "client": ("203.0.113.9", 50123),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "query_string": query.encode(),
    }


def test_forwarded_headers_are_yarps_defaults_over_what_the_host_received() -> None:
    received = scope([
        ("Host", "relay.example"), ("Authorization", "Bearer t"), ("Connection", "keep-alive"), ("X-Forwarded-For", "6.6.6.6, 1.2.3.4"),
        ("X-Forwarded-Prefix", "/evil"), ("client-ip", "1.2.3.4:5"), ("Accept", "a"), ("Accept", "b"),
    ])  # fmt: skip
    headers = forwarded_headers(received)
    assert "host" not in headers and "connection" not in headers and "x-forwarded-prefix" not in headers
    assert headers.getall("x-forwarded-for") == ["203.0.113.9"]
    assert (headers["x-forwarded-proto"], headers["x-forwarded-host"]) == ("http", "relay.example")
    assert (headers["authorization"], headers["client-ip"], headers.getall("accept")) == ("Bearer t", "1.2.3.4:5", ["a", "b"])


def test_the_invocation_carries_an_empty_rpc_http_with_route_parameters_and_the_request_as_binding_data() -> None:
    function = functions()[1]
    received = scope([("Host", "relay.example"), ("Accept", "a"), ("Accept", "b")], query="name=Ada&code=secret")
    request = invocation_request(function, "inv-1", received, {"id": "42"})
    assert (request.invocation_id, request.function_id) == ("inv-1", "id-item")
    [trigger] = request.input_data
    assert trigger.name == "req"
    assert dict(trigger.data.http.params) == {"id": "42"}
    assert (trigger.data.http.method, trigger.data.http.url, trigger.data.http.body.WhichOneof("data")) == ("", "", None)
    metadata = request.trigger_metadata
    assert metadata["name"].string == "Ada" and metadata["id"].string == "42" and "code" not in metadata
    assert json.loads(metadata["Query"].json) == {"name": "Ada", "code": "secret"}
    assert json.loads(metadata["Headers"].json) == {"host": "relay.example", "accept": "a,b"}
    assert "req" not in metadata and "$request" not in metadata


def test_generated_imports_become_relative_to_the_generated_package() -> None:
    source = "from shared import NullableTypes_pb2 as n\nfrom identity import ClaimsIdentityRpc_pb2 as c\nimport FunctionRpc_pb2 as f\n"
    assert relative_imports(source, 0).splitlines() == [
        "from .shared import NullableTypes_pb2 as n",
        "from .identity import ClaimsIdentityRpc_pb2 as c",
        "from . import FunctionRpc_pb2 as f",
    ]
    assert relative_imports("from shared import NullableTypes_pb2 as n\n", 1) == "from ..shared import NullableTypes_pb2 as n\n"
