"""``python -m bench.platform_host``: the platform floor (bench/platform_floor/) behind the same front end and host stand-in.

What ``DEVHOST_RUNTIME=worker python -m devhost`` runs for the relay, with the platform floor's app
directory instead of the repository's: the App Service front end and Easy Auth emulation, the
Functions host stand-in (``devhost.functions_host``) and the real Python worker library, one worker
process. Settings as the local host's: ``PORT``, ``AZURE_OPENAI_ENDPOINT``, ``IDENTITY_ENDPOINT``,
``IDENTITY_HEADER``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from devhost import defaults
from devhost.appservice_auth import DevIdentityProvider
from devhost.defaults import ROOT
from devhost.functions_host.serve import serve_through_worker

APP_DIR = Path(__file__).resolve().parent / "platform_floor"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    env = os.environ
    port = int(env.get("PORT", defaults.PORT))
    env["WEBSITE_AUTH_ENABLED"] = "true"
    # The worker runs in the app's directory; its shell (devhost.functions_host.shell) is imported from the repository.
    env["PYTHONPATH"] = os.pathsep.join(part for part in (str(ROOT), env.get("PYTHONPATH", "")) if part)
    signal.signal(signal.SIGTERM, _interrupt)
    provider = DevIdentityProvider(audience=env.get("DEVHOST_AUDIENCE", defaults.AUDIENCE))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_through_worker(env, port, provider, (), lambda app: app, app_dir=APP_DIR))


if __name__ == "__main__":
    main()
