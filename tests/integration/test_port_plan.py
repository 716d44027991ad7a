"""devhost.port_plan: which ports a run will use, each with its setting, and the one line a taken or doubled port gets."""

from __future__ import annotations

import socket

import pytest

from devhost.port_plan import planned_ports, port_problems, read_port
from devhost.ports import port_in_use
from tests.support.servers import free_port


def test_the_plan_follows_what_the_run_starts() -> None:
    env = {"PORT": "7171", "EMULATOR_PORT": "7272", "AZURITE_TABLE_PORT": "10002"}
    assert [(u.port, u.setting) for u in planned_ports(env, emulators=True, azurite=True)] == [
        (7171, "PORT"), (7272, "EMULATOR_PORT"), (7273, "EMULATOR_KEYVAULT_PORT"), (7274, "EMULATOR_INGESTION_PORT"),
        (10002, "AZURITE_TABLE_PORT")
    ]  # fmt: skip
    assert [u.setting for u in planned_ports({}, emulators=False, azurite=True)] == ["PORT"]  # Azurite on a free port: nothing to check


def test_a_port_planned_twice_names_both_settings() -> None:
    # Both ports free, so that the doubled one is the only problem (the machine's other services come and go).
    port = next(port for port in iter(free_port, None) if not port_in_use(port - 1))
    env = {"PORT": str(port), "EMULATOR_PORT": str(port - 1), "EMULATOR_KEYVAULT_PORT": "", "EMULATOR_INGESTION_PORT": str(free_port())}
    assert port_problems(planned_ports(env, emulators=True, azurite=False)) == [
        f"PORT and EMULATOR_KEYVAULT_PORT (default: EMULATOR_PORT + 1) are both {port}: set EMULATOR_KEYVAULT_PORT to another port"
    ]


def test_a_taken_port_suggests_a_free_one_nearby() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        [problem] = port_problems(planned_ports({"PORT": str(port)}, emulators=False, azurite=False))
    suggested = int(problem.rsplit("`PORT=", 1)[1].split(" ", 1)[0])
    assert problem.startswith(f"port {port} (the relay) is in use by another process: stop that process, or choose another port with PORT")
    assert port < suggested < port + 50


@pytest.mark.parametrize("value", ["http", "-1", "70000", "71.5"])
def test_a_port_setting_that_is_not_a_port_is_named(value: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        read_port({"EMULATOR_PORT": value}, "EMULATOR_PORT", 7072)
    assert str(stopped.value) == f"EMULATOR_PORT must be a port number (1-65535), got {value!r}"


def test_a_free_port_is_never_one_the_run_is_about_to_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel may hand a port out again while nothing listens on it: the relay's, before it binds.
    from devhost import ports

    handed_out = iter([7071, 7071, 43123])

    class Socket(socket.socket):
        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", next(handed_out))

    monkeypatch.setattr(ports.socket, "socket", Socket)
    assert ports.free_port(avoid={7071}) == 43123
