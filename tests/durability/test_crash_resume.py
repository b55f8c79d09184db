"""A worker killed with SIGKILL between any two steps: the next delivery, or the sweep, finishes the renewal."""

from __future__ import annotations

import signal
import time

import pytest

import renewal
from tests.durability.conftest import CLAIM_SECONDS, Durable


@pytest.mark.parametrize("resume_by", ["event", "sweep"])
@pytest.mark.parametrize("crash_at", ["created", "submitted", "merged", "sent:1", "delivered:1"])
def test_crash_at_a_step_boundary_then_resume(durable: Durable, crash_at: str, resume_by: str) -> None:
    """Exactly one new version, the CA asked once, every webhook delivered (a resend keeps its webhook-id)."""
    stack = durable.stack
    stack.seed("web")
    event = stack.near_expiry_event("web")

    assert durable.run_worker(event, crash_at=crash_at) == -signal.SIGKILL
    time.sleep(CLAIM_SECONDS + 0.3)  # the dead worker's claim lapses
    if resume_by == "event":
        stack.deliver(event)
    else:
        renewal.run_sweep()

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
    assert sorted(counts) == ([1, 2] if crash_at == "sent:1" else [1, 1])


def test_a_live_claim_is_not_taken_over(durable: Durable) -> None:
    """While a crashed worker's claim has not lapsed, a redelivery leaves the renewal alone instead of racing it."""
    stack = durable.stack
    stack.seed("web")
    event = stack.near_expiry_event("web")
    assert durable.run_worker(event, crash_at="created") == -signal.SIGKILL
    stack.deliver(event)
    assert stack.recorder.last["status"] == "skipped"
    assert stack.recorder.last["reason"] == "renewal_in_progress"
    assert len(durable.submissions()) == 0
