"""The telemetry settings (README.md, "Configuration"): where Azure Monitor is, as whom to send, how many refusals a second."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import ConfigError
from shared.header_checks import is_guid

DEFAULT_REFUSALS_PER_S = 10


@dataclass(frozen=True)
class TelemetrySettings:
    # Application Insights' connection string; None: telemetry to Azure Monitor is off.
    connection_string: str | None = None
    # The user-assigned managed identity the exporter authenticates with (None: system-assigned).
    client_id: str | None = None
    refusals_per_s: int = DEFAULT_REFUSALS_PER_S
    # AppRoleName in Application Insights: the function app's name where App Service sets it.
    role_name: str = "relay"


def telemetry_settings(env: Mapping[str, str]) -> TelemetrySettings:
    raw_rate = env.get("RELAY_TELEMETRY_REFUSALS_PER_S", "").strip()
    try:
        rate = int(raw_rate) if raw_rate else DEFAULT_REFUSALS_PER_S
    except ValueError:
        raise ConfigError(f"RELAY_TELEMETRY_REFUSALS_PER_S must be an integer, got {raw_rate!r}") from None
    if not 1 <= rate <= 100_000:
        raise ConfigError(f"RELAY_TELEMETRY_REFUSALS_PER_S must be between 1 and 100000, got {rate}")
    client_id = env.get("AZURE_CLIENT_ID", "").strip() or None
    if client_id is not None and not is_guid(client_id):
        raise ConfigError("AZURE_CLIENT_ID must be a GUID (the user-assigned identity's client ID)")
    return TelemetrySettings(
        connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip() or None,
        client_id=client_id,
        refusals_per_s=rate,
        role_name=env.get("WEBSITE_SITE_NAME", "").strip() or "relay",
    )
