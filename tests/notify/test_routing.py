"""Who is told what, and when: outcome kinds, failure streaks, routing by tag and owner, and the rows queued."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from renewal.notify import (
    NotifierConfig,
    SlackOptions,
    TeamsOptions,
    announces_dead_letter,
    classify,
    notifications_for,
    streak_decision,
    unqueued,
)
from renewal.outcome import Outcome, to_dict
from renewal.shells.journal import OutboxItem

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
VAULT_URL = "https://kv1.vault.azure.net"
EVERYTHING = frozenset(
    {"renewed", "failed", "at_risk", "dead_letter", "recovered", "rollout_complete", "rollout_stalled", "would_renew"}
)


def outcome(status: str = "failed", reason: str = "ca_rejected", **fields: object) -> Outcome:
    values: dict[str, object] = {
        "message": f"{status}: {reason}",
        "vault_name": "kv1",
        "certificate_name": "web",
        "previous_version": "v1",
        **fields,
    }
    return Outcome(status=status, reason=reason, **values)  # type: ignore[arg-type]


def entry(status: str, reason: str, **fields: object) -> dict[str, object]:
    return {**to_dict(outcome(status, reason, **fields)), "at": "2026-12-01T09:00:00+00:00"}


def notifier(name: str = "ops", **fields: object) -> NotifierConfig:
    return NotifierConfig(name=name, options=SlackOptions(url_setting="SLACK_URL"), **fields)  # type: ignore[arg-type]


def rows_for(configs: list[NotifierConfig], news: Outcome, **kwargs: object) -> list[OutboxItem]:
    arguments: dict[str, object] = {"previous": None, "tags": {}, "vault_url": VAULT_URL, "now": NOW, **kwargs}
    return notifications_for(configs, news, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("news", "kind"),
    [
        (outcome("renewed", "renewed", new_version="v2"), "renewed"),
        (outcome("failed", "ca_rejected"), "failed"),
        (outcome("failed", "keyvault_throttled", retryable=True), "failed"),
        (outcome("failed", "expiry_at_risk"), "at_risk"),
        (outcome("failed", "delivery_dead_lettered"), "dead_letter"),
        (outcome("renewed", "recovered"), "recovered"),
        (outcome("renewed", "rollout_complete"), "rollout_complete"),
        (outcome("failed", "rollout_stalled"), "rollout_stalled"),
        (outcome("skipped", "would_renew"), "would_renew"),
        (outcome("skipped", "not_due"), None),
        (outcome("pending", "ca_pending"), None),
        (outcome("skipped", "renewal_in_progress"), None),
    ],
)
def test_each_outcome_is_one_kind_of_news_or_none(news: Outcome, kind: str | None) -> None:
    """Reasons that are news of their own (at risk, dead letter, rollouts, observe mode) win over the status."""
    assert classify(news) == kind


def test_a_first_failure_is_announced() -> None:
    """A failure with nothing before it, or after a success, starts a streak and is announced."""
    assert streak_decision(None, outcome()) == "failed"
    assert streak_decision(entry("renewed", "renewed", new_version="v1"), outcome()) == "failed"


def test_a_failure_after_a_failure_is_not_announced_again() -> None:
    """Retries and sweeps of a failing renewal do not tell anyone again, whatever the reason now."""
    assert streak_decision(entry("failed", "ca_unavailable"), outcome("failed", "ca_rejected")) is None


def test_a_failure_renewing_another_version_starts_a_new_streak() -> None:
    """A version renewed out of band whose own renewal then fails is news again."""
    assert streak_decision(entry("failed", "ca_rejected", previous_version="v1"), outcome(previous_version="v2")) == (
        "failed"
    )


def test_a_renewal_after_a_failure_is_announced_as_recovered() -> None:
    """The success that ends a streak is news: whoever was told of the failure hears it is over."""
    assert streak_decision(entry("failed", "ca_rejected"), outcome("renewed", "renewed", new_version="v2")) == (
        "recovered"
    )


def test_someone_else_renewing_it_also_ends_the_streak_as_recovered() -> None:
    """A certificate renewed by hand while the app was failing is fine again, and people are told."""
    assert streak_decision(entry("failed", "ca_rejected"), outcome("skipped", "already_renewed")) == "recovered"


def test_a_pause_ends_the_streak_quietly() -> None:
    """A paused certificate is not news, and a failure after the pause starts a new streak."""
    assert streak_decision(entry("failed", "ca_rejected"), outcome("skipped", "paused")) is None
    assert streak_decision(entry("skipped", "paused"), outcome()) == "failed"


def test_outcomes_that_say_nothing_of_health_are_seen_through_in_the_history() -> None:
    """A CA deferral between a failure and a success does not hide the streak, given the whole history."""
    history = [entry("failed", "ca_unavailable"), entry("pending", "ca_pending"), entry("pending", "ca_pending")]
    assert streak_decision(history, outcome("renewed", "renewed", new_version="v2")) == "recovered"
    assert streak_decision(history, outcome("failed", "ca_rejected")) is None


def test_observe_mode_says_would_renew_once_not_at_every_sweep() -> None:
    """The same news as the entry before it is not repeated."""
    first = outcome("skipped", "would_renew")
    assert streak_decision([entry("skipped", "not_due")], first) == "would_renew"
    assert streak_decision([entry("skipped", "would_renew")], first) is None


def test_every_notifier_that_wants_the_kind_gets_a_row() -> None:
    """Notifiers are told only of the kinds in their outcomes; the default is failures, risks, dead letters and
    recoveries."""
    default, renewals = notifier("default"), notifier("renewals", outcomes=frozenset({"renewed"}))
    renewed = outcome("renewed", "renewed", new_version="v2")
    assert [row.endpoint for row in rows_for([default, renewals], renewed)] == ["notify:renewals"]
    assert [row.endpoint for row in rows_for([default, renewals], outcome())] == ["notify:default"]


def test_a_notifier_told_of_renewals_but_not_recoveries_hears_a_recovering_renewal_as_renewed() -> None:
    """One message per notifier: recovered where it asked for recoveries, else renewed."""
    both = notifier("both", outcomes=frozenset({"renewed", "recovered"}))
    renewals = notifier("renewals", outcomes=frozenset({"renewed"}))
    rows = rows_for(
        [both, renewals], outcome("renewed", "renewed", new_version="v2"), previous=entry("failed", "ca_rejected")
    )
    assert {row.endpoint: json.loads(row.payload)["kind"] for row in rows} == {
        "notify:both": "recovered",
        "notify:renewals": "renewed",
    }


def test_a_tag_filter_limits_a_notifier_to_certificates_with_that_tag() -> None:
    """``tag`` is matched as webhooks match it: key case-insensitively, value exactly."""
    production = notifier("prod", match_tag=("env", "production"))
    assert rows_for([production], outcome(), tags={"Env": "production"})
    assert not rows_for([production], outcome(), tags={"env": "staging"})
    assert not rows_for([production], outcome(), tags={})


def test_an_owner_notifier_hears_only_of_certificates_whose_tag_names_its_owner() -> None:
    """``renewal-notify=team-payments,team-web`` selects both owners' notifiers; notifiers without an owner hear
    of every certificate."""
    payments = notifier("payments", owner="team-payments")
    web = notifier("web", owner="team-web")
    ops = notifier("ops")
    tagged = rows_for([payments, web, ops], outcome(), tags={"renewal-notify": "Team-Payments, team-web"})
    assert [row.endpoint for row in tagged] == ["notify:payments", "notify:web", "notify:ops"]
    untagged = rows_for([payments, web, ops], outcome(), tags={})
    assert [row.endpoint for row in untagged] == ["notify:ops"]
    other = rows_for([payments, web, ops], outcome(), tags={"renewal-notify": "team-data"})
    assert [row.endpoint for row in other] == ["notify:ops"]


def test_the_same_announcement_gives_the_same_rows() -> None:
    """Ids derive from what is announced, so re-queuing after a crash gives the same rows; another occurrence or
    another notifier gives others."""
    configs = [notifier("a"), notifier("b")]
    first = rows_for(configs, outcome(), occurrence="csr/1")
    again = rows_for(configs, outcome(), occurrence="csr/1")
    other = rows_for(configs, outcome(), occurrence="csr/7")
    assert [row.webhook_id for row in first] == [row.webhook_id for row in again]
    assert len({row.webhook_id for row in first + other}) == 4
    assert all(row.webhook_id.startswith("msg_") for row in first)


def test_the_payload_is_the_outcome_with_its_kind_and_nothing_secret() -> None:
    """The row holds the outcome (no deliveries), the kind, the vault URL and the expiry; never a webhook URL."""
    config = NotifierConfig(name="ops", options=TeamsOptions(url_setting="TEAMS_URL"))
    expires = datetime(2026, 12, 5, tzinfo=UTC)
    (row,) = rows_for([config], outcome(), expires_on=expires)
    payload = json.loads(row.payload)
    assert payload["kind"] == "failed"
    assert payload["reason"] == "ca_rejected"
    assert payload["certificate_name"] == "web"
    assert payload["vault_url"] == VAULT_URL
    assert payload["expires_on"] == "2026-12-05T00:00:00Z"
    assert "deliveries" not in payload
    assert "TEAMS_URL" not in row.payload
    assert (row.vault_name, row.certificate_name, row.status, row.created_at) == (
        "kv1",
        "web",
        "pending",
        NOW.timestamp(),
    )


def test_nothing_is_queued_for_an_outcome_without_a_certificate() -> None:
    """An ignored event names no certificate: there is nobody to tell about it."""
    assert not rows_for([notifier()], Outcome(status="failed", reason="malformed_event", message="bad"))


def test_excluded_endpoints_are_left_out() -> None:
    """The notifier whose own delivery died is not told about it."""
    dead = outcome("failed", "delivery_dead_lettered")
    assert [row.endpoint for row in rows_for([notifier("a"), notifier("b")], dead, exclude={"notify:a"})] == [
        "notify:b"
    ]


def test_a_dead_letter_announcement_that_dies_is_not_announced() -> None:
    """Two broken notifiers must not tell each other of each other's failures for ever."""
    (announcement,) = rows_for([notifier("a")], outcome("failed", "delivery_dead_lettered"))
    (failure,) = rows_for([notifier("a")], outcome())
    assert not announces_dead_letter(announcement)
    assert announces_dead_letter(failure)
    webhook = OutboxItem(
        vault_name="kv1", webhook_id="msg_1", endpoint="deploy", certificate_name="web", version="", payload="{}"
    )
    assert announces_dead_letter(webhook)


def test_unqueued_keeps_only_rows_not_in_the_outbox() -> None:
    """An alarm recomputed at every sweep is queued once."""
    rows = rows_for([notifier("a"), notifier("b")], outcome("failed", "expiry_at_risk"), occurrence="v1")
    assert unqueued(rows, rows[:1]) == rows[1:]
    assert unqueued(rows, []) == rows
