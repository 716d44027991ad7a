"""Azurite, Microsoft's Azure Storage emulator (npm ``azurite``), as the relay's table service locally.

Only its table service runs, over HTTPS with a certificate from a local CA and in OAuth
``basic`` mode, so the relay reaches it exactly as it reaches Azure Table storage: with a bearer
token from the managed identity endpoint (here the identity emulator). In that mode Azurite
checks a token's issuer, audience and lifetime, not its signature and not any role
(Azurite's README, "OAuth Configuration"): locally the Storage Table Data Contributor role the
Bicep grants is not enforced. Shared-key requests still work, which is how this module creates
the tables and how ``python -m shared.blocklist_admin --azurite`` writes them (docs/blocklist.md).
scripts/ensure-azurite.sh installs the pinned version from devhost/azurite/package-lock.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from devhost.emulator.tls import LocalTls
from devhost.ports import free_port

TABLE_BIN = Path(__file__).resolve().parent / "azurite" / "node_modules" / ".bin" / "azurite-table"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key, published in its README ("Default Storage Account"); not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Written next to the data by ``running_azurite``: how the admin command's ``--azurite`` finds a running one.
INFO_FILE = "azurite.json"
_START_TIMEOUT_S = 30.0


class AzuriteError(RuntimeError):
    """Azurite is not installed, did not start, or refused to create the tables."""


@dataclass(frozen=True)
class AzuriteTables:
    """Where a running Azurite's table service is, and the CA its certificate chains to."""

    endpoint: str  # https://127.0.0.1:<port>/devstoreaccount1 (path-style, as Azurite serves an IP host)
    ca_file: str

    @property
    def connection_string(self) -> str:
        return f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};TableEndpoint={self.endpoint};"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> AzuriteTables:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def create_tables(azurite: AzuriteTables, names: Sequence[str], retries: int = 3) -> None:
    """Create the tables with the account key (shared-key auth), as the Bicep template does in Azure."""
    from azure.data.tables import TableServiceClient

    client = TableServiceClient.from_connection_string(azurite.connection_string, connection_verify=azurite.ca_file, retry_total=retries)
    with client as service:
        for name in names:
            service.create_table_if_not_exists(name)


@contextlib.contextmanager
def running_azurite(state_dir: Path, tables: Sequence[str], port: int = 0, log_path: Path | None = None) -> Iterator[AzuriteTables]:
    """Start Azurite's table service on ``port`` (0: a free one) with its data in ``state_dir`` and ``tables`` created; stop it afterwards.

    Data stays in ``state_dir`` across restarts. Azurite saves it on SIGINT, which is how it is stopped here.
    """
    if not TABLE_BIN.exists():
        raise AzuriteError(f"Azurite is not installed at {TABLE_BIN}: run `bash scripts/ensure-azurite.sh` (make run and make test do)")
    state_dir.mkdir(parents=True, exist_ok=True)
    tls = LocalTls(state_dir / "ca.pem")
    port = port or free_port()
    azurite = AzuriteTables(f"https://127.0.0.1:{port}/{ACCOUNT}", str(state_dir / "ca.pem"))
    args = [str(TABLE_BIN), "--tableHost", "127.0.0.1", "--tablePort", str(port), "--location", str(state_dir / "data")]
    args += ["--cert", str(tls.cert_file), "--key", str(tls.cert_file), "--oauth", "basic", "--disableTelemetry"]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_tables(azurite, tables, proc)
        azurite.save(state_dir / INFO_FILE)
        yield azurite
    finally:
        stop(proc)
        (state_dir / INFO_FILE).unlink(missing_ok=True)
        tls.cleanup()
        if log_path:
            out.close()  # type: ignore[union-attr]


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGINT (Azurite saves its data and closes), then SIGKILL after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _wait_for_tables(azurite: AzuriteTables, tables: Sequence[str], proc: subprocess.Popen[bytes]) -> None:
    from azure.core.exceptions import AzureError

    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AzuriteError(f"Azurite exited with status {proc.returncode} before it served the table service")
        try:
            create_tables(azurite, tables, retries=0)
            return
        except AzureError:
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite did not serve {azurite.endpoint} within {_START_TIMEOUT_S:.0f}s") from None
            time.sleep(0.1)
