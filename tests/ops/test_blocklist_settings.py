"""ops.blocklist_settings and the command's refusals: the relay's own checks of the block list table and the table service."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.blocklist_admin import main
from ops.blocklist_settings import AdminSettings, load_admin_settings
from shared.config import ConfigError


def test_without_settings_the_command_uses_the_relays_default_table_and_no_service() -> None:
    assert load_admin_settings({}) == AdminSettings(table="relayblocklist", table_endpoint=None, azurite_dir=None)


def test_the_settings_are_read_as_the_relay_reads_them() -> None:
    env = {
        "RELAY_BLOCKLIST_TABLE": "soc2blocks",
        "RELAY_TABLE_ENDPOINT": "https://contoso.table.core.windows.net/",
        "AZURITE_DIR": "/srv/azurite",
    }
    assert load_admin_settings(env) == AdminSettings("soc2blocks", "https://contoso.table.core.windows.net", Path("/srv/azurite"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RELAY_BLOCKLIST_TABLE": "relay-blocklist"}, "RELAY_BLOCKLIST_TABLE must be a table name"),
        ({"RELAY_BLOCKLIST_TABLE": "rb"}, "RELAY_BLOCKLIST_TABLE must be a table name"),
        ({"RELAY_BLOCKLIST_TABLE": "relaybudget"}, "RELAY_BLOCKLIST_TABLE and RELAY_BUDGET_TABLE must name different tables"),
        ({"RELAY_TABLE_ENDPOINT": "http://contoso.table.core.windows.net"}, "RELAY_TABLE_ENDPOINT must be an https:// URL"),
        ({"RELAY_TABLE_ENDPOINT": "https://contoso.table.core.windows.net/?sv=2024"}, "RELAY_TABLE_ENDPOINT must be an https:// URL"),
    ],
)
def test_a_setting_the_relay_would_refuse_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_admin_settings(env)


def test_the_command_refuses_a_bad_table_setting_before_it_opens_anything(capsys: pytest.CaptureFixture[str]) -> None:
    # With no --account-url, --azurite or --connection-string it would otherwise answer "say where the table is".
    with pytest.raises(SystemExit) as exited:
        main(["list"], env={"RELAY_BLOCKLIST_TABLE": "relay_blocklist"})
    assert exited.value.code == 2
    assert "RELAY_BLOCKLIST_TABLE must be a table name" in capsys.readouterr().err


def test_the_command_refuses_a_bad_table_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--table", "relay-blocklist", "list"], env={})
    assert exited.value.code == 2
    assert "--table must be a table name (a letter, then 2-62 letters or digits), got 'relay-blocklist'" in capsys.readouterr().err
