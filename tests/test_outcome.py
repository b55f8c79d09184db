"""Outcome: one rendering for the log line, the dict and the metric labels."""

from __future__ import annotations

import json
import logging

import pytest

from renewal.outcome import Delivery, Outcome, Reason, log_line, log_outcome, metric_labels, to_dict

OK = Delivery(endpoint="deploy", webhook_id="msg_1", delivered=True, attempts=1, status_code=204, error=None)
DOWN = Delivery(endpoint="audit", webhook_id="msg_1", delivered=False, attempts=3, status_code=None, error="timed out")
RENEWED = Outcome(
    status="renewed",
    reason="renewed",
    message="new version merged",
    vault_name="kv1",
    certificate_name="web",
    ca_profile="corp",
    previous_version="aaaa",
    new_version="bbbb",
    trigger="event_grid",
    event_id="e1",
    duration_seconds=1.2345,
    deliveries=(OK,),
)


def test_log_line_carries_the_context_as_key_value_pairs() -> None:
    """The line starts with 'renewal' and carries outcome, vault, certificate, profile, versions, duration and
    deliveries; the message with spaces is quoted."""
    assert log_line(RENEWED) == (
        "renewal outcome=renewed reason=renewed vault=kv1 certificate=web ca_profile=corp previous_version=aaaa "
        "new_version=bbbb trigger=event_grid event_id=e1 duration_ms=1234 webhooks_delivered=1/1 "
        'message="new version merged"'
    )


def test_log_line_leaves_out_unknown_values() -> None:
    """None values are omitted rather than printed as None."""
    line = log_line(Outcome(status="skipped", reason="vault_not_allowed", message="no"))
    assert line == "renewal outcome=skipped reason=vault_not_allowed message=no"


def test_log_line_stays_one_line_and_escapes_quotes() -> None:
    """Newlines and quotes in a message cannot break the line or forge a key."""
    line = log_line(Outcome(status="failed", reason="ca_rejected", message='bad\nline " vault=evil'))
    assert "\n" not in line
    assert line.endswith('message="bad\\nline \\" vault=evil"')


def test_to_dict_is_json_serialisable_and_complete() -> None:
    """to_dict round-trips through JSON with every field and the deliveries."""
    rendered = json.loads(json.dumps(to_dict(RENEWED)))
    assert rendered["status"] == "renewed"
    assert rendered["new_version"] == "bbbb"
    assert rendered["deliveries"][0] == {
        "endpoint": "deploy",
        "webhook_id": "msg_1",
        "delivered": True,
        "attempts": 1,
        "status_code": 204,
        "error": None,
    }


@pytest.mark.parametrize(
    ("outcome", "level"),
    [
        (RENEWED, logging.INFO),
        (Outcome(status="skipped", reason="not_managed", message="m"), logging.INFO),
        (Outcome(status="pending", reason="ca_pending", message="m"), logging.INFO),
        (Outcome(status="failed", reason="ca_rejected", message="m"), logging.ERROR),
        (Outcome(status="renewed", reason="renewed", message="m", deliveries=(OK, DOWN)), logging.ERROR),
    ],
    ids=["renewed", "skipped", "pending", "failed", "webhook-failed"],
)
def test_log_level_follows_the_outcome(outcome: Outcome, level: int, caplog: pytest.LogCaptureFixture) -> None:
    """Failures, including a failed webhook, log at ERROR; everything else at INFO."""
    logger = logging.getLogger("test.outcome")
    with caplog.at_level(logging.DEBUG, logger="test.outcome"):
        log_outcome(outcome, logger)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(level, log_line(outcome))]


def test_metric_labels_are_low_cardinality_strings() -> None:
    """Metric labels carry status, reason, vault, profile and trigger, but no certificate name."""
    assert metric_labels(RENEWED) == {
        "status": "renewed",
        "reason": "renewed",
        "vault": "kv1",
        "ca_profile": "corp",
        "trigger": "event_grid",
    }


def test_every_outcome_reason_is_in_the_closed_set() -> None:
    """An adapter's own reason becomes its family's, and the detail moves into the message."""
    outcome = Outcome(
        status="failed", reason="acme_validation_timeout", message="the CA did not validate", retryable=True
    )
    assert outcome.reason == Reason.CA_UNAVAILABLE
    assert outcome.message == "the CA did not validate (acme_validation_timeout)"
    assert Outcome(status="failed", reason="cfssl_policy_violation", message="m").reason == Reason.CA_REJECTED
    assert Outcome(status="failed", reason="vault_made_this_up", message="m").reason == Reason.CA_REJECTED
    assert Outcome(status="failed", reason="something_else", message="m", retryable=True).reason == "transient_error"


def test_a_reason_already_in_the_set_is_kept_with_its_message() -> None:
    """Known reasons pass through unchanged."""
    outcome = Outcome(status="skipped", reason="not_due", message="later")
    assert (outcome.reason, outcome.message) == (Reason.NOT_DUE, "later")
    assert json.loads(json.dumps(to_dict(outcome)))["reason"] == "not_due"


def test_the_log_line_counts_each_kind_of_delivery_apart() -> None:
    """Webhooks (and the topic), deployment targets and notifiers are counted apart: a failed push is not a
    failed webhook."""
    outcome = Outcome(
        status="renewed",
        reason="renewed",
        message="new version merged",
        vault_name="kv1",
        certificate_name="web",
        deliveries=(
            Delivery("sink", "msg_1", True, 1, 200, None),
            Delivery("eventgrid-topic", "msg_2", True, 1, 200, None),
            Delivery("target:front", "msg_3", False, 1, None, "arm_conflict"),
            Delivery("notify:ops", "msg_4", True, 1, 200, None),
        ),
    )
    line = log_line(outcome)
    assert "webhooks_delivered=2/2" in line
    assert "targets_delivered=0/1" in line
    assert 'targets_failed="target:front: arm_conflict"' in line
    assert "notifications_delivered=1/1" in line
    assert "webhooks_failed" not in line
