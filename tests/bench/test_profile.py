"""bench.profile: each sample counts to one component; with telemetry on, the exporters' threads are one of them."""

from __future__ import annotations

from bench import profile


def test_the_exporters_threads_are_one_component_and_the_requests_telemetry_counts_to_the_relay() -> None:
    loop = "<module> (devhost/__main__.py:212);Runner.run (asyncio/runners.py:118)"
    thread = "Thread._bootstrap (threading.py:1012);Thread.run (threading.py:992)"
    stacks = "\n".join(
        [
            f"{loop};Relay._complete (shared/relay.py:268);AzureMonitor.record (shared/azure_monitor.py:105);Logger.emit (_logs/__init__.py:1) 4",
            f"{thread};BatchProcessor.worker (_shared_internal/__init__.py:162);_log_to_envelope (shared/lean_envelopes.py:70) 3",
            f"{thread};BatchProcessor.worker (_shared_internal/__init__.py:162);_transmit (export/_base.py:387);send (urllib3/x.py:1) 2",
            f"{thread};PeriodicExportingMetricReader._ticker (export/__init__.py:553);export (metrics/_exporter.py:1) 1",
            f"{loop};RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:522) 5",
        ]
    )
    total, grouped = profile.by_component(stacks)
    assert total == 15
    assert dict(grouped) == {
        "uvicorn (httptools)": 5,
        "relay: azure_monitor.py": 4,
        profile.EXPORTER_THREADS: 6,
    }
