"""``make run``: the relay behind a local App Service front end, with the Azure emulators.

Without ``AZURE_OPENAI_ENDPOINT`` it starts the emulators (Azure OpenAI, the
managed identity endpoint, Key Vault) on ``EMULATOR_PORT`` and points the
relay at them, exactly as App Service would point it at Azure. With it, no
emulator starts and the relay uses the developer's Azure CLI login. When the
block list or a token budget is on and no ``RELAY_TABLE_ENDPOINT`` is given,
it starts Azurite for their tables (devhost/azurite.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from devhost import defaults
from devhost.appservice_auth import DevIdentityProvider
from devhost.azurite import running_azurite
from devhost.server import limits_from_env, server_config
from shared.config import ConfigError, load_control_settings
from shared.logs import quiet_client_loggers


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the emulators exited with status {proc.returncode}")
        with contextlib.suppress(urllib.error.URLError, OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise SystemExit(f"the emulators did not answer at {url} within {timeout:.0f}s")


@contextlib.contextmanager
def emulators(env: MutableMapping[str, str]) -> Iterator[None]:
    """Start the emulators unless a real Azure OpenAI endpoint is configured, and point the relay at them."""
    if env.get("AZURE_OPENAI_ENDPOINT"):
        yield
        return
    port = int(env.get("EMULATOR_PORT", defaults.EMULATOR_PORT))
    base = f"http://127.0.0.1:{port}"
    env.setdefault("EMULATOR_IDENTITY_HEADER", defaults.IDENTITY_HEADER)
    env.setdefault("EMULATOR_KEYVAULT_PORT", str(port + defaults.KEYVAULT_PORT_OFFSET))
    env.setdefault("EMULATOR_CA_FILE", str(defaults.CA_FILE))
    proc = subprocess.Popen([sys.executable, "-m", "devhost.emulator", "--port", str(port)], env={**env})
    try:
        _wait_until_up(f"{base}/_emulator/healthz", proc)
        env["AZURE_OPENAI_ENDPOINT"] = base
        env["IDENTITY_ENDPOINT"] = f"{base}/msi/token"
        env["IDENTITY_HEADER"] = env["EMULATOR_IDENTITY_HEADER"]
        env.setdefault("AZURE_OPENAI_DEPLOYMENTS", env.get("EMULATOR_DEPLOYMENTS", ",".join(defaults.DEPLOYMENTS)))
        if env.get("AZURE_OPENAI_AUTH") == "key":
            env.setdefault("AZURE_KEYVAULT_URL", f"https://127.0.0.1:{env['EMULATOR_KEYVAULT_PORT']}")
            env.setdefault("AZURE_OPENAI_KEY_SECRET_NAME", defaults.KEY_SECRET_NAME)
            # Trust the emulator's locally generated CA; read by the SDK's aiohttp transport when it is first imported.
            env["SSL_CERT_FILE"] = env["EMULATOR_CA_FILE"]
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def local_tables(env: MutableMapping[str, str]) -> Iterator[None]:
    """Start Azurite when a control that keeps state in tables is on and no table service is configured; point the relay at it."""
    # The relay's own reading of the settings, as if a table service were configured.
    controls = load_control_settings({**env, "RELAY_TABLE_ENDPOINT": env.get("RELAY_TABLE_ENDPOINT") or "https://azurite.invalid"})
    if env.get("RELAY_TABLE_ENDPOINT") or not (controls.blocklist.enabled or controls.budget.enabled):
        yield
        return
    state_dir = Path(env.get("AZURITE_DIR", str(defaults.STATE_DIR / "azurite")))
    tables = (controls.blocklist.table, controls.budget.table)
    port = int(env.get("AZURITE_TABLE_PORT", "0"))
    with running_azurite(state_dir, tables, port=port, log_path=state_dir / "azurite.log") as running:
        azurite = running.tables
        env["RELAY_TABLE_ENDPOINT"] = azurite.endpoint
        # Trust Azurite's local CA (and the Key Vault emulator's, when key mode already set one): read by aiohttp at import.
        bundle = state_dir / "trusted-ca.pem"
        trusted = [Path(env["SSL_CERT_FILE"]).read_text(encoding="ascii")] if env.get("SSL_CERT_FILE") else []
        bundle.write_text("".join([*trusted, Path(azurite.ca_file).read_text(encoding="ascii")]), encoding="ascii")
        env["SSL_CERT_FILE"] = str(bundle)
        print(f"tables: Azurite at {azurite.endpoint} (block list: python -m shared.blocklist_admin --azurite list)", flush=True)
        yield


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(wrap: Callable[[ASGIApp], ASGIApp] = lambda app: app) -> None:
    """Serve until interrupted; ``wrap`` lets a test harness put its own middleware around the host app."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_client_loggers()
    env = os.environ
    port = int(env.get("PORT", defaults.PORT))
    env.setdefault("APPLICATION_NAME", defaults.APPLICATION_NAME)
    # What App Service injects when Easy Auth is on (here: the local Easy Auth below).
    env["WEBSITE_AUTH_ENABLED"] = "true"
    runtime = env.get("DEVHOST_RUNTIME", defaults.RUNTIME)
    if runtime not in defaults.RUNTIMES:
        raise SystemExit(f"DEVHOST_RUNTIME must be one of {', '.join(defaults.RUNTIMES)}, not {runtime!r}")
    signal.signal(signal.SIGTERM, _interrupt)
    provider = DevIdentityProvider(audience=env.get("DEVHOST_AUDIENCE", defaults.AUDIENCE))
    origins = [o.strip() for o in env.get("CORS_ALLOWED_ORIGINS", "").split(",") if o.strip()]
    with contextlib.ExitStack() as services:
        try:
            services.enter_context(emulators(env))
            services.enter_context(local_tables(env))
        except ConfigError as exc:
            raise SystemExit(f"configuration error: {exc}") from None
        if runtime == "worker":
            from devhost.functions_host.serve import serve

            serve(env, port, provider, origins, wrap)
            return
        try:
            import function_app
        except ConfigError as exc:
            raise SystemExit(f"configuration error: {exc}") from None
        from devhost.host_app import create_host_app

        limits, header_timeout_s = limits_from_env(env)
        app = wrap(create_host_app(function_app.app, provider, origins, on_shutdown=[function_app.relay.aclose], limits=limits))
        print(f"relay: http://127.0.0.1:{port}/api  (sample SPA: http://127.0.0.1:{port}/)", flush=True)
        print(f"dev token: curl 'http://127.0.0.1:{port}/_dev/token'", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(server_config(app, port, header_timeout_s)).run()


if __name__ == "__main__":
    main()
