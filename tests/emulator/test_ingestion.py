"""Application Insights' ingestion stand-in with local authentication off, as a raw client and the real exporter see it."""

from __future__ import annotations

import gzip
import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from azure.identity import ManagedIdentityCredential
from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from tests.support.emulator import COGNITIVE_SCOPE, IDENTITY_HEADER, Emulator

MONITOR_SCOPE = "https://monitor.azure.com//.default"
IKEY = "7e57e000-0000-4000-8000-0000000a1e01"
ENVELOPE = {"name": "Microsoft.ApplicationInsights.Message", "iKey": IKEY, "time": "2026-01-01T00:00:00Z", "data": {"baseType": "MessageData"}}


@pytest.fixture
def ingestion(emulator: Emulator) -> Iterator[httpx2.Client]:
    context = ssl.create_default_context(cafile=str(emulator.ca_file))
    with httpx2.Client(base_url=emulator.ingestion_url, verify=context, timeout=5) as client:
        yield client


def track(ingestion: httpx2.Client, token: str | None, body: bytes = json.dumps([ENVELOPE]).encode(), **headers: str) -> httpx2.Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return ingestion.post("/v2.1/track", content=body, headers={"Content-Type": "application/json", **auth, **headers})


def test_a_request_without_a_token_or_with_one_for_another_audience_is_refused_and_nothing_kept(
    ingestion: httpx2.Client, emulator: Emulator
) -> None:
    for token in (None, emulator.token(COGNITIVE_SCOPE), "not.a.token"):
        response = track(ingestion, token)
        assert response.status_code == 401
        assert response.json()["itemsAccepted"] == 0 and response.json()["errors"][0]["statusCode"] == 401
    assert emulator.control("GET", "telemetry") == []


def test_a_monitor_token_gets_its_items_accepted_json_or_gzip(ingestion: httpx2.Client, emulator: Emulator) -> None:
    token = emulator.token(MONITOR_SCOPE)
    assert track(ingestion, token).json() == {"itemsReceived": 1, "itemsAccepted": 1, "errors": []}
    zipped = gzip.compress(json.dumps([ENVELOPE, ENVELOPE]).encode())
    assert track(ingestion, token, zipped, **{"Content-Encoding": "gzip"}).json()["itemsAccepted"] == 2
    assert emulator.control("GET", "telemetry") == [ENVELOPE] * 3


def test_a_body_that_is_not_telemetry_is_a_400(ingestion: httpx2.Client, emulator: Emulator) -> None:
    assert track(ingestion, emulator.token(MONITOR_SCOPE), b"{not json").status_code == 400


def _export_one(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, **options: Any) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emulator.ca_file))
    for name in ("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "APPLICATIONINSIGHTS_SDKSTATS_DISABLED", "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED"):
        monkeypatch.setenv(name, "true")
    exporter = AzureMonitorLogExporter(
        connection_string=f"InstrumentationKey={IKEY};IngestionEndpoint={emulator.ingestion_url}/", disable_offline_storage=True, **options
    )
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("test").emit(body="relay.request", attributes={"oid": "o-1"})
    provider.shutdown()


def test_the_real_exporter_is_accepted_with_the_managed_identity_and_refused_without(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _export_one(emulator, monkeypatch)
    assert emulator.control("GET", "telemetry") == []

    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    _export_one(emulator, monkeypatch, credential=ManagedIdentityCredential())
    [received] = emulator.control("GET", "telemetry")
    assert received["data"]["baseData"]["message"] == "relay.request" and received["data"]["baseData"]["properties"]["oid"] == "o-1"
