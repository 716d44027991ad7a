"""A stand-in for the Azure CLI, for running the deployment scripts offline.

``install(directory, log)`` writes an ``az`` executable into ``directory``
(put it first on PATH). Each call appends its arguments to ``log`` as one JSON
line and answers the queries register-entra-apps.sh makes with fixed example
values: both app registrations already exist, the SPA registration already
lists the redirect URIs in ``FAKE_AZ_SPA_REDIRECT_URIS`` (a JSON array), no
federated credential exists yet, and the CLI's cloud is ``FAKE_AZ_CLOUD``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TENANT_ID = "72f988bf-0000-4000-8000-0000000000f1"
APP_IDS = {"api": "6f1c2d3e-0000-4000-8000-0000000000a1", "spa": "6f1c2d3e-0000-4000-8000-0000000000b1"}
OBJECT_IDS = {APP_IDS["api"]: "0b1ec7a1-0000-4000-8000-0000000000a2", APP_IDS["spa"]: "0b1ec7a1-0000-4000-8000-0000000000b2"}
SERVICE_PRINCIPAL_ID = "5e2f1c0d-0000-4000-8000-0000000000c1"
#: The Azure CLI's cloud is FAKE_AZ_CLOUD (default AzureCloud); its Entra ID login endpoint:
LOGIN_ENDPOINTS = {
    "AzureCloud": "https://login.microsoftonline.com",
    "AzureUSGovernment": "https://login.microsoftonline.us",
    "AzureChinaCloud": "https://login.chinacloudapi.cn",
}


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1] if name in args else ""


def answer(args: list[str]) -> str:
    """What the real CLI would print for this call, in the example tenant."""
    query = _option(args, "--query")
    command = " ".join(a for a in args[:4] if not a.startswith("-"))
    if command.startswith("account show"):
        return TENANT_ID
    if command.startswith("cloud show"):
        cloud = os.environ.get("FAKE_AZ_CLOUD", "AzureCloud")
        return cloud if query == "name" else LOGIN_ENDPOINTS.get(cloud, "https://login.example")
    if command.startswith("ad app list"):
        return APP_IDS["api" if _option(args, "--display-name").endswith("-api") else "spa"]
    if command.startswith("ad app show"):
        if query == "id":
            return OBJECT_IDS[_option(args, "--id")]
        if query == "spa.redirectUris":
            return os.environ.get("FAKE_AZ_SPA_REDIRECT_URIS", "[]")
        return ""  # no scope or role yet: the script mints their IDs
    if command.startswith("ad sp list"):
        return SERVICE_PRINCIPAL_ID
    if command.startswith("rest") and _option(args, "--method") == "GET":
        return "0"
    return ""


def install(directory: Path, log: Path) -> Path:
    """Write the ``az`` executable into ``directory``; calls are logged to ``log``."""
    directory.mkdir(parents=True, exist_ok=True)
    executable = directory / "az"
    executable.write_text(
        f"#!/bin/sh\nFAKE_AZ_LOG='{log}' exec '{sys.executable}' '{Path(__file__).resolve()}' \"$@\"\n",
        encoding="utf-8",
    )
    executable.chmod(0o755)
    return executable


def calls(log: Path) -> list[list[str]]:
    """Every logged call, as its argument list."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def main() -> None:
    args = sys.argv[1:]
    with open(os.environ["FAKE_AZ_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(args) + "\n")
    output = answer(args)
    if output:
        print(output)


if __name__ == "__main__":
    main()
