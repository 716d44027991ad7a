"""A local CA (trustme), made at start-up, and a server certificate for 127.0.0.1 and localhost.

The CA's PEM is written where clients can trust it (EMULATOR_CA_FILE); the server's
key stays in a private temporary directory for the life of the process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trustme


class LocalTls:
    def __init__(self, ca_file: Path) -> None:
        ca = trustme.CA(organization_name="devhost emulator CA")
        ca_file.parent.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(ca_file))
        self._dir = tempfile.TemporaryDirectory(prefix="emulator-tls-")
        self.cert_file = Path(self._dir.name) / "server.pem"
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(self.cert_file))

    def cleanup(self) -> None:
        self._dir.cleanup()
