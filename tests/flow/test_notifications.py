"""Notifications people read, through the renewal: a failure is told once per streak, its end is told as a
recovery, and a renewal's message goes with its merge (the notifiers themselves: tests/notify)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from renewal.ca import Issued, Pending, SigningRequest
from renewal.ca.local import LocalCA
from renewal.errors import RetryableError
from renewal.settings import Settings
from tests.fakes.chat_webhooks import FakeSlackWebhook
from tests.flow.test_steps import Flow, ca, emulator, flow

__all__ = ["ca", "emulator", "flow"]


@dataclass
class FlakyCA:
    """The local CA behind a switch: down (a transient failure) until switched back on."""

    inner: LocalCA
    down: bool = True

    def submit(self, request: SigningRequest) -> Issued | Pending:
        if self.down:
            raise RetryableError("the CA answered 503", reason="ca_unavailable")
        return self.inner.submit(request)


@pytest.fixture
def slack() -> Iterator[FakeSlackWebhook]:
    with FakeSlackWebhook() as fake:
        yield fake


def _notifying(flow: Flow, slack: FakeSlackWebhook, **spec: object) -> FlakyCA:
    environ = {
        **flow.settings.environ,
        "RENEWAL_NOTIFIERS": json.dumps({"pki": {"kind": "slack", "url_setting": "PKI_SLACK_URL", **spec}}),
        "PKI_SLACK_URL": slack.url,
    }
    flow.settings = Settings.from_environ(environ)
    flaky = FlakyCA(flow.local_ca())
    flow.adapters = {"corp": flaky}
    return flaky


def _texts(slack: FakeSlackWebhook) -> list[str]:
    return [str(message.get("text", "")) for message in slack.messages]


def test_a_failure_streak_is_told_once_and_its_end_as_a_recovery(flow: Flow, slack: FakeSlackWebhook) -> None:
    flaky = _notifying(flow, slack)

    for _ in range(3):  # the sweep retries; the CA is still down
        assert flow.run().status == "failed"
        flow.clock.advance(timedelta(hours=1))
    assert len(slack.messages) == 1
    assert flow.name in _texts(slack)[0]

    flaky.down = False
    assert flow.run().status == "renewed"

    assert len(slack.messages) == 2
    assert "recovered" in json.dumps(slack.messages[1]).lower()


def test_a_renewal_is_told_only_to_notifiers_that_asked(flow: Flow, slack: FakeSlackWebhook) -> None:
    flaky = _notifying(flow, slack, outcomes=["renewed"])
    flaky.down = False

    assert flow.run().status == "renewed"

    assert len(slack.messages) == 1
    assert "renewed" in json.dumps(slack.messages[0]).lower()


def test_no_secret_of_a_notifier_reaches_the_journal(flow: Flow, slack: FakeSlackWebhook) -> None:
    _notifying(flow, slack)
    flow.run()

    rows = flow.journal.outbox()
    assert rows
    assert all(slack.secret not in row.payload for row in rows)
    assert slack.secret in flow.settings.secret_values


def test_a_certificate_at_risk_is_told_once_per_version_not_at_every_sweep(flow: Flow, slack: FakeSlackWebhook) -> None:
    """The sweep logs the at-risk alarm at every run; the notifiers hear it once for the version at risk."""
    from renewal.flow.sweep import sweep

    _notifying(flow, slack, outcomes=["at_risk"])
    flow.settings = Settings.from_environ({**flow.settings.environ, "RENEWAL_ALERT_DAYS": "30"})
    assert flow.run().status == "failed"
    assert slack.messages == []

    for _ in range(3):
        report = sweep(flow.runtime())
        assert report.alarms == [f"kv1/{flow.name}"]
        flow.clock.advance(timedelta(hours=1))

    assert len(slack.messages) == 1
    assert "risk" in json.dumps(slack.messages[0]).lower()
