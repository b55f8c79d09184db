"""Azurite's Table and Queue services on loopback, started and stopped from Python (tests, the demo).

Azurite is the Azure Storage emulator; ``scripts/install-services.sh`` installs the version pinned in
``tools/azurite``. The Table service holds the journal, the Queue service the sweep's fan-out and the queue
delivery of Key Vault events; Blob is not started (the app keeps nothing there).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "Azurite",
    "AzuriteMissingError",
    "azurite_queue_binary",
    "azurite_table_binary",
]

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
    return _binary("azurite-table")


def azurite_queue_binary() -> Path:
    """Return the pinned ``azurite-queue`` launcher (the same npm package as ``azurite-table``).

    Raises:
        AzuriteMissingError: it is not installed.
    """
    return _binary("azurite-queue")


def _binary(name: str) -> Path:
    local = _ROOT / "tools" / "azurite" / "node_modules" / ".bin" / name
    if local.exists():
        return local
    found = shutil.which(name)
    if found:
        return Path(found)
    raise AzuriteMissingError(f"{name} is not installed: run scripts/install-services.sh")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Azurite:
    """Run Azurite's Table (and, unless ``queue=False``, Queue) service in memory on free loopback ports; a
    context manager.

    Attributes:
        port: the Table service's port once started.
        queue_port: the Queue service's port once started (0 without it).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        queue: bool = True,
        queue_port: int | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.port = port or 0
        self.queue_port = queue_port or 0
        self._queue = queue
        self._startup_timeout = startup_timeout
        self._processes: list[subprocess.Popen[bytes]] = []
        self._workspace: tempfile.TemporaryDirectory[str] | None = None

    @property
    def table_endpoint(self) -> str:
        """The Table endpoint URL, account in the path as Azurite expects."""
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        """The Queue endpoint URL, account in the path as Azurite expects.

        Raises:
            RuntimeError: this Azurite runs no Queue service.
        """
        if not self._queue:
            raise RuntimeError("this Azurite was started without its Queue service")
        return f"http://127.0.0.1:{self.queue_port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A storage connection string for ``azure-data-tables``, ``azure-storage-queue`` and
        ``AzureWebJobsStorage``: the Table endpoint, and the Queue endpoint when it runs."""
        queue = f"QueueEndpoint={self.queue_endpoint};" if self._queue else ""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint={self.table_endpoint};{queue}"
        )

    def start(self) -> Azurite:
        """Start Azurite and wait until each service accepts connections.

        Raises:
            AzuriteMissingError: Azurite is not installed.
            RuntimeError: it did not come up in time.
        """
        services = [(azurite_table_binary(), "table")]
        if self._queue:
            services.append((azurite_queue_binary(), "queue"))
        self._workspace = tempfile.TemporaryDirectory(prefix="azurite-")
        for binary, service in services:
            self._start_service(binary, service)
        return self

    def _start_service(self, binary: Path, service: str) -> None:
        chosen = self.port if service == "table" else self.queue_port
        for _ in range(5):
            port = chosen or _free_port()
            assert self._workspace is not None
            process = subprocess.Popen(  # noqa: S603 - our pinned launcher, fixed arguments
                [
                    str(binary),
                    f"--{service}Port",
                    str(port),
                    f"--{service}Host",
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
            if self._wait_ready(process, port):
                self._processes.append(process)
                if service == "table":
                    self.port = port
                else:
                    self.queue_port = port
                return
            _stop(process)
        self.stop()
        raise RuntimeError(f"Azurite's {service.title()} service did not start")

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop Azurite (idempotent); its data was in memory and is gone."""
        while self._processes:
            _stop(self._processes.pop())
        if self._workspace is not None:
            self._workspace.cleanup()
            self._workspace = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
