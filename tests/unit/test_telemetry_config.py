"""shared.telemetry_config: the telemetry settings, checked at start-up."""

from __future__ import annotations

import pytest

from shared.config import ConfigError
from shared.telemetry_config import DEFAULT_REFUSALS_PER_S, telemetry_settings


def test_without_a_connection_string_telemetry_to_azure_monitor_is_off() -> None:
    settings = telemetry_settings({})
    assert settings.connection_string is None and settings.refusals_per_s == DEFAULT_REFUSALS_PER_S and settings.role_name == "relay"


def test_the_function_apps_name_and_identity_are_taken_from_the_platform() -> None:
    settings = telemetry_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": " InstrumentationKey=x ",
            "AZURE_CLIENT_ID": "7e57e000-0000-4000-8000-00000000c001",
            "WEBSITE_SITE_NAME": "func-relay",
            "RELAY_TELEMETRY_REFUSALS_PER_S": "3",
        }
    )
    assert (settings.connection_string, settings.client_id, settings.role_name, settings.refusals_per_s) == (
        "InstrumentationKey=x",
        "7e57e000-0000-4000-8000-00000000c001",
        "func-relay",
        3,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RELAY_TELEMETRY_REFUSALS_PER_S": "many"}, "RELAY_TELEMETRY_REFUSALS_PER_S"),
        ({"RELAY_TELEMETRY_REFUSALS_PER_S": "0"}, "RELAY_TELEMETRY_REFUSALS_PER_S"),
        ({"AZURE_CLIENT_ID": "not-a-guid"}, "AZURE_CLIENT_ID"),
    ],
)
def test_a_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        telemetry_settings(env)
