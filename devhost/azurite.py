"""Azurite, Microsoft's Azure Storage emulator (npm ``azurite``), as the relay's table service locally.

Only its table service runs, over HTTPS with a certificate from a local CA and in OAuth
``basic`` mode, so the relay reaches it exactly as it reaches Azure Table storage: with a bearer
token from the managed identity endpoint (here the identity emulator). In that mode Azurite
checks a token's issuer, audience and lifetime, not its signature and not any role
(Azurite's README, "OAuth Configuration"): locally the Storage Table Data Contributor role the
Bicep grants is not enforced. Shared-key requests still work, which is how this module creates
the tables and how ``python -m ops.blocklist_admin --azurite`` writes them (docs/blocklist.md).
scripts/ensure-azurite.sh installs the pinned version from devhost/azurite/package-lock.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devhost import defaults
from devhost.emulator.tls import LocalTls
from devhost.ports import free_port
from devhost.processes import stop_process_group

if TYPE_CHECKING:
    from azure.data.tables import TableClient

TABLE_BIN = Path(__file__).resolve().parent / "azurite" / "node_modules" / ".bin" / "azurite-table"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development account key, published in its README ("Default Storage Account"); not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Written next to the data by ``running_azurite``: how the admin command's ``--azurite`` finds a running one.
INFO_FILE = "azurite.json"
_START_TIMEOUT_S = 30.0
# How much of its log a failed start shows.
_LOG_TAIL_LINES = 12
# Told each process started, with the command launched and the signal that stops it cleanly (devhost/run_record.py).
StartHook = Callable[[subprocess.Popen[bytes], Sequence[str], int], None]


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

    def table_client(self, name: str) -> TableClient:
        """A synchronous client for one table, with the account key and this Azurite's CA."""
        from azure.data.tables import TableClient

        return TableClient.from_connection_string(self.connection_string, name, connection_verify=self.ca_file)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> AzuriteTables:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def find_running(state_dir: Path | None = None) -> AzuriteTables:
    """The Azurite running with its data in ``state_dir`` (default: `make run`'s); AzuriteError when none is."""
    info = (state_dir or defaults.AZURITE_DIR) / INFO_FILE
    if not info.is_file():
        raise AzuriteError(f"no running Azurite found ({info} is missing): start `make run` first")
    return AzuriteTables.load(info)


def create_tables(azurite: AzuriteTables, names: Sequence[str]) -> None:
    """Create the tables with the account key (shared-key auth), as the Bicep template does in Azure; one try (the start-up wait polls)."""
    from azure.data.tables import TableServiceClient

    client = TableServiceClient.from_connection_string(azurite.connection_string, connection_verify=azurite.ca_file, retry_total=0)
    with client as service:
        for name in names:
            service.create_table_if_not_exists(name)


class Azurite:
    """Azurite's table service on ``port`` (0: a free one) with its data in ``state_dir``; its certificate outlives restarts."""

    def __init__(
        self, state_dir: Path, tables: Sequence[str], port: int = 0, log_path: Path | None = None, on_start: StartHook | None = None
    ) -> None:
        if not TABLE_BIN.exists():
            raise AzuriteError(f"Azurite is not installed at {TABLE_BIN}: run `bash scripts/ensure-azurite.sh` (make run and make test do)")
        if shutil.which("node") is None:
            raise AzuriteError("Node.js is not installed (no `node` on PATH), and Azurite runs on it: install Node.js (make run does)")
        self._on_start = on_start
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self._tables = tables
        self._log_path = log_path
        self._tls = LocalTls(state_dir / "ca.pem")
        self.port = port or free_port()
        self.tables = AzuriteTables(f"https://127.0.0.1:{self.port}/{ACCOUNT}", str(state_dir / "ca.pem"))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again, with the data it had) and wait until the tables exist."""
        args = [str(TABLE_BIN), "--tableHost", "127.0.0.1", "--tablePort", str(self.port), "--location", str(self.state_dir / "data")]
        args += ["--cert", str(self._tls.cert_file), "--key", str(self._tls.cert_file), "--oauth", "basic", "--disableTelemetry"]
        log_start = self._log_path.stat().st_size if self._log_path and self._log_path.exists() else 0
        with open(self._log_path or os.devnull, "ab") as out:
            self._proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if self._on_start is not None:
            self._on_start(self._proc, args, signal.SIGINT)
        try:
            _wait_for_tables(self.tables, self._tables, self._proc)
        except AzuriteError as exc:
            if self._log_path is None:
                raise
            raise AzuriteError(f"{exc}; the end of its log, {self._log_path}:\n{log_tail(self._log_path, log_start)}") from None
        self.tables.save(self.state_dir / INFO_FILE)

    def stop(self) -> None:
        """Stop it as a clean shutdown does: it saves its data first."""
        if self._proc is not None:
            # SIGINT: Azurite saves its data and closes.
            stop_process_group(self._proc, grace=10.0, signum=signal.SIGINT)
            self._proc = None
        (self.state_dir / INFO_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        self.stop()
        self._tls.cleanup()


@contextlib.contextmanager
def running_azurite(
    state_dir: Path, tables: Sequence[str], port: int = 0, log_path: Path | None = None, on_start: StartHook | None = None
) -> Iterator[Azurite]:
    """Azurite started with ``tables`` created, stopped afterwards; its data stays in ``state_dir``."""
    azurite = Azurite(state_dir, tables, port, log_path, on_start)
    try:
        azurite.start()
        yield azurite
    finally:
        azurite.close()


def log_tail(path: Path, start: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines written to ``path`` from byte ``start`` on, indented; "(nothing)" when there are none."""
    with open(path, "rb") as log:
        log.seek(start)
        written = log.read().decode("utf-8", "replace").splitlines()
    return "\n".join(f"  {line}" for line in written[-lines:] if line.strip()) or "  (nothing)"


def _wait_for_tables(azurite: AzuriteTables, tables: Sequence[str], proc: subprocess.Popen[bytes]) -> None:
    from azure.core.exceptions import AzureError

    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise AzuriteError(f"Azurite exited with status {proc.returncode} before it served the table service")
        try:
            create_tables(azurite, tables)
            return
        except AzureError:
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite did not serve {azurite.endpoint} within {_START_TIMEOUT_S:.0f}s") from None
            time.sleep(0.1)
