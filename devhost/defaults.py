"""The local host's defaults, in one place: ports, the emulated platform's secrets and names.

None of these is a secret: they only let local processes that trust each other
agree (the relay and the managed identity emulator share ``IDENTITY_HEADER`` as
App Service's front end and worker share theirs). Each can be overridden by the
environment variable named in README.md.
"""

from __future__ import annotations

from pathlib import Path

PORT = 7071
EMULATOR_PORT = 7072
# Key Vault listens on the next port (HTTPS), unless EMULATOR_KEYVAULT_PORT says otherwise.
KEYVAULT_PORT_OFFSET = 1
# Application Insights' ingestion endpoint (HTTPS) on the one after, unless EMULATOR_INGESTION_PORT says otherwise.
INGESTION_PORT_OFFSET = 2
DEPLOYMENTS = ("gpt-4o-mini", "gpt-4o")
# The Foundry project the emulator plays for the Responses API (any name works).
PROJECT = "local-project"
# DEVHOST_RUNTIME: the relay's functions in the local host's process, or through the Functions Python worker
# (devhost/functions_host, docs/functions-host.md).
RUNTIME = "in-process"
RUNTIMES = ("in-process", "worker")
APPLICATION_NAME = "local-dev-spa"
# The dev tokens' audience, as an Entra app registration's Application ID URI would be.
AUDIENCE = "api://relay-local"
IDENTITY_HEADER = "local-identity-header"
API_KEY = "local-aoai-key"
KEY_SECRET_NAME = "azure-openai-key"  # noqa: S105 - the secret's name, not its value
# The checkout the local host runs from (and its child processes start in).
ROOT = Path(__file__).resolve().parent.parent
# Files the local host writes (the emulator's CA, Azurite's data); gitignored, never deployed.
STATE_DIR = ROOT / ".devhost"
CA_FILE = STATE_DIR / "emulator-ca.pem"
# Where `make run` keeps Azurite's data unless AZURITE_DIR says otherwise.
AZURITE_DIR = STATE_DIR / "azurite"
