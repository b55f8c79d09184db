"""A worker killed with SIGKILL at any checkpoint: the next delivery, or the sweep, finishes the renewal.

The crash points are the renewal's checkpoints: one per step of ``renewal.steps.Step``, each passed once its
journal save is done, and ``deliver:sent``, passed after each notification is sent and before its row is saved.
"""

from __future__ import annotations

import json
import signal

import pytest

from renewal.steps import Step
from tests.durability.conftest import CLAIM_SECONDS, Durable

# After the first notification is sent, before the outbox row that says so is saved.
SENT = f"{Step.DELIVER}:sent"


def _deferring(durable: Durable) -> None:
    """Make the counting CA hold each request until it is approved (so the renewal passes POLL)."""
    stack = durable.stack
    assert stack.env is not None
    profile = json.loads(stack.env_value("RENEWAL_CA_PROFILES"))["corp"]
    approvals = stack.tmp / "approvals"
    stack.env.setenv(
        "RENEWAL_CA_PROFILES",
        json.dumps({"corp": {**profile, "approval": "manual", "approval_dir": str(approvals)}}),
    )


def _approve_all(durable: Durable) -> None:
    for held in (durable.stack.tmp / "approvals").glob("*.csr.pem"):
        held.with_name(held.name.removesuffix(".csr.pem") + ".approved").touch()


@pytest.mark.parametrize("resume_by", ["event", "sweep"])
@pytest.mark.parametrize("crash_at", [Step.BEGIN, Step.SUBMIT, Step.POLL, Step.MERGE, SENT, Step.DELIVER])
def test_crash_at_a_step_boundary_then_resume(durable: Durable, crash_at: str, resume_by: str) -> None:
    """Exactly one new version, the CA asked once, every webhook delivered (a resend keeps its webhook-id)."""
    stack = durable.stack
    stack.seed("web")
    event = stack.near_expiry_event("web")

    if crash_at == Step.POLL:
        # Only a deferred request is polled: the CA holds it, it is approved, and the sweep's poll collects it.
        _deferring(durable)
        assert durable.deliver(event).status == "pending"
        _approve_all(durable)
        assert durable.run_worker("sweep", crash_at=crash_at) == -signal.SIGKILL
    else:
        assert durable.run_worker(event, crash_at=crash_at) == -signal.SIGKILL
    durable.pass_claims()  # the dead worker's claim lapses
    outcomes = len(stack.recorder.outcomes)
    if resume_by == "event":
        durable.deliver(event)
    else:
        durable.sweep()

    if crash_at == Step.DELIVER:
        # The renewal was done before the crash: resuming finds nothing left to do, and does nothing twice.
        resumed = [(o["status"], o["reason"]) for o in stack.recorder.outcomes[outcomes:]]
        assert resumed == ([("skipped", "already_renewed")] if resume_by == "event" else [])
    else:
        assert stack.recorder.last["status"] == "renewed", stack.recorder.last
    assert len(stack.versions("web")) == 2
    assert len(durable.submissions()) == 1
    counts = []
    for endpoint in ("a", "b"):
        received = durable.deliveries_to(endpoint)
        counts.append(len(received))
        assert len({d.headers["webhook-id"] for d in received}) == 1, "a resend must keep its webhook-id"
        assert all(d.verified for d in received)
    # Killed after sending the first delivery but before recording it: that one (whichever endpoint it was) is
    # sent again, with the same webhook-id, so its receiver can deduplicate; the other is sent once.
    assert sorted(counts) == ([1, 2] if crash_at == SENT else [1, 1])


def test_a_live_claim_is_not_taken_over(durable: Durable) -> None:
    """While a crashed worker's claim has not lapsed, a redelivery leaves the renewal alone instead of racing it."""
    stack = durable.stack
    stack.seed("web")
    event = stack.near_expiry_event("web")
    assert durable.run_worker(event, crash_at=Step.BEGIN) == -signal.SIGKILL
    durable.clock.advance(CLAIM_SECONDS / 2)  # halfway through the claim
    durable.deliver(event)
    assert stack.recorder.last["status"] == "skipped"
    assert stack.recorder.last["reason"] == "renewal_in_progress"
    assert len(durable.submissions()) == 0
