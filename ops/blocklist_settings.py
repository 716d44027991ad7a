"""The block list command's settings, read from the analyst's environment the way the relay reads its own.

RELAY_BLOCKLIST_TABLE and RELAY_TABLE_ENDPOINT go through the relay's reader and checks
(shared/config.py), so the command refuses a value the relay would refuse at start-up and uses
the table the relay reads. AZURITE_DIR says where ``make run`` keeps its Azurite (``--azurite``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.config import read_control_settings


@dataclass(frozen=True)
class AdminSettings:
    table: str
    table_endpoint: str | None
    # None: where `make run` keeps it by default (devhost/defaults.py).
    azurite_dir: Path | None = None


def load_admin_settings(env: Mapping[str, str]) -> AdminSettings:
    """The settings; ConfigError (a ValueError) names a setting the relay would refuse."""
    controls = read_control_settings(env)
    azurite_dir = env.get("AZURITE_DIR", "").strip()
    return AdminSettings(controls.blocklist.table, controls.table_endpoint, Path(azurite_dir) if azurite_dir else None)
