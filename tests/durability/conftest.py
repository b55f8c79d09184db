"""The local stack for the durability tests, tuned so that retries and claims happen in seconds, not minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from renewal.ca import ADAPTERS
from tests.fakes.counting_ca import CountingCA, submissions
from tests.stack import NEAR_EXPIRY, VAULT, WEBHOOK_SECRET, OutcomeRecorder, Stack, stack

__all__ = ["NEAR_EXPIRY", "VAULT", "WEBHOOK_SECRET", "Durable", "OutcomeRecorder", "Stack", "durable", "stack"]

ROOT = Path(__file__).resolve().parents[2]
CLAIM_SECONDS = 2.0


@dataclass
class Durable:
    """The stack, a counting CA, two webhook endpoints (``a`` and ``b``) and workers in their own processes."""

    stack: Stack
    count_file: Path
    restore_after_first_sweep: str | None = None

    def submissions(self) -> list[str]:
        """The CSR hashes the CA was asked to sign, in order, from every process."""
        return submissions(self.count_file)

    def deliveries_to(self, endpoint: str) -> list[Any]:
        return [d for d in self.stack.sink.deliveries if d.path.rstrip("/").endswith("/" + endpoint)]

    def run_worker(self, envelope: dict[str, Any], *, crash_at: str | None = None, start_at: float = 0.0) -> int:
        """Deliver ``envelope`` in a new worker process and wait for it; its exit code (-9 when it crashed)."""
        return self.start_workers([envelope], crash_at=crash_at, start_at=start_at)[0].wait(60)

    def start_workers(
        self, envelopes: Sequence[dict[str, Any]], *, crash_at: str | None = None, start_at: float = 0.0
    ) -> list[subprocess.Popen[bytes]]:
        """Start one worker process per envelope, without waiting."""
        environment = dict(os.environ)
        environment.pop("CRASH_AT", None)
        if crash_at:
            environment["CRASH_AT"] = crash_at
        if start_at:
            environment["START_AT"] = str(start_at)
        workers = []
        for index, envelope in enumerate(envelopes):
            event_file = self.stack.tmp / f"event-{len(list(self.stack.tmp.glob('event-*.json')))}-{index}.json"
            event_file.write_text(json.dumps(envelope))
            workers.append(
                subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [sys.executable, "-m", "tests.durability.worker", str(event_file)],
                    cwd=ROOT,
                    env=environment,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        return workers


@pytest.fixture
def durable(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Durable:
    """The stack set up for crash, concurrency and retry tests (short claims, immediate retries)."""
    count_file = stack.tmp / "ca-submissions.log"
    options = {k: v for k, v in stack.ca.profile_options().items() if k != "adapter"}
    monkeypatch.setitem(ADAPTERS, "counting-local", CountingCA.from_profile)
    monkeypatch.setenv(
        "RENEWAL_CA_PROFILES",
        json.dumps({"corp": {"adapter": "counting-local", **options, "count_file": str(count_file)}}),
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
    return Durable(stack=stack, count_file=count_file)
