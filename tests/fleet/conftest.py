"""The fleet tests: the durability stack (emulator, local CA, Azurite, the test's clock) plus Azurite's Queue
service as the work queue, with the planner's fan-out switched on."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from devstack.azurite import Azurite
from renewal.flow.runtime import Runtime
from tests.durability.conftest import WORKER_SECONDS, Durable, durable, stack

__all__ = ["Fleet", "durable", "fleet", "stack"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Fleet:
    """The durable stack and the work queue on Azurite.

    Attributes:
        durable: the stack, the counting CA and the test's clock.
        queue: a client on the work queue, to read what the planner sent as the host would.
        environ: the app settings the entry points read.
    """

    durable: Durable
    queue: QueueClient
    environ: dict[str, str]

    def runtime(self) -> Runtime:
        return self.durable.runtime()

    def take(self) -> list[str]:
        """Every message now on the work queue, as the queue trigger hands it over (``messageEncoding: none``),
        deleted as the host deletes a message whose function succeeded."""
        bodies = []
        for message in self.queue.receive_messages(messages_per_page=32):
            bodies.append(str(message.content))
            self.queue.delete_message(message)
        return bodies

    def run_worker(self, body: str, *, crash_at: str | None = None) -> int:
        """Hand one message body to the queue function in a new worker process; its exit code (-9: crashed)."""
        argument = self.durable.stack.tmp / f"message-{uuid.uuid4().hex[:8]}.txt"
        argument.write_text(body)
        environment = {k: v for k, v in os.environ.items() if k != "CRASH_AT"}
        environment["TEST_CLOCK_FILE"] = str(self.durable.clock.path)
        if crash_at:
            environment["CRASH_AT"] = crash_at
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "tests.fleet.queue_worker", str(argument)],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return worker.wait(WORKER_SECONDS)


def event_message(envelope: dict[str, Any], *, base64_encoded: bool) -> str:
    """A Key Vault event as Event Grid's Storage-queue handler writes it: the event's JSON, or base64 of it."""
    text = json.dumps(envelope)
    return base64.b64encode(text.encode()).decode("ascii") if base64_encoded else text


@pytest.fixture
def fleet(durable: Durable, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """Fan-out on, a fresh work queue on Azurite, and storage configured as the Function App has it."""
    name = f"work-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("RENEWAL_WORK_QUEUE", name)
    monkeypatch.setenv("RENEWAL_SWEEP_FANOUT", "queue")
    monkeypatch.setenv("RENEWAL_SWEEP_SCHEDULE", "0 */30 * * * *")
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    client.create_queue()  # as the host's queue listener does on startup
    return Fleet(durable=durable, queue=client, environ=dict(os.environ))
