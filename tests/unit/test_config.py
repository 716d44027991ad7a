"""shared.config: validated once, and a bad setting stops start-up with a message naming it."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, load_settings

BASE = {
    "AZURE_OPENAI_ENDPOINT": "https://contoso-aoai.openai.azure.com",
    "AZURE_OPENAI_DEPLOYMENTS": "gpt-4o-mini,gpt-4o",
    "APPLICATION_NAME": "contoso-chat-spa",
}
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
    ],
)
def test_a_bad_setting_is_refused_naming_it(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, **overrides})
    assert str(caught.value).startswith(message), str(caught.value)


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
