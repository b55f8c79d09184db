"""The Key Vault emulator in a process of its own, driven through a pipe: seed a fleet, fire events, throttle,
read the request log. So the app under test and the emulator do not share one interpreter lock, as the app and
Key Vault share nothing in Azure."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["EmulatorProcess"]


def _serve(connection: Any, state_dir: str, vaults: list[str], ca_dir: str) -> None:
    from devstack.keyvault import KeyVaultEmulator, ThrottleLimits
    from devstack.localca import create_local_ca
    from devstack.seed import seed_fleet

    ca = create_local_ca(Path(ca_dir))
    with KeyVaultEmulator(state_dir=state_dir, vaults=vaults, tick_interval=None) as emulator:
        connection.send({"urls": emulator.urls, "ca_pem_path": str(emulator.ca_pem_path), "ca": asdict(ca)})
        while True:
            command, arguments = connection.recv()
            if command == "stop":
                connection.send(None)
                return
            if command == "seed":
                now = datetime.fromtimestamp(emulator.clock(), UTC)
                for vault, names in arguments["names"].items():
                    seed_fleet(
                        emulator,
                        vault,
                        names,
                        ca,
                        not_before=now - timedelta(days=arguments["lived_days"]),
                        not_after=now + timedelta(days=arguments["expires_in_days"]),
                    )
                connection.send(None)
            elif command == "fire":
                connection.send(
                    [emulator.fire(vault, name, arguments["event_type"]) for vault, name in arguments["of"]]
                )
            elif command == "throttle":
                limits = emulator.throttle.enable(ThrottleLimits()) if arguments else None
                if not arguments:
                    emulator.throttle.disable()
                connection.send(limits)
            elif command == "cpu":
                connection.send(time.process_time())
            elif command == "clear_log":
                emulator.request_log.clear()
                connection.send(None)
            elif command == "log":
                connection.send([asdict(entry) for entry in emulator.request_log.entries(**arguments)])
            elif command == "versions":
                counts = {}
                for vault, names in arguments.items():
                    client = emulator.certificate_client(vault)
                    for name in names:
                        counts[name] = len(list(client.list_properties_of_certificate_versions(name)))
                connection.send(counts)


class EmulatorProcess:
    """A ``KeyVaultEmulator`` serving ``vaults`` in a child process, with a local CA made there too.

    Attributes:
        urls: vault name → URL.
        ca_pem_path: the emulator's TLS CA, for clients.
        ca: the local CA's files (a ``LocalCAFiles`` as a dict of paths).
    """

    def __init__(self, tmp: Path, vaults: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, str(tmp / "kv"), vaults, str(tmp / "ca")), daemon=True
        )
        self._process.start()
        ready = self._connection.recv()
        self.urls: dict[str, str] = ready["urls"]
        self.ca_pem_path: str = ready["ca_pem_path"]
        self.ca: dict[str, Any] = ready["ca"]

    def call(self, command: str, arguments: Any = None) -> Any:
        """Run one command in the emulator's process and return its answer."""
        self._connection.send((command, arguments))
        return self._connection.recv()

    def stop(self) -> None:
        """Stop the emulator and its process."""
        self.call("stop")
        self._process.join(10)
