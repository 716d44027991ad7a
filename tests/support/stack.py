"""The local host (relay + App Service front end + emulators) as a test fixture over real sockets."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost import defaults
from tests.support.servers import free_port, run_python_module

APPLICATION_NAME = "contoso-chat-spa"
DEPLOYMENTS = ",".join(defaults.DEPLOYMENTS)


@dataclass
class Stack:
    base_url: str
    emulator_url: str
    log_path: Path

    @property
    def api(self) -> str:
        return f"{self.base_url}/api"

    def token(self, **params: str) -> str:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.base_url}/_dev/token?{query}", timeout=5) as resp:
            return str(json.load(resp)["access_token"])

    def emulator(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.emulator_url}{path}", data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def requests(self) -> list[dict[str, Any]]:
        return list(self.emulator("GET", "/_emulator/requests"))

    def stats(self) -> dict[str, int]:
        return dict(self.emulator("GET", "/_emulator/stats"))

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()


@contextlib.contextmanager
def run_stack(tmp_dir: Path, env: Mapping[str, str] | None = None, module: str = "devhost") -> Iterator[Stack]:
    """``python -m devhost`` (or a ``module`` that serves it, such as tests.support.probe) with the emulators, on free ports."""
    port, emulator_port = free_port(), free_port()
    full_env = {
        "PORT": str(port),
        "EMULATOR_PORT": str(emulator_port),
        "EMULATOR_KEYVAULT_PORT": str(free_port()),
        "EMULATOR_CA_FILE": str(tmp_dir / "emulator-ca.pem"),
        "APPLICATION_NAME": APPLICATION_NAME,
        "AZURE_OPENAI_DEPLOYMENTS": DEPLOYMENTS,
        "AZURE_OPENAI_ENDPOINT": "",
        **(env or {}),
    }
    log_path = tmp_dir / f"devhost-{port}.log"
    base = f"http://127.0.0.1:{port}"
    with run_python_module(module, env=full_env, ready_url=f"{base}/api/healthz", log_path=log_path):
        yield Stack(base, f"http://127.0.0.1:{emulator_port}", log_path)
