"""Azurite's Table service on loopback, started and stopped from Python (tests, the demo).

Azurite is the Azure Storage emulator; ``scripts/install-services.sh`` installs the version pinned in
``tools/azurite``. Only the Table service is started: the journal is all the app keeps in storage.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "Azurite", "AzuriteMissingError", "azurite_table_binary"]

# Azurite's well-known development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_ROOT = Path(__file__).resolve().parents[1]


class AzuriteMissingError(RuntimeError):
    """Azurite is not installed (run ``scripts/install-services.sh``)."""


def azurite_table_binary() -> Path:
    """Return the pinned ``azurite-table`` launcher.

    Raises:
        AzuriteMissingError: it is not installed.
    """
    local = _ROOT / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-table"
    if local.exists():
        return local
    found = shutil.which("azurite-table")
    if found:
        return Path(found)
    raise AzuriteMissingError("azurite-table is not installed: run scripts/install-services.sh")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Azurite:
    """Run ``azurite-table`` in memory on a free loopback port; a context manager.

    Attributes:
        port: the Table service's port once started.
    """

    def __init__(self, *, port: int | None = None, startup_timeout: float = 20.0) -> None:
        self.port = port or 0
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workspace: tempfile.TemporaryDirectory[str] | None = None

    @property
    def table_endpoint(self) -> str:
        """The Table endpoint URL, account in the path as Azurite expects."""
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A storage connection string for ``azure-data-tables`` (and ``AzureWebJobsStorage``)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def start(self) -> Azurite:
        """Start Azurite and wait until it accepts connections.

        Raises:
            AzuriteMissingError: Azurite is not installed.
            RuntimeError: it did not come up in time.
        """
        binary = azurite_table_binary()
        for _ in range(5):
            self.port = self.port or _free_port()
            self._workspace = tempfile.TemporaryDirectory(prefix="azurite-")
            self._process = subprocess.Popen(  # noqa: S603 - our pinned launcher, fixed arguments
                [
                    str(binary),
                    "--tablePort",
                    str(self.port),
                    "--tableHost",
                    "127.0.0.1",
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--silent",
                ],
                # In-memory: the working folder only receives Azurite's debug files, if any.
                cwd=self._workspace.name,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return self
            self.stop()
            self.port = 0
        raise RuntimeError("Azurite's Table service did not start")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop Azurite (idempotent); its data was in memory and is gone."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None
        if self._workspace is not None:
            self._workspace.cleanup()
            self._workspace = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
