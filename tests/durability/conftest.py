"""The local stack for the durability tests, on a clock the test moves: claims, retries and ages pass in no time.

The app's runtime is built as ``function_app`` builds it, from the environment, with the parts a test controls
injected (``build_runtime``): the test's clock (``tests.fakes.clock.FileClock``, shared with the worker
processes), and Key Vault and webhook clients that retry as often as the app's but without waiting in between.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.functions_host import event_grid_event
from renewal.ca import CAAdapter
from renewal.flow.entry import event_grid_envelope, handle_event
from renewal.flow.runtime import Runtime, build_runtime
from renewal.flow.sweep import SweepReport, sweep
from renewal.outcome import Outcome
from renewal.settings import Settings
from renewal.shells.keyvault import THROTTLE_DELAYS, KeyVaultClients, StaticTokenCredential
from renewal.shells.webhooks import WebhookSender
from tests.fakes.clock import FileClock
from tests.fakes.counting_ca import COUNTING, submissions
from tests.stack import NEAR_EXPIRY, VAULT, WEBHOOK_SECRET, OutcomeRecorder, Stack, stack

__all__ = ["NEAR_EXPIRY", "VAULT", "WEBHOOK_SECRET", "Durable", "OutcomeRecorder", "Stack", "durable", "stack"]

ROOT = Path(__file__).resolve().parents[2]
# How long a claim lasts, on the test's clock: a test that needs a claim to lapse advances the clock past it.
CLAIM_SECONDS = 600.0
# How long a worker process may take, however loaded the machine.
WORKER_SECONDS = 120.0


@dataclass
class Durable:
    """The stack, a counting CA, two webhook endpoints (``a`` and ``b``), the test's clock, and workers in their
    own processes.

    Attributes:
        stack: the running local stack.
        count_file: where the counting CA appends the hash of each CSR it is asked to sign.
        clock: the clock of the runtimes built here and of the worker processes.
        adapters: CA adapters injected into the runtimes built here, by profile name.
    """

    stack: Stack
    count_file: Path
    clock: FileClock
    adapters: dict[str, CAAdapter] = field(default_factory=dict)

    def submissions(self) -> list[str]:
        """The CSR hashes the CA was asked to sign, in order, from every process."""
        return submissions(self.count_file)

    def deliveries_to(self, endpoint: str) -> list[Any]:
        return [d for d in self.stack.sink.deliveries if d.path.rstrip("/").endswith("/" + endpoint)]

    def pass_claims(self) -> None:
        """Advance the clock past every claim taken so far (a crashed worker's, say)."""
        self.clock.advance(CLAIM_SECONDS + 1)

    def runtime(self) -> Runtime:
        """The app's runtime for the current environment, on the test's clock, retrying without waiting."""
        settings = Settings.from_environ(dict(os.environ))
        token = settings.keyvault_static_token
        keyvault = KeyVaultClients(
            credential=StaticTokenCredential(token) if token else None,
            connection_verify=settings.keyvault_ca_bundle,
            timeout_seconds=settings.keyvault_timeout_seconds,
            retry_backoff_factor=0.0,
            throttle_delays=(0.0,) * len(THROTTLE_DELAYS),
        )
        return build_runtime(
            settings,
            clock=self.clock,
            adapters=self.adapters,
            keyvault=keyvault,
            webhooks=WebhookSender(backoff=0.0),
        )

    def deliver(self, envelope: dict[str, Any]) -> Outcome:
        """Hand ``envelope`` to the Event Grid entry point as the trigger does (through ``func.EventGridEvent``).

        Raises:
            RetryableError: as the function does, after recording a transient failure.
        """
        return handle_event(event_grid_envelope(event_grid_event(envelope)), self.runtime())

    def sweep(self, *, budget_seconds: float | None = None) -> SweepReport:
        """Run the timer sweep once."""
        return sweep(self.runtime(), budget_seconds=budget_seconds)

    def run_worker(self, target: dict[str, Any] | str, *, crash_at: str | None = None) -> int:
        """Deliver an event (or run the sweep, with ``"sweep"``) in a new worker process and wait for it; its exit
        code (-9 when it crashed)."""
        [(worker, _)] = self._start([target], crash_at=crash_at, together=False)
        return worker.wait(WORKER_SECONDS)

    def run_workers_together(self, envelopes: Sequence[dict[str, Any]]) -> tuple[list[int], list[str]]:
        """Deliver each envelope in its own worker process, all let go at once when all are ready; their exit
        codes, and the end of the error output of each that failed."""
        started = self._start(envelopes, together=True)
        workers = [worker for worker, _ in started]
        for worker in workers:
            assert worker.stdout is not None
            worker.stdout.read(1)  # ready (or dead: then nothing comes)
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()  # go
        codes = [worker.wait(WORKER_SECONDS) for worker in workers]
        errors = [error.read_text()[-300:] for (_, error), code in zip(started, codes, strict=True) if code]
        return codes, errors

    def _start(
        self, targets: Sequence[dict[str, Any] | str], *, crash_at: str | None = None, together: bool
    ) -> list[tuple[subprocess.Popen[bytes], Path]]:
        environment = {k: v for k, v in os.environ.items() if k not in ("CRASH_AT", "WAIT_FOR_GO")}
        environment["TEST_CLOCK_FILE"] = str(self.clock.path)
        if crash_at:
            environment["CRASH_AT"] = crash_at
        if together:
            environment["WAIT_FOR_GO"] = "1"
        workers = []
        first = len(list(self.stack.tmp.glob("worker-*.json")))
        for index, target in enumerate(targets):
            argument = self.stack.tmp / f"worker-{first + index}.json"
            argument.write_text(json.dumps(target))
            error = argument.with_suffix(".err")
            with error.open("wb") as errors:
                worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [
                        sys.executable,
                        "-m",
                        "tests.durability.worker",
                        "--sweep" if target == "sweep" else str(argument),
                    ],
                    cwd=ROOT,
                    env=environment,
                    stdin=subprocess.PIPE if together else subprocess.DEVNULL,
                    stdout=subprocess.PIPE if together else subprocess.DEVNULL,
                    stderr=errors,
                )
            workers.append((worker, error))
        return workers


@pytest.fixture
def durable(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Durable:
    """The stack set up for crash, concurrency and retry tests (claims that lapse when the clock is advanced,
    immediate retries)."""
    count_file = stack.tmp / "ca-submissions.log"
    options = {k: v for k, v in stack.ca.profile_options().items() if k != "adapter"}
    monkeypatch.setenv(
        "RENEWAL_CA_PROFILES",
        json.dumps({"corp": {"adapter": COUNTING, **options, "count_file": str(count_file)}}),
    )
    monkeypatch.setenv(
        "RENEWAL_WEBHOOKS",
        json.dumps(
            {
                "a": {"url": stack.sink.url + "a", "secret_setting": "SINK_SECRET"},
                "b": {"url": stack.sink.url + "b", "secret_setting": "SINK_SECRET"},
            }
        ),
    )
    monkeypatch.setenv("RENEWAL_CLAIM_SECONDS", str(CLAIM_SECONDS))
    monkeypatch.setenv("RENEWAL_CA_POLL_SECONDS", "0")
    monkeypatch.setenv("RENEWAL_RETRY_SECONDS", "0")
    monkeypatch.setenv("RENEWAL_WEBHOOK_RETRY_SECONDS", "0")
    return Durable(stack=stack, count_file=count_file, clock=FileClock(stack.tmp / "clock-offset"))
