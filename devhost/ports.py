"""Loopback ports for the local host's services and for the tests: a free one, or whether one is taken."""

from __future__ import annotations

import socket
from collections.abc import Collection


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one of ``avoid``.

    ``avoid``: ports this run will bind but has not yet (the relay's, while Azurite starts first): the
    kernel may hand such a port out again, since nothing listens on it.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def port_in_use(port: int) -> bool:
    """Something listens on ``port`` of 127.0.0.1 (or of every address), so a server could not bind it.

    SO_REUSEADDR, as uvicorn, asyncio and Node set it: a port whose last connections linger in
    TIME_WAIT can be bound again, one with a listener cannot.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False
