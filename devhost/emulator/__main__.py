"""``python -m devhost.emulator [--port N]``: run the emulators on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from devhost.emulator.app import create_app
from devhost.emulator.config import EmulatorConfig


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devhost.emulator", description=__doc__)
    parser.add_argument("--port", type=int, help="HTTP port (default: $EMULATOR_PORT or 7072)")
    args = parser.parse_args()
    config = EmulatorConfig.from_env(port=args.port)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=config.port, log_level="warning"))
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
