"""The indexing contract the Functions host relies on."""

from __future__ import annotations

import gc
import importlib
import sys

import azure.functions as func
import pytest

from shared.config import ConfigError
from tests.support.app_settings import REQUIRED_SETTINGS


def load_function_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> func.FunctionApp:
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENTS", "APPLICATION_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("function_app", None)
    return importlib.import_module("function_app").app


def test_routes_methods_and_anonymous_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_function_app(monkeypatch, REQUIRED_SETTINGS)
    found = {}
    for function in app.get_functions():
        binding = function.get_trigger()
        found[binding.route] = (tuple(m.value for m in binding.methods), binding.auth_level)
        assert function.get_raw_bindings()
    assert found == {
        "v1/chat/completions": (("POST",), func.AuthLevel.ANONYMOUS),
        "v1/models": (("GET",), func.AuthLevel.ANONYMOUS),
        "v1/responses": (("POST",), func.AuthLevel.ANONYMOUS),
        "v1/responses/{response_id}": (("GET", "DELETE"), func.AuthLevel.ANONYMOUS),
        "v1/responses/{response_id}/cancel": (("POST",), func.AuthLevel.ANONYMOUS),
        "v1/responses/{response_id}/input_items": (("GET",), func.AuthLevel.ANONYMOUS),
        "v1/conversations": (("POST",), func.AuthLevel.ANONYMOUS),
        "v1/conversations/{conversation_id}": (("GET", "DELETE"), func.AuthLevel.ANONYMOUS),
        "v1/conversations/{conversation_id}/items": (("GET",), func.AuthLevel.ANONYMOUS),
        "v1/{*path}": (("GET", "POST", "PUT", "PATCH", "DELETE"), func.AuthLevel.ANONYMOUS),
        "me": (("GET",), func.AuthLevel.ANONYMOUS),
        "healthz": (("GET",), func.AuthLevel.ANONYMOUS),
    }


def test_bad_setting_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="RELAY_MAX_TOKENS"):
        load_function_app(monkeypatch, {**REQUIRED_SETTINGS, "RELAY_MAX_TOKENS": "lots"})
    sys.modules.pop("function_app", None)


def test_loading_the_app_sets_the_collector_for_many_requests_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker process collects after 10,000 young allocations, not CPython's 700-2,000 (docs/performance.md)."""
    before = gc.get_threshold()
    try:
        load_function_app(monkeypatch, REQUIRED_SETTINGS)
        assert gc.get_threshold() == (10_000, 10, 10)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        sys.modules.pop("function_app", None)
