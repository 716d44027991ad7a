"""devhost.telemetry: make run points the relay's exporter at the ingestion stand-in, as App Service points it at Azure."""

from __future__ import annotations

from pathlib import Path

from devhost.telemetry import LOCAL_INSTRUMENTATION_KEY, point_at_local_ingestion
from tests.infra import bicep
from tests.infra.test_app_settings import APPS


def test_the_relay_is_pointed_at_the_stand_in_over_https_with_every_call_to_a_fixed_azure_host_off() -> None:
    env: dict[str, str] = {}
    assert point_at_local_ingestion(env, 7074, Path("/tmp/ca.pem"))
    assert env == {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={LOCAL_INSTRUMENTATION_KEY};IngestionEndpoint=https://127.0.0.1:7074/",
        "REQUESTS_CA_BUNDLE": "/tmp/ca.pem",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "PYTHON_ENABLE_OPENTELEMETRY": "true",
    }
    # What the worker needs to attach each invocation's trace context is what the template sets in Azure.
    assert bicep.relay_app_settings(APPS[0])["PYTHON_ENABLE_OPENTELEMETRY"] == env["PYTHON_ENABLE_OPENTELEMETRY"]


def test_telemetry_off_or_a_connection_string_already_set_is_left_alone() -> None:
    off = {"DEVHOST_TELEMETRY": "off"}
    assert not point_at_local_ingestion(off, 7074, Path("/tmp/ca.pem")) and off == {"DEVHOST_TELEMETRY": "off"}
    mine = {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x;IngestionEndpoint=https://example/"}
    kept = dict(mine)
    assert not point_at_local_ingestion(kept, 7074, Path("/tmp/ca.pem")) and kept == mine
