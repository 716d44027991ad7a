"""The local host (relay + App Service front end + emulators) as a test fixture over real sockets."""

from __future__ import annotations

import contextlib
import json
import time
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


def key_mode(key: str) -> dict[str, str]:
    """The local host's environment for ``AZURE_OPENAI_AUTH=key``: ``key`` is both the emulator's accepted key and the vault's secret."""
    return {"AZURE_OPENAI_AUTH": "key", "EMULATOR_API_KEY": key, "EMULATOR_KEYVAULT_SECRETS": json.dumps({defaults.KEY_SECRET_NAME: key})}


@dataclass
class Stack:
    base_url: str
    emulator_url: str
    log_path: Path
    runtime: str = defaults.RUNTIME

    @property
    def api(self) -> str:
        return f"{self.base_url}/api"

    @property
    def port(self) -> int:
        """The local host's port, for raw-socket clients."""
        return int(self.base_url.rsplit(":", 1)[1])

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
        """The log's whole lines: a line the relay is still writing (no newline yet) is left for the next read."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[: text.rfind("\n") + 1].splitlines()

    def request_log(self, client_request_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The relay's log line for the request the caller sent with ``x-request-id: client_request_id``.

        The relay keys its lines (and what it sends upstream) by an ID it makes itself; a test finds
        its request through the ID it chose, which the line keeps beside it.
        """
        needle = f'"client_request_id":"{client_request_id}"'
        for line in reversed(self.log_lines_once(needle, timeout)):
            if needle in line:
                record: dict[str, Any] = json.loads(line[line.index("{") :])
                return record
        raise AssertionError(f"no log line for x-request-id {client_request_id}")

    def relay_request_ids(self) -> dict[str, str]:
        """The relay's request ID for each caller ``x-request-id`` its log lines name so far."""
        ids = {}
        for line in self.log_lines():
            if '"relay.request"' in line:
                logged = json.loads(line[line.index("{") :])
                if logged["client_request_id"] is not None:
                    ids[logged["client_request_id"]] = logged["request_id"]
        return ids

    def log_lines_once(self, needle: str, timeout: float = 5.0) -> list[str]:
        """The log once a line contains ``needle``: through the worker a log line travels apart from the response."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines()
            if any(needle in line for line in lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@contextlib.contextmanager
def run_stack(tmp_dir: Path, env: Mapping[str, str] | None = None, module: str = "devhost") -> Iterator[Stack]:
    """``python -m devhost`` (or a ``module`` that serves it, such as tests.support.probe) with the emulators, on free ports."""
    port, emulator_port = free_port(), free_port()
    full_env = {
        "PORT": str(port),
        "EMULATOR_PORT": str(emulator_port),
        "EMULATOR_KEYVAULT_PORT": str(free_port()),
        "EMULATOR_INGESTION_PORT": str(free_port()),
        # Telemetry to the ingestion stand-in only where a test asks for it (tests/integration/test_telemetry.py).
        "DEVHOST_TELEMETRY": "off",
        "EMULATOR_CA_FILE": str(tmp_dir / "emulator-ca.pem"),
        "APPLICATION_NAME": APPLICATION_NAME,
        "AZURE_OPENAI_DEPLOYMENTS": DEPLOYMENTS,
        "AZURE_OPENAI_ENDPOINT": "",
        **(env or {}),
    }
    log_path = tmp_dir / f"devhost-{port}.log"
    base = f"http://127.0.0.1:{port}"
    with run_python_module(module, env=full_env, ready_url=f"{base}/api/healthz", log_path=log_path):
        yield Stack(base, f"http://127.0.0.1:{emulator_port}", log_path, full_env.get("DEVHOST_RUNTIME") or defaults.RUNTIME)
