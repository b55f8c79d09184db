"""The timer sweep: deferred CA requests, certificates that entered their window, time budget, expiry alarms."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from renewal.errors import RetryableError
from tests.durability.conftest import Durable


def _approval_profile(durable: Durable) -> str:
    stack = durable.stack
    options = {k: v for k, v in stack.ca.profile_options().items() if k != "adapter"}
    approvals = stack.tmp / "approvals"
    return json.dumps({"corp": {"adapter": "local", **options, "approval": "manual", "approval_dir": str(approvals)}})


def test_deferred_issuance_is_polled_by_the_sweep_until_approved(durable: Durable) -> None:
    """A CA that needs approval: pending is recorded, the sweep polls, and the approved answer is merged."""
    stack = durable.stack
    assert stack.env is not None
    stack.env.setenv("RENEWAL_CA_PROFILES", _approval_profile(durable))
    stack.seed("web")
    durable.deliver(stack.near_expiry_event("web"))
    assert stack.recorder.last["status"] == "pending"
    [held] = list((stack.tmp / "approvals").glob("*.csr.pem"))
    reference = held.name.removesuffix(".csr.pem")

    durable.sweep()
    assert stack.recorder.last["status"] == "pending"
    assert len(stack.versions("web")) == 1

    (stack.tmp / "approvals" / f"{reference}.approved").touch()
    durable.sweep()

    assert stack.recorder.last["status"] == "renewed"
    assert len(stack.versions("web")) == 2
    assert len(durable.deliveries_to("a")) == 1


def test_denied_request_fails_for_good(durable: Durable) -> None:
    """A refused request ends in a failed outcome that the sweep does not retry."""
    stack = durable.stack
    assert stack.env is not None
    stack.env.setenv("RENEWAL_CA_PROFILES", _approval_profile(durable))
    stack.seed("web")
    durable.deliver(stack.near_expiry_event("web"))
    [held] = list((stack.tmp / "approvals").glob("*.csr.pem"))
    (stack.tmp / "approvals" / held.name.replace(".csr.pem", ".denied")).touch()

    durable.sweep()
    assert (stack.recorder.last["status"], stack.recorder.last["reason"]) == ("failed", "denied")
    assert stack.recorder.last["retryable"] is False
    outcomes = len(stack.recorder.outcomes)
    report = durable.sweep()
    assert report is not None
    assert report.resumed == []
    assert len(stack.recorder.outcomes) == outcomes


def test_sweep_renews_what_entered_its_window_without_an_event(durable: Durable) -> None:
    """Past two thirds of its lifetime a managed certificate is renewed by the sweep; a young one is left alone."""
    stack = durable.stack
    stack.seed("due", days_old=300, days_left=60)
    stack.seed("young", days_old=10, days_left=355)
    stack.seed("unmanaged", days_old=300, days_left=20, tags={})

    report = durable.sweep()

    assert report is not None
    assert [(o.certificate_name, o.status) for o in report.started] == [("due", "renewed")]
    assert len(stack.versions("due")) == 2
    assert len(stack.versions("young")) == 1
    assert len(stack.versions("unmanaged")) == 1


def test_window_tag_moves_the_renewal_forward(durable: Durable) -> None:
    """A renewal-window tag of 0.01 makes a young certificate due now (3.65 days in, give or take the jitter's
    half of 2 % of the lifetime: at most 7.3 days, and the certificate is 10 days old)."""
    stack = durable.stack
    stack.seed("eager", days_old=10, days_left=355, tags={"renewal-ca": "corp", "renewal-window": "0.01"})
    report = durable.sweep()
    assert report is not None
    assert [o.certificate_name for o in report.started] == ["eager"]


def test_sweep_stops_at_its_time_budget(durable: Durable) -> None:
    """With no time left the sweep starts nothing and says it ran out; the next run picks the work up."""
    stack = durable.stack
    stack.seed("due", days_old=300, days_left=60)
    report = durable.sweep(budget_seconds=0)
    assert report.out_of_time
    assert report.started == []
    assert len(stack.versions("due")) == 1
    assert [o.certificate_name for o in durable.sweep().started] == ["due"]


def test_failing_renewal_close_to_expiry_alarms_at_every_sweep(
    durable: Durable, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that keeps failing with less than RENEWAL_ALERT_DAYS left logs an error at every sweep."""
    stack = durable.stack
    stack.seed("web", days_left=3)
    stack.emulator.faults.script("merge", 503, vault="kv1", count=1000)
    with pytest.raises(RetryableError):
        durable.deliver(stack.near_expiry_event("web"))

    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="renewal"):
            report = durable.sweep()
        assert report is not None
        assert report.alarms == ["kv1/web"]
        alarms = [r for r in caplog.records if "reason=expiry_at_risk" in r.getMessage()]
        assert len(alarms) == 1
        assert alarms[0].levelno == logging.ERROR


def test_retries_are_never_scheduled_past_expiry(durable: Durable) -> None:
    """A transient failure an hour and a minute before expiry is retried before the certificate expires."""
    stack = durable.stack
    stack.seed("web", days_left=61 / 1440)
    expires = stack.client.get_certificate("web").properties.expires_on
    stack.emulator.faults.script("merge", 503, vault="kv1", count=1000)
    with pytest.raises(RetryableError):
        durable.deliver(stack.near_expiry_event("web"))
    record = durable.runtime().journal.get("kv1", "web")
    assert record is not None
    assert record.next_attempt_at is not None
    assert datetime.fromtimestamp(record.next_attempt_at, UTC) <= expires
