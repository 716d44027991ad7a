"""Local emulators of the Azure services the relay uses; never deployed.

One process serves, on 127.0.0.1: the App Service managed identity endpoint and an
Azure OpenAI emulator (plain HTTP, ``$EMULATOR_PORT``), and Key Vault secrets
(HTTPS, ``$EMULATOR_KEYVAULT_PORT``). How to drive them:
docs/emulators.md. ``create_app`` builds the app for in-process use.
"""

from devhost.emulator.app import create_app, create_state
from devhost.emulator.emulator_config import EmulatorConfig

__all__ = ["EmulatorConfig", "create_app", "create_state"]
