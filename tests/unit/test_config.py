"""shared.config: validated once, and a bad setting stops start-up with a message naming it."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, check_table_name, load_settings, read_control_settings
from tests.support.app_settings import REQUIRED_SETTINGS

BASE = {**REQUIRED_SETTINGS, "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini,gpt-4o"}
TABLES = {"RELAY_TABLE_ENDPOINT": "https://strelay.table.core.windows.net", "RELAY_BLOCKLIST_ENABLED": "true"}
KEY_MODE = {
    "AZURE_OPENAI_AUTH": "key",
    "AZURE_KEYVAULT_URL": "https://kv-relay.vault.azure.net",
    "AZURE_OPENAI_KEY_SECRET_NAME": "azure-openai-key",
}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"AZURE_OPENAI_ENDPOINT": ""}, "AZURE_OPENAI_ENDPOINT is required"),
        ({"AZURE_OPENAI_ENDPOINT": "http://contoso-aoai.openai.azure.com"}, "AZURE_OPENAI_ENDPOINT must be an https:// URL"),
        ({"AZURE_OPENAI_API_VERSION": "latest"}, "AZURE_OPENAI_API_VERSION must be 'v1' or a dated version"),
        ({"AZURE_OPENAI_DEPLOYMENTS": " , "}, "AZURE_OPENAI_DEPLOYMENTS is required"),
        ({"AZURE_OPENAI_DEPLOYMENTS": "gpt-4o/../x"}, "AZURE_OPENAI_DEPLOYMENTS has an invalid deployment name"),
        ({"AZURE_OPENAI_AUTH": "api-key"}, "AZURE_OPENAI_AUTH must be 'managed-identity' or 'key'"),
        ({"AZURE_OPENAI_AUTH": "key"}, "AZURE_KEYVAULT_URL and AZURE_OPENAI_KEY_SECRET_NAME are required when AZURE_OPENAI_AUTH=key"),
        ({**KEY_MODE, "AZURE_KEYVAULT_URL": ""}, "AZURE_KEYVAULT_URL is required when AZURE_OPENAI_AUTH=key"),
        ({**KEY_MODE, "AZURE_OPENAI_KEY_SECRET_NAME": " "}, "AZURE_OPENAI_KEY_SECRET_NAME is required when AZURE_OPENAI_AUTH=key"),
        ({**KEY_MODE, "AZURE_KEYVAULT_URL": "http://kv-relay.vault.azure.net"}, "AZURE_KEYVAULT_URL must be an https:// URL"),
        ({"AZURE_CLIENT_ID": "relay-identity"}, "AZURE_CLIENT_ID must be a GUID"),
        ({"APPLICATION_NAME": ""}, "APPLICATION_NAME is required"),
        ({"APPLICATION_NAME": "a\nb"}, "APPLICATION_NAME must be at most 128 printable characters"),
        ({"RELAY_ALLOWED_TENANTS": "contoso.onmicrosoft.com"}, "RELAY_ALLOWED_TENANTS must list tenant GUIDs"),
        ({"RELAY_ALLOW_APP_TOKENS": "maybe"}, "RELAY_ALLOW_APP_TOKENS must be true or false"),
        ({"RELAY_MAX_TOKENS": "lots"}, "RELAY_MAX_TOKENS must be an integer"),
        ({"RELAY_MAX_N": "0"}, "RELAY_MAX_N must be between 1 and 128"),
        ({"RELAY_MAX_BODY_BYTES": "10"}, "RELAY_MAX_BODY_BYTES must be between"),
        ({"RELAY_UPSTREAM_TIMEOUT_S": "soon"}, "RELAY_UPSTREAM_TIMEOUT_S must be a number of seconds"),
        ({"RELAY_CLIENT_IP_MODE": "xff:0"}, "RELAY_CLIENT_IP_MODE must be"),
        ({"RELAY_CLIENT_IP_MODE": "front-door"}, "RELAY_FRONT_DOOR_ID must be the Front Door profile's ID"),
        ({"RELAY_BLOCKLIST_ENABLED": "true"}, "RELAY_TABLE_ENDPOINT is required when RELAY_BLOCKLIST_ENABLED is true"),
        ({"RELAY_BUDGET_USER_TOKENS_PER_DAY": "1000"}, "RELAY_TABLE_ENDPOINT is required when"),
        ({**TABLES, "RELAY_TABLE_ENDPOINT": "http://strelay.table.core.windows.net"}, "RELAY_TABLE_ENDPOINT must be an https:// URL"),
        ({**TABLES, "RELAY_BLOCKLIST_ENABLED": "sometimes"}, "RELAY_BLOCKLIST_ENABLED must be true or false"),
        ({**TABLES, "RELAY_BLOCKLIST_REFRESH_S": "0"}, "RELAY_BLOCKLIST_REFRESH_S must be between 0.5 and 3600"),
        ({**TABLES, "RELAY_BLOCKLIST_REFRESH_S": "often"}, "RELAY_BLOCKLIST_REFRESH_S must be a number of seconds"),
        ({**TABLES, "RELAY_BLOCKLIST_COLD_START": "open"}, "RELAY_BLOCKLIST_COLD_START must be 'fail-closed' or 'fail-open'"),
        ({**TABLES, "RELAY_BLOCKLIST_TABLE": "block-list"}, "RELAY_BLOCKLIST_TABLE must be a table name"),
        ({**TABLES, "RELAY_BUDGET_TABLE": "relayblocklist"}, "RELAY_BLOCKLIST_TABLE and RELAY_BUDGET_TABLE must name different tables"),
        ({**TABLES, "RELAY_BUDGET_USER_TOKENS_PER_MINUTE": "-1"}, "RELAY_BUDGET_USER_TOKENS_PER_MINUTE must be between 0 and"),
        ({**TABLES, "RELAY_BUDGET_TENANT_TOKENS_PER_DAY": "1e6"}, "RELAY_BUDGET_TENANT_TOKENS_PER_DAY must be an integer"),
        ({**TABLES, "RELAY_BUDGET_FLUSH_S": "120"}, "RELAY_BUDGET_FLUSH_S must be between 0.2 and 60"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, **overrides})
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://contoso-aoai.openai.azure.com/openai/v1/",
        "https://contoso-aoai.openai.azure.com/openai/v1",
        "https://contoso-aoai.openai.azure.com/openai",
        "https://contoso-aoai.openai.azure.com/openai/deployments/gpt-4o",
    ],
)
def test_an_endpoint_with_a_path_is_refused_naming_the_base_url_to_use(endpoint: str) -> None:
    # The relay appends /openai/v1/chat/completions itself: with a path it would call /openai/v1/openai/v1/...
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": endpoint})
    message = str(caught.value)
    assert message.startswith(
        "AZURE_OPENAI_ENDPOINT must be the resource's base URL, https://contoso-aoai.openai.azure.com, without a path"
    )


@pytest.mark.parametrize(
    "endpoint", ["https://contoso-aoai.openai.azure.com/", "http://127.0.0.1:7072", "https://contoso.cognitiveservices.azure.com"]
)
def test_a_base_url_is_accepted_without_its_trailing_slash(endpoint: str) -> None:
    assert load_settings({**BASE, "AZURE_OPENAI_ENDPOINT": endpoint}).endpoint == endpoint.rstrip("/")


def test_key_mode_with_both_settings_is_accepted() -> None:
    settings = load_settings({**BASE, **KEY_MODE})
    assert (settings.auth_mode, settings.keyvault_url, settings.key_secret_name) == (
        "key",
        "https://kv-relay.vault.azure.net",
        "azure-openai-key",
    )


def test_defaults_are_managed_identity_and_the_first_deployment() -> None:
    settings = load_settings(BASE)
    assert settings.auth_mode == "managed-identity" and settings.keyvault_url is None
    assert settings.default_deployment == "gpt-4o-mini" and settings.deployments == ("gpt-4o-mini", "gpt-4o")
    assert settings.easy_auth_enabled is False


def test_both_controls_are_off_by_default_and_need_no_table_service() -> None:
    controls = load_settings(BASE).controls
    assert controls.table_endpoint is None
    assert controls.blocklist.enabled is False and controls.budget.enabled is False


def test_control_settings_are_read() -> None:
    controls = load_settings(
        {
            **BASE,
            **TABLES,
            "RELAY_BLOCKLIST_REFRESH_S": "2.5",
            "RELAY_BLOCKLIST_COLD_START": "fail-open",
            "RELAY_BUDGET_USER_TOKENS_PER_MINUTE": "2000",
            "RELAY_BUDGET_USER_TOKENS_PER_DAY": "50000",
            "RELAY_BUDGET_TENANT_TOKENS_PER_DAY": "1000000",
            "RELAY_BUDGET_FLUSH_S": "1",
            "RELAY_BUDGET_TABLE": "spend",
        }
    ).controls
    assert controls.table_endpoint == "https://strelay.table.core.windows.net"
    assert (controls.blocklist.refresh_s, controls.blocklist.fail_open, controls.blocklist.table) == (2.5, True, "relayblocklist")
    budget = controls.budget
    assert (budget.user_tokens_per_minute, budget.user_tokens_per_day, budget.tenant_tokens_per_day) == (2000, 50000, 1000000)
    assert (budget.flush_s, budget.table, budget.enabled) == (1.0, "spend", True)


def test_the_cold_start_default_is_fail_closed() -> None:
    assert load_settings({**BASE, **TABLES}).controls.blocklist.fail_open is False


def test_the_managed_identity_endpoint_is_a_setting_app_service_provides() -> None:
    assert load_settings(BASE).identity_endpoint is None
    on_app_service = load_settings({**BASE, "IDENTITY_ENDPOINT": "http://localhost:8081/msi/token"})
    assert on_app_service.identity_endpoint == "http://localhost:8081/msi/token"
    assert load_settings({**BASE, "IDENTITY_ENDPOINT": "  "}).identity_endpoint is None


def test_the_controls_read_without_a_table_service_are_checked_as_the_relay_checks_them() -> None:
    # What the local host reads to decide whether to start Azurite: the relay would refuse this without RELAY_TABLE_ENDPOINT.
    controls = read_control_settings({"RELAY_BLOCKLIST_ENABLED": "true", "RELAY_BUDGET_TABLE": "spend"})
    assert (controls.table_endpoint, controls.use_tables, controls.blocklist.table, controls.budget.table) == (
        None,
        True,
        "relayblocklist",
        "spend",
    )
    assert read_control_settings({}).use_tables is False
    with pytest.raises(ConfigError, match="RELAY_TABLE_ENDPOINT is required"):
        load_settings({**BASE, "RELAY_BLOCKLIST_ENABLED": "true"})
    for bad, message in [
        ({"RELAY_BLOCKLIST_TABLE": "relay-blocklist"}, "RELAY_BLOCKLIST_TABLE must be a table name"),
        ({"RELAY_BLOCKLIST_COLD_START": "open"}, "RELAY_BLOCKLIST_COLD_START must be"),
        ({"RELAY_TABLE_ENDPOINT": "http://strelay.table.core.windows.net"}, "RELAY_TABLE_ENDPOINT must be an https:// URL"),
    ]:
        with pytest.raises(ConfigError, match=message):
            read_control_settings({"RELAY_BLOCKLIST_ENABLED": "true", **bad})


def test_a_table_name_is_checked_whole_and_the_error_names_the_setting_or_option() -> None:
    assert check_table_name("relayblocklist", "--table") == "relayblocklist"
    for bad in ("relayblocklist\n", "1blocks", "ab", "relay_blocklist", "a" * 64):
        with pytest.raises(ConfigError, match=r"^--table must be a table name"):
            check_table_name(bad, "--table")


SEAL_KEY = "c2VhbC1rZXktb2YtdGhpcnR5LXR3by1ieXRlcy0xMjM0NTY="  # base64 of 35 bytes
PROJECT = {"AZURE_AI_PROJECT_ENDPOINT": "https://contoso.services.ai.azure.com/api/projects/chat/", "RELAY_RESPONSES_SEAL_KEY": SEAL_KEY}


def test_the_responses_api_is_off_without_a_project_endpoint() -> None:
    assert load_settings(BASE).responses.enabled is False
    assert load_settings({**BASE, "AZURE_AI_PROJECT_ENDPOINT": ""}).responses.enabled is False


def test_a_project_endpoint_turns_the_responses_api_on_storing_by_default() -> None:
    responses = load_settings({**BASE, **PROJECT}).responses
    assert responses.project_endpoint == "https://contoso.services.ai.azure.com/api/projects/chat"
    assert (responses.store, responses.allowed_tools, len(responses.seal_key)) == (True, frozenset(), 35)
    allowing = load_settings({**BASE, **PROJECT, "RELAY_RESPONSES_STORE": "false", "RELAY_RESPONSES_ALLOWED_TOOLS": "web_search, mcp"})
    assert (allowing.responses.store, allowing.responses.allowed_tools) == (False, frozenset({"web_search", "mcp"}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"AZURE_AI_PROJECT_ENDPOINT": "http://contoso.services.ai.azure.com/api/projects/chat"},
            "AZURE_AI_PROJECT_ENDPOINT must be an https://",
        ),
        ({"AZURE_AI_PROJECT_ENDPOINT": "https://contoso.services.ai.azure.com"}, "must be a Foundry project endpoint"),
        (
            {"AZURE_AI_PROJECT_ENDPOINT": "https://contoso.services.ai.azure.com/api/projects/chat/openai/v1"},
            "must be a Foundry project endpoint",
        ),
        ({"RELAY_RESPONSES_SEAL_KEY": ""}, "AZURE_AI_PROJECT_ENDPOINT needs RELAY_TABLE_ENDPOINT"),
        ({"RELAY_RESPONSES_TABLE": "no_such-table"}, "RELAY_RESPONSES_TABLE must be a table name"),
        ({"RELAY_RESPONSES_SEAL_KEY": "c2hvcnQ="}, "RELAY_RESPONSES_SEAL_KEY must be at least 32"),
        ({"RELAY_RESPONSES_SEAL_KEY": "not base64!"}, "RELAY_RESPONSES_SEAL_KEY must be at least 32"),
        ({"RELAY_RESPONSES_ALLOWED_TOOLS": "function"}, "RELAY_RESPONSES_ALLOWED_TOOLS must list server-side tools"),
        ({"RELAY_RESPONSES_STORE": "maybe"}, "RELAY_RESPONSES_STORE must be true or false"),
    ],
)
def test_a_bad_responses_setting_is_refused_naming_it(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({**BASE, **PROJECT, **overrides})


def test_without_a_seal_key_the_relay_keeps_its_own_in_the_responses_table() -> None:
    env = {**BASE, **PROJECT, "RELAY_RESPONSES_SEAL_KEY": "", "RELAY_TABLE_ENDPOINT": "https://strelay.table.core.windows.net"}
    responses = load_settings(env).responses
    assert (responses.enabled, responses.seal_key, responses.table) == (True, b"", "relayresponses")
