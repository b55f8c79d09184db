"""Notifications through the outbox: a failing notifier is retried later, a refusal is dead-lettered at once, and
nothing is lost on the way (the Deliverer and the in-memory journal, with the Slack and Teams fakes)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from renewal.flow.deliveries import Deliverer
from renewal.notify import NotifierSender, announces_dead_letter, notifications_for, parse_notifiers
from renewal.outcome import Outcome
from renewal.settings import Settings
from renewal.shells.journal import OutboxItem
from renewal.shells.webhooks import WebhookSender
from renewal.testing import InMemoryJournal
from tests.fakes.chat_webhooks import FakeSlackWebhook, FakeTeamsWorkflow, slack_error
from tests.fakes.loopback import Response

START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FAILED = Outcome(
    status="failed",
    reason="ca_unavailable",
    message="the CA did not answer in time",
    vault_name="kv1",
    certificate_name="web",
    previous_version="v1",
    retryable=True,
)


class Clock:
    """The test's clock: moved by hand, never slept on."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Stack:
    def __init__(self, slack: FakeSlackWebhook, teams: FakeTeamsWorkflow, *, max_age_hours: float = 24) -> None:
        self.clock = Clock()
        self.environ = {
            "RENEWAL_VAULTS": "kv1",
            "RENEWAL_WEBHOOK_RETRY_SECONDS": "60",
            "RENEWAL_WEBHOOK_MAX_AGE_HOURS": str(max_age_hours),
            "RENEWAL_NOTIFIERS": json.dumps(
                {
                    "ops-slack": {"kind": "slack", "url_setting": "SLACK_URL"},
                    "ops-teams": {"kind": "teams", "url_setting": "TEAMS_URL"},
                }
            ),
            "SLACK_URL": slack.url,
            "TEAMS_URL": teams.url,
        }
        self.configs = parse_notifiers(self.environ)
        self.journal = InMemoryJournal(clock=self.clock.seconds)
        self.deliverer = Deliverer(
            settings=Settings.from_environ(self.environ),
            journal=self.journal,
            webhooks=WebhookSender(clock=self.clock),
            topic=None,
            clock=self.clock.seconds,
            rng=random.Random(7),
            senders={"notify": NotifierSender(self.configs, self.environ, clock=self.clock, timeout=5.0)},
        )

    def queue(self, news: Outcome) -> list[OutboxItem]:
        rows = notifications_for(
            self.configs,
            news,
            previous=None,
            tags={},
            vault_url="https://kv1.vault.azure.net",
            now=self.clock(),
            occurrence="csr/1",
        )
        self.journal.add_outbox(rows)
        return rows

    def row(self, endpoint: str) -> OutboxItem:
        return next(item for item in self.journal.outbox() if item.endpoint == endpoint)

    def sweep(self) -> None:
        """What the sweep does with the outbox: send what is pending and due."""
        now = self.clock.seconds()
        self.deliverer.send([i for i in self.journal.outbox() if i.status == "pending" and i.next_attempt_at <= now])

    def first_sweep(self, slack: FakeSlackWebhook, answer: Response) -> None:
        """Queue ``FAILED`` to both notifiers and sweep once, Slack answering ``answer``."""
        self.queue(FAILED)
        slack.script(answer)
        self.sweep()


def test_a_failing_slack_is_retried_later_and_then_delivered(slack: FakeSlackWebhook, teams: FakeTeamsWorkflow) -> None:
    """A 500 keeps the row with a later attempt time; the next sweep after it sends the same row again."""
    stack = Stack(slack, teams)
    stack.first_sweep(slack, slack_error(500, "rollup_error"))
    waiting = stack.row("notify:ops-slack")
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert waiting.next_attempt_at > stack.clock.seconds()
    assert waiting.last_error is not None
    assert "rollup_error" in waiting.last_error
    assert stack.row("notify:ops-teams").status == "delivered"

    stack.sweep()
    assert len(slack.requests) == 1, "not due yet: nothing is sent"

    stack.clock.advance(timedelta(seconds=waiting.next_attempt_at - stack.clock.seconds() + 1))
    stack.sweep()
    delivered = stack.row("notify:ops-slack")
    assert (delivered.status, delivered.attempts, delivered.webhook_id) == ("delivered", 2, waiting.webhook_id)
    assert len(slack.messages) == 1
    assert len(teams.cards) == 1, "the notifier that succeeded is not sent to again"


def test_slack_throttling_pushes_the_next_attempt_past_its_retry_after(
    slack: FakeSlackWebhook, teams: FakeTeamsWorkflow
) -> None:
    """The outbox waits at least as long as Slack asked."""
    stack = Stack(slack, teams)
    stack.first_sweep(slack, slack_error(429, "rate_limited", retry_after="900"))
    assert stack.row("notify:ops-slack").next_attempt_at >= stack.clock.seconds() + 900


def test_an_archived_slack_channel_is_dead_lettered_at_once(slack: FakeSlackWebhook, teams: FakeTeamsWorkflow) -> None:
    """410 ``channel_is_archived`` cannot get better by waiting: the row is dead at the first attempt."""
    stack = Stack(slack, teams)
    stack.first_sweep(slack, slack_error(410, "channel_is_archived"))
    dead = stack.row("notify:ops-slack")
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert dead.last_error is not None
    assert "channel is archived" in dead.last_error
    assert slack.url not in dead.last_error
    assert slack.secret not in dead.last_error
    stack.clock.advance(timedelta(days=1))
    stack.sweep()
    assert len(slack.requests) == 1, "a dead row is never sent again"


def test_a_row_is_dead_lettered_once_older_than_the_maximum_age(
    slack: FakeSlackWebhook, teams: FakeTeamsWorkflow
) -> None:
    """A Slack that stays down is given up on after the outbox's maximum age, as webhooks are."""
    stack = Stack(slack, teams, max_age_hours=2)
    stack.queue(FAILED)
    slack.script(*[slack_error(503, "unavailable")] * 100)
    for _ in range(60):
        row = stack.row("notify:ops-slack")
        if row.status != "pending":
            break
        stack.clock.now = datetime.fromtimestamp(row.next_attempt_at, UTC)
        stack.sweep()
    dead = stack.row("notify:ops-slack")
    assert dead.status == "dead"
    assert stack.clock.now - START >= timedelta(hours=2)
    assert dead.attempts < 20


def test_requeuing_the_same_announcement_gives_the_same_rows(slack: FakeSlackWebhook, teams: FakeTeamsWorkflow) -> None:
    """A crash between queuing and saving makes the flow queue again: the same ids, so no second message."""
    stack = Stack(slack, teams)
    first = stack.queue(FAILED)
    again = stack.queue(FAILED)
    assert [row.webhook_id for row in first] == [row.webhook_id for row in again]
    assert len(stack.journal.outbox()) == 2


def test_the_dead_letter_of_a_dead_letter_announcement_is_not_announced(
    slack: FakeSlackWebhook, teams: FakeTeamsWorkflow
) -> None:
    """What the deliverer's dead-letter hook asks before telling the notifiers about a dead row."""
    stack = Stack(slack, teams)
    (failure,) = [row for row in stack.queue(FAILED) if row.endpoint == "notify:ops-slack"]
    dead_letter = Outcome(
        status="failed",
        reason="delivery_dead_lettered",
        message=f"delivery {failure.webhook_id} to endpoint notify:ops-slack failed",
        vault_name="kv1",
        certificate_name="web",
    )
    announcements = notifications_for(
        stack.configs,
        dead_letter,
        previous=None,
        tags={},
        vault_url="",
        now=stack.clock(),
        occurrence=failure.webhook_id,
        exclude={failure.endpoint},
    )
    assert [row.endpoint for row in announcements] == ["notify:ops-teams"]
    assert announces_dead_letter(failure)
    assert not announces_dead_letter(announcements[0])
