"""``make run``: the relay behind a local App Service front end, with the Azure emulators.

Without ``AZURE_OPENAI_ENDPOINT`` it starts the emulators (Azure OpenAI, the
managed identity endpoint, Key Vault) on ``EMULATOR_PORT`` and points the
relay at them, exactly as App Service would point it at Azure. With it, no
emulator starts and the relay uses the developer's Azure CLI login. When the
block list or a token budget is on and no ``RELAY_TABLE_ENDPOINT`` is given,
it starts Azurite for their tables (devhost/azurite.py).

Before it starts anything it stops what a killed run left running (devhost/run_record.py)
and checks that every port it will listen on is free (devhost/port_plan.py). Ctrl-C,
SIGTERM and SIGHUP (a closed terminal) stop it and everything it started.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from devhost import defaults
from devhost.appservice_auth import DevIdentityProvider
from devhost.azurite import AzuriteError, running_azurite
from devhost.port_plan import planned_ports, port_problems, read_port
from devhost.ports import free_port
from devhost.processes import stop_process_group, wait_for_http
from devhost.run_record import RunRecord, stop_leftovers
from devhost.server import limits_from_env, server_config
from devhost.telemetry import InvocationTraceContext, flush_route, point_at_local_ingestion
from shared.config import ConfigError, ControlSettings, read_control_settings
from shared.logs import quiet_client_loggers

SETTINGS = """settings (environment variables; make passes them through, e.g. PORT=7081 make run):
  PORT                    the relay, the sample SPA and /_dev/token (default 7071)
  EMULATOR_PORT           the Azure OpenAI and managed identity emulators (default 7072)
  EMULATOR_KEYVAULT_PORT  the Key Vault emulator, HTTPS (default EMULATOR_PORT + 1)
  AZURITE_TABLE_PORT      Azurite's table service (default: a free port)
  AZURITE_DIR             Azurite's data (default .devhost/azurite)
  AZURE_OPENAI_ENDPOINT   a real resource instead of the emulators, reached with your `az login`
  AZURE_AI_PROJECT_ENDPOINT  the Foundry project of the Responses API (default: the emulator's; "" turns it off)
  DEVHOST_RUNTIME         in-process (default) or worker (the Functions Python worker)
  RELAY_*, AZURE_OPENAI_* the relay's own settings (README.md, "Configuration")"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="The local host of `make run`: the relay behind a local App Service front end and Easy Auth, with the Azure emulators.",
        epilog=SETTINGS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def emulators(env: MutableMapping[str, str], record: RunRecord) -> Iterator[None]:
    """Start the emulators unless a real Azure OpenAI endpoint is configured, and point the relay at them."""
    if env.get("AZURE_OPENAI_ENDPOINT"):
        yield
        return
    port = read_port(env, "EMULATOR_PORT", defaults.EMULATOR_PORT)
    base = f"http://127.0.0.1:{port}"
    env.setdefault("EMULATOR_IDENTITY_HEADER", defaults.IDENTITY_HEADER)
    env.setdefault("EMULATOR_KEYVAULT_PORT", str(port + defaults.KEYVAULT_PORT_OFFSET))
    env.setdefault("EMULATOR_CA_FILE", str(defaults.CA_FILE))
    # Its own process group, so that stopping it stops all of it however it was started.
    args = [sys.executable, "-m", "devhost.emulator", "--port", str(port)]
    proc = subprocess.Popen(args, env={**env}, start_new_session=True)
    record.add("the emulators", proc.pid, args)
    try:
        try:
            wait_for_http(f"{base}/_emulator/healthz", timeout=30.0, proc=proc, interval=0.1)
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"the emulators did not start: {exc}") from None
        if proc.poll() is not None:
            raise SystemExit(f"the emulators did not start (status {proc.returncode}): another process answers on {base}")
        env["AZURE_OPENAI_ENDPOINT"] = base
        env["IDENTITY_ENDPOINT"] = f"{base}/msi/token"
        env["IDENTITY_HEADER"] = env["EMULATOR_IDENTITY_HEADER"]
        env.setdefault("AZURE_OPENAI_DEPLOYMENTS", env.get("EMULATOR_DEPLOYMENTS", ",".join(defaults.DEPLOYMENTS)))
        # The Responses API, the emulator playing a Foundry project (AZURE_AI_PROJECT_ENDPOINT="" turns it off);
        # a seal key of this run: ids handed out in an earlier run are unknown, as is the emulator's state.
        env.setdefault("AZURE_AI_PROJECT_ENDPOINT", f"{base}/api/projects/{defaults.PROJECT}")
        env.setdefault("RELAY_RESPONSES_SEAL_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
        if env.get("AZURE_OPENAI_AUTH") == "key":
            env.setdefault("AZURE_KEYVAULT_URL", f"https://127.0.0.1:{env['EMULATOR_KEYVAULT_PORT']}")
            env.setdefault("AZURE_OPENAI_KEY_SECRET_NAME", defaults.KEY_SECRET_NAME)
            # Trust the emulator's locally generated CA; read by the SDK's aiohttp transport when it is first imported.
            env["SSL_CERT_FILE"] = env["EMULATOR_CA_FILE"]
        ingestion_port = int(env.get("EMULATOR_INGESTION_PORT", port + defaults.INGESTION_PORT_OFFSET))
        if point_at_local_ingestion(env, ingestion_port, Path(env["EMULATOR_CA_FILE"])):
            print(f"telemetry: {base}/_emulator/telemetry/page (per user), {base}/_emulator/telemetry (as received)", flush=True)
        yield
    finally:
        stop_process_group(proc, grace=10.0)


def starts_azurite(controls: ControlSettings) -> bool:
    """A control that keeps state in tables is on and no table service is configured."""
    return controls.use_tables and not controls.table_endpoint


@contextlib.contextmanager
def local_tables(env: MutableMapping[str, str], controls: ControlSettings, record: RunRecord) -> Iterator[None]:
    """Start Azurite when ``starts_azurite``; point the relay at it."""
    if not starts_azurite(controls):
        yield
        return
    state_dir = Path(env.get("AZURITE_DIR") or defaults.AZURITE_DIR)
    tables = (controls.blocklist.table, controls.budget.table)
    # A free port, but not one this run is about to bind (the relay binds its port after Azurite starts).
    planned = {use.port for use in planned_ports(env, emulators=True, azurite=False)}
    port = read_port(env, "AZURITE_TABLE_PORT", 0) or free_port(avoid=planned)

    def started(proc: subprocess.Popen[bytes], args: Sequence[str], stop_signal: int) -> None:
        record.add("Azurite", proc.pid, args, stop_signal)

    with running_azurite(state_dir, tables, port=port, log_path=state_dir / "azurite.log", on_start=started) as running:
        azurite = running.tables
        env["RELAY_TABLE_ENDPOINT"] = azurite.endpoint
        # Trust Azurite's local CA (and the Key Vault emulator's, when key mode already set one): read by aiohttp at import.
        bundle = state_dir / "trusted-ca.pem"
        trusted = [Path(env["SSL_CERT_FILE"]).read_text(encoding="ascii")] if env.get("SSL_CERT_FILE") else []
        bundle.write_text("".join([*trusted, Path(azurite.ca_file).read_text(encoding="ascii")]), encoding="ascii")
        env["SSL_CERT_FILE"] = str(bundle)
        print(f"tables: Azurite at {azurite.endpoint} (block list: python -m ops.blocklist_admin --azurite list)", flush=True)
        yield


def prepare(env: MutableMapping[str, str], record: RunRecord) -> ControlSettings:
    """Before anything starts: the settings checked, a killed run's leftovers stopped, every port free; SystemExit says what is wrong."""
    try:
        # The relay's own reading and checks of the settings, RELAY_TABLE_ENDPOINT left optional.
        controls = read_control_settings(env)
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    stopped = stop_leftovers(record.directory)
    if stopped:
        print(f"stopped what a previous run left running: {', '.join(stopped)}", flush=True)
    problems = port_problems(planned_ports(env, emulators=not env.get("AZURE_OPENAI_ENDPOINT"), azurite=starts_azurite(controls)))
    if problems:
        raise SystemExit("\n".join(problems))
    return controls


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _hang_up(signum: int, frame: object) -> None:
    # A closed terminal stops the run as SIGTERM does: uvicorn's own handler while it serves, else _interrupt.
    os.kill(os.getpid(), signal.SIGTERM)


def main(wrap: Callable[[ASGIApp], ASGIApp] = lambda app: app, argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted; ``wrap`` lets a test harness put its own middleware around the host app."""
    parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_client_loggers()
    env = os.environ
    port = read_port(env, "PORT", defaults.PORT)
    env.setdefault("APPLICATION_NAME", defaults.APPLICATION_NAME)
    # What App Service injects when Easy Auth is on (here: the local Easy Auth below).
    env["WEBSITE_AUTH_ENABLED"] = "true"
    runtime = env.get("DEVHOST_RUNTIME", defaults.RUNTIME)
    if runtime not in defaults.RUNTIMES:
        raise SystemExit(f"DEVHOST_RUNTIME must be one of {', '.join(defaults.RUNTIMES)}, not {runtime!r}")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _hang_up)
    record = RunRecord(defaults.STATE_DIR / "runs")
    provider = DevIdentityProvider(audience=env.get("DEVHOST_AUDIENCE", defaults.AUDIENCE))
    origins = [o.strip() for o in env.get("CORS_ALLOWED_ORIGINS", "").split(",") if o.strip()]
    with contextlib.suppress(KeyboardInterrupt), contextlib.ExitStack() as services:
        controls = prepare(env, record)
        # Entered first, so left last: the record goes once every child is stopped.
        services.callback(record.remove)
        try:
            services.enter_context(emulators(env, record))
            services.enter_context(local_tables(env, controls, record))
        except AzuriteError as exc:
            raise SystemExit(f"Azurite did not start: {exc}") from None
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
        relay = function_app.relay
        dev_routes = [flush_route(relay.telemetry.force_flush)]
        app = create_host_app(function_app.app, provider, origins, on_shutdown=[relay.aclose], limits=limits, dev_routes=dev_routes)
        app = wrap(InvocationTraceContext(app) if relay.telemetry.azure_monitor is not None else app)
        print(f"relay: http://127.0.0.1:{port}/api  (sample SPA: http://127.0.0.1:{port}/)", flush=True)
        print(f"dev token: curl 'http://127.0.0.1:{port}/_dev/token'", flush=True)
        uvicorn.Server(server_config(app, port, header_timeout_s)).run()


if __name__ == "__main__":
    main()
