"""A real emulator process on free ports, and a client for its control endpoints."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, run_python_module

IDENTITY_HEADER = "test-identity-header"
API_KEY = "test-aoai-key"
COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


@dataclass(frozen=True)
class Emulator:
    port: int
    keyvault_port: int
    ca_file: Path
    ingestion_port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def vault_url(self) -> str:
        return f"https://127.0.0.1:{self.keyvault_port}"

    @property
    def ingestion_url(self) -> str:
        return f"https://127.0.0.1:{self.ingestion_port}"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.base}/msi/token"

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}/_emulator/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "requests")
        return result

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = self.control("GET", "stats")
        return result

    def token(self, resource: str = COGNITIVE_SCOPE, client_id: str | None = None) -> str:
        query = f"api-version=2019-08-01&resource={resource}" + (f"&client_id={client_id}" if client_id else "")
        request = urllib.request.Request(f"{self.identity_endpoint}?{query}", headers={"X-IDENTITY-HEADER": IDENTITY_HEADER})
        with urllib.request.urlopen(request, timeout=5) as response:
            token: str = json.loads(response.read())["access_token"]
        return token


@contextlib.contextmanager
def running_emulator(tmp_dir: Path, **extra_env: str) -> Iterator[Emulator]:
    port, keyvault_port, ingestion_port = free_port(), free_port(), free_port()
    env = {
        "EMULATOR_PORT": str(port),
        "EMULATOR_KEYVAULT_PORT": str(keyvault_port),
        "EMULATOR_INGESTION_PORT": str(ingestion_port),
        "EMULATOR_IDENTITY_HEADER": IDENTITY_HEADER,
        "EMULATOR_API_KEY": API_KEY,
        "EMULATOR_CA_FILE": str(tmp_dir / "ca" / "ca.pem"),
        **extra_env,
    }
    ready = f"http://127.0.0.1:{port}/_emulator/healthz"
    with run_python_module("devhost.emulator", env=env, ready_url=ready, log_path=tmp_dir / "emulator.log"):
        yield Emulator(port, keyvault_port, tmp_dir / "ca" / "ca.pem", ingestion_port)
