"""``python -m devhost.emulator [--port N]``: run the emulators on 127.0.0.1 until interrupted.

Plain HTTP on ``$EMULATOR_PORT`` (managed identity, Azure OpenAI, control) and HTTPS on
``$EMULATOR_KEYVAULT_PORT`` (Key Vault) and ``$EMULATOR_INGESTION_PORT`` (Application Insights'
ingestion), with a CA written to ``$EMULATOR_CA_FILE``.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from devhost.emulator.app import create_app, create_ingestion_app, create_keyvault_app, create_state
from devhost.emulator.emulator_config import EmulatorConfig
from devhost.emulator.tls import LocalTls


async def serve(config: EmulatorConfig) -> None:
    state = create_state(config)
    tls = LocalTls(config.ca_file)
    http = uvicorn.Config(create_app(config, state), host="127.0.0.1", port=config.port, log_level="warning")
    https = [
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ssl_certfile=str(tls.cert_file))
        for app, port in ((create_keyvault_app(state), config.keyvault_port), (create_ingestion_app(state), config.ingestion_port))
    ]
    try:
        # Each server restores the previous signal handler and re-raises the signal when it stops,
        # so one SIGTERM/SIGINT stops them all.
        await asyncio.gather(*(uvicorn.Server(server).serve() for server in (http, *https)))
    finally:
        tls.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devhost.emulator", description=__doc__)
    parser.add_argument("--port", type=int, help="HTTP port (default: $EMULATOR_PORT or 7072)")
    args = parser.parse_args()
    asyncio.run(serve(EmulatorConfig.from_env(port=args.port)))


if __name__ == "__main__":
    main()
