"""Deliveries through the outbox: queue them with the merge, send them, retry them, dead-letter them
(docs/architecture.md §4).

Every notification (a webhook, or an outcome event for the Event Grid topic) is first written to the journal's
outbox in the same transaction that records the merge, then sent. A failed delivery keeps its row with a next
attempt time; the sweep sends it again, with the same ``webhook-id``, until it is delivered or older than the
maximum age, when it is dead-lettered: recorded, logged at error level and visible in the status.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from renewal.notify.routing import announces_dead_letter, notifications_for
from renewal.outcome import Delivery, Outcome
from renewal.pure.backoff import next_attempt
from renewal.pure.payloads import build_payload, endpoints_for
from renewal.pure.verify import VerifiedCertificate
from renewal.shells.journal import OutboxItem, RenewalJournal
from renewal.shells.metrics import Metrics, NoMetrics
from renewal.shells.senders import OutboxSender, endpoint_kind
from renewal.shells.webhooks import WebhookSender
from renewal.steps import Step

if TYPE_CHECKING:
    from renewal.settings import Settings
    from renewal.shells.topic import OutcomeTopic

__all__ = ["TOPIC_ENDPOINT", "Deliverer", "queue_failure", "queue_for"]

logger = logging.getLogger("renewal")

TOPIC_ENDPOINT = "eventgrid-topic"
_NAMESPACE = uuid.UUID("6f1d5c0e-58f4-4d0c-9a51-2b6a4a3e1f11")
# Redeliveries from the sweep wait at most this long between attempts: a receiver that is back is reached within
# the hour, while the maximum age still bounds the whole.
_LONGEST_RETRY = timedelta(hours=1)


def queue_for(
    settings: Settings,
    outcome: Outcome,
    *,
    verified: VerifiedCertificate | None,
    vault_url: str,
    tags: Mapping[str, str],
    now: datetime,
    occurrence: str = "",
) -> list[OutboxItem]:
    """The outbox rows that announce ``outcome``: one per matching webhook (renewals only), and one for the topic
    if configured.

    Ids are derived from (vault, certificate, version, status, ``occurrence``, endpoint), so queuing the same
    announcement twice gives the same rows and receivers see the same ``webhook-id`` on every redelivery;
    ``occurrence`` tells apart announcements that would otherwise share them (two failures of one renewal).
    """
    assert outcome.vault_name is not None
    assert outcome.certificate_name is not None
    version = outcome.new_version or ""
    key = f"{outcome.vault_name}/{outcome.certificate_name}/{version}/{outcome.status}/{occurrence}".lower()
    payload = build_payload(
        outcome, verified=verified, vault_url=vault_url, now=now, event_id=str(uuid.uuid5(_NAMESPACE, key))
    )
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    endpoints = [e.name for e in endpoints_for(settings.webhooks, tags)] if outcome.status == "renewed" else []
    if settings.outcome_topic_endpoint:
        endpoints.append(TOPIC_ENDPOINT)
    moment = now.timestamp()
    return [
        OutboxItem(
            vault_name=outcome.vault_name,
            webhook_id="msg_" + uuid.uuid5(_NAMESPACE, f"{key}/{endpoint}").hex,
            endpoint=endpoint,
            certificate_name=outcome.certificate_name,
            version=version,
            payload=body,
            created_at=moment,
            next_attempt_at=moment,
        )
        for endpoint in endpoints
    ]


def queue_failure(settings: Settings, outcome: Outcome, *, now: datetime, occurrence: str) -> list[OutboxItem]:
    """The outbox row announcing a failure on the outcome topic, or none when no topic is configured."""
    if not settings.outcome_topic_endpoint or outcome.vault_name is None:
        return []
    vault = settings.vaults.get(outcome.vault_name.lower())
    return queue_for(
        settings,
        outcome,
        verified=None,
        vault_url=vault.url if vault else "",
        tags={},
        now=now,
        occurrence=occurrence,
    )


class Deliverer:
    """Sends outbox rows and records what happened to each.

    Args:
        settings: the endpoints and the maximum age.
        journal: where the rows live.
        webhooks: the signed-webhook sender (quick retries within one attempt).
        topic: the outcome topic publisher, if configured.
        clock: Unix seconds now.
        rng: jitter source (injected in tests).
        checkpoint: called with ``"deliver:sent"`` after each send, before its row is saved (the
            crash-resume tests stop a worker there).
        senders: the other destinations by endpoint kind (``notify``, ``target``, ``revoke``).
        metrics: where each attempt and dead letter is counted.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        journal: RenewalJournal,
        webhooks: WebhookSender,
        topic: OutcomeTopic | None,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        checkpoint: Callable[[str], None] = lambda step: None,
        senders: Mapping[str, OutboxSender] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._webhooks = webhooks
        self._topic = topic
        self._clock = clock
        self._rng = rng or random.Random()
        self._checkpoint = checkpoint
        self._senders = dict(senders or {})
        self._metrics = metrics or NoMetrics()

    def send(self, items: Sequence[OutboxItem]) -> tuple[Delivery, ...]:
        """Send each pending row once (with the sender's quick retries) and save its new state.

        A row another worker settled meanwhile is left alone. Never raises for a failing endpoint.
        """
        results = []
        for item in items:
            if item.status != "pending":
                continue
            delivery, _ = self._send_one(item)
            results.append(delivery)
        return tuple(results)

    def _send_one(self, item: OutboxItem) -> tuple[Delivery, OutboxItem | None]:
        now = self._clock()
        delivery = self._attempt(item)
        # A crash here (sent, not yet recorded) makes the next attempt send it again with the same webhook-id.
        self._checkpoint(f"{Step.DELIVER}:sent")
        kind = _metric_kind(item.endpoint)
        self._metrics.delivery(
            endpoint=item.endpoint, kind=kind, result="delivered" if delivery.delivered else "failed"
        )
        if delivery.delivered:
            updated = replace(item, status="delivered", attempts=item.attempts + delivery.attempts, last_error=None)
        else:
            attempts = item.attempts + max(delivery.attempts, 1)
            age_hours = (now - item.created_at) / 3600
            if delivery.permanent or age_hours >= self._settings.webhook_max_age_hours:
                updated = replace(item, status="dead", attempts=attempts, last_error=delivery.error)
                self._metrics.dead_letter(endpoint=item.endpoint, kind=kind)
                self._announce_dead_letter(updated, now, refused=delivery.permanent)
                logger.error(
                    "delivery dead-lettered endpoint=%s webhook_id=%s vault=%s certificate=%s version=%s "
                    "attempts=%d age_hours=%.1f last_error=%s",
                    item.endpoint,
                    item.webhook_id,
                    item.vault_name,
                    item.certificate_name,
                    item.version,
                    attempts,
                    age_hours,
                    delivery.error,
                )
            else:
                # No expiry bound: a delivery announces a version already merged; the maximum age ends it instead.
                moment = next_attempt(
                    attempts,
                    now=datetime.fromtimestamp(now, UTC),
                    first=timedelta(seconds=self._settings.webhook_retry_seconds),
                    cap=_LONGEST_RETRY,
                    rng=self._rng,
                )
                if delivery.retry_after_seconds is not None:
                    moment = max(moment, datetime.fromtimestamp(now + delivery.retry_after_seconds, UTC))
                updated = replace(
                    item, attempts=attempts, next_attempt_at=moment.timestamp(), last_error=delivery.error
                )
        return delivery, self._journal.save_outbox(updated)

    def _announce_dead_letter(self, item: OutboxItem, now: float, *, refused: bool) -> None:
        """Tell the outcome topic a delivery was given up on (docs/architecture.md §4: "announced as a failure
        event"): past the maximum age, or at once when the destination refused it for good."""
        if item.endpoint == TOPIC_ENDPOINT:
            return
        why = (
            f"was refused for good after {item.attempts} attempt(s)"
            if refused
            else f"failed for {self._settings.webhook_max_age_hours:g} h and was given up"
        )
        outcome = Outcome(
            status="failed",
            reason="delivery_dead_lettered",
            message=f"delivery {item.webhook_id} to endpoint {item.endpoint} {why}: {item.last_error}",
            vault_name=item.vault_name,
            certificate_name=item.certificate_name,
            new_version=item.version or None,
        )
        moment = datetime.fromtimestamp(now, UTC)
        rows = queue_failure(self._settings, outcome, now=moment, occurrence=item.webhook_id)
        if announces_dead_letter(item):
            vault = self._settings.vaults.get(item.vault_name.lower())
            rows += notifications_for(
                self._settings.notifiers,
                outcome,
                previous=None,
                tags={},
                vault_url=vault.url if vault else "",
                now=moment,
                occurrence=item.webhook_id,
                exclude={item.endpoint},
            )
        self._journal.add_outbox(rows)

    def _attempt(self, item: OutboxItem) -> Delivery:
        try:
            payload: Mapping[str, Any] = json.loads(item.payload)
        except ValueError:
            return Delivery(item.endpoint, item.webhook_id, False, 0, None, "the stored payload is not JSON")
        if item.endpoint == TOPIC_ENDPOINT:
            if self._topic is None:
                return Delivery(item.endpoint, item.webhook_id, False, 0, None, "no outcome topic is configured now")
            return self._topic.publish(payload, webhook_id=item.webhook_id)
        kind, _ = endpoint_kind(item.endpoint)
        if kind != "webhook":
            sender = self._senders.get(kind)
            if sender is None:
                return Delivery(item.endpoint, item.webhook_id, False, 0, None, f"no {kind} destination is configured")
            return sender.send(item)
        endpoint = next((e for e in self._settings.webhooks if e.name == item.endpoint), None)
        if endpoint is None:
            return Delivery(item.endpoint, item.webhook_id, False, 0, None, "the endpoint is no longer configured")
        return self._webhooks.deliver(endpoint, payload, webhook_id=item.webhook_id)


def _metric_kind(endpoint: str) -> str:
    if endpoint == TOPIC_ENDPOINT:
        return "topic"
    return endpoint_kind(endpoint)[0]
