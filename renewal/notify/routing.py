"""Who is told what, and when (no I/O): outcome kinds, failure streaks, routing by tag and owner, outbox rows.

- ``classify`` says which kind of news an outcome is (``renewed``, ``failed``, ``at_risk``, ``dead_letter``, ...).
- ``streak_decision`` keeps people from being told the same thing at every retry or sweep: a failure is
  announced once per failure streak (a failure after anything but a failure starts one), and the success that
  ends a streak is announced as ``recovered``. Outcomes that say nothing about the renewal's health (the CA
  deferred, another worker holds the claim) neither start nor end a streak.
- ``notifications_for`` turns an outcome into the outbox rows for the notifiers that want it, with ids derived
  from what they announce, so queuing the same announcement again gives the same rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from renewal.notify._config import NotifierConfig
from renewal.outcome import Outcome, Reason, to_dict
from renewal.pure.tags import NOTIFY_TAG, tag_value
from renewal.shells.journal import OutboxItem
from renewal.shells.senders import endpoint_kind

__all__ = [
    "announces_dead_letter",
    "classify",
    "notifications_for",
    "streak_decision",
    "unqueued",
]

_NAMESPACE = uuid.UUID("0b7e4f55-2f61-4c1b-9d0e-6a5c2f1e8d47")
_BY_REASON = {
    Reason.EXPIRY_AT_RISK: "at_risk",
    Reason.DELIVERY_DEAD_LETTERED: "dead_letter",
    Reason.RECOVERED: "recovered",
    Reason.ROLLOUT_COMPLETE: "rollout_complete",
    Reason.ROLLOUT_STALLED: "rollout_stalled",
    Reason.WOULD_RENEW: "would_renew",
}
# Outcomes about something other than the renewal itself: they neither start nor end a failure streak.
_BESIDE_THE_RENEWAL = frozenset(_BY_REASON) - {Reason.RECOVERED}
# Skips after which the certificate is fine: someone else renewed it (announced as recovered), or it is no longer
# the app's to renew or not yet due (the streak ends quietly).
_RECOVERS = frozenset({Reason.ALREADY_RENEWED})
_ENDS_QUIETLY = frozenset({Reason.NOT_DUE, Reason.PAUSED, Reason.NOT_MANAGED, Reason.ISSUER_RENEWS_ITSELF})

History = Mapping[str, object] | Sequence[Mapping[str, object]] | None


def classify(outcome: Outcome) -> str | None:
    """The kind of news ``outcome`` is (one of ``OUTCOME_KINDS``), or ``None`` when it is none a person wants
    (skipped, or pending at the CA)."""
    kind = _BY_REASON.get(Reason(outcome.reason))
    if kind is not None:
        return kind
    if outcome.status == "renewed":
        return "renewed"
    if outcome.status == "failed":
        return "failed"
    return None


def streak_decision(previous: History, outcome: Outcome) -> str | None:
    """What to announce for ``outcome``, given what came before: a kind of ``OUTCOME_KINDS``, or ``None``.

    ``previous`` is the certificate's journal history before this outcome: its last entry
    (``RenewalRecord.history[-1]``, shaped as ``renewal.outcome.to_dict``), or better the whole history, newest
    last, so that outcomes between a failure and this one that say nothing about the renewal's health (a CA
    deferral, another worker's claim) are seen through.

    - a failure is announced only when it starts a streak (nothing failed before it, or what failed was the
      renewal of another version);
    - a renewal (or the discovery that someone else renewed it) after a failure is ``recovered``;
    - any other news is announced unless the entry before it said the same (observe mode's ``would_renew`` at
      every sweep, a stalled rollout seen again).
    """
    entries = _entries(previous)
    settled = next((entry for entry in reversed(entries) if _failing(entry) is not None), None)
    failing_before = settled is not None and _failing(settled) is True and _same_renewal(settled, outcome)
    kind = classify(outcome)
    if kind == "failed":
        return None if failing_before else "failed"
    if failing_before and (outcome.status == "renewed" or outcome.reason in _RECOVERS):
        return "recovered"
    if kind is None:
        return None
    if entries and _same_news(entries[-1], outcome):
        return None
    return kind


def notifications_for(
    configs: Sequence[NotifierConfig],
    outcome: Outcome,
    *,
    previous: History,
    tags: Mapping[str, str],
    vault_url: str,
    now: datetime,
    occurrence: str = "",
    expires_on: datetime | None = None,
    exclude: Collection[str] = (),
) -> list[OutboxItem]:
    """The outbox rows (``notify:<name>``) that tell the notifiers who want it about ``outcome``.

    What is announced is ``streak_decision(previous, outcome)``. A notifier wants it when the kind is in its
    ``outcomes`` (a notifier told of renewals but not recoveries hears of a recovering renewal as ``renewed``),
    the certificate's ``tags`` contain its ``tag``, and, if it has an ``owner``, the certificate's
    ``renewal-notify`` tag names that owner (several owners: comma-separated). Notifiers without an owner hear
    about every certificate their other filters allow.

    Ids are derived from (vault, certificate, previous and new version, kind, ``occurrence``, notifier), so
    queuing the same announcement twice gives the same rows; ``occurrence`` tells apart announcements that would
    otherwise share them (two failure streaks of one renewal, a dead letter's delivery id). The payload is the
    outcome (``to_dict``, without its deliveries) with ``kind``, ``vault_url`` and ``expires_on``; nothing secret
    is in it (webhook URLs and passwords are looked up when sending). ``exclude`` names endpoints to leave out
    (the notifier whose own delivery is being announced as dead-lettered).
    """
    if not configs or outcome.vault_name is None or outcome.certificate_name is None:
        return []
    decision = streak_decision(previous, outcome)
    if decision is None:
        return []
    owners = _owners(tags)
    moment = now.timestamp()
    rows = []
    for config in configs:
        if config.endpoint in exclude or not _applies(config, tags, owners):
            continue
        kind = _kind_for(config, decision, outcome)
        if kind is None:
            continue
        key = "/".join(
            (
                outcome.vault_name,
                outcome.certificate_name,
                outcome.previous_version or "",
                outcome.new_version or "",
                kind,
                occurrence,
                config.endpoint,
            )
        ).lower()
        rows.append(
            OutboxItem(
                vault_name=outcome.vault_name,
                webhook_id="msg_" + uuid.uuid5(_NAMESPACE, key).hex,
                endpoint=config.endpoint,
                certificate_name=outcome.certificate_name,
                version=outcome.new_version or "",
                payload=_payload(outcome, kind=kind, vault_url=vault_url, expires_on=expires_on, now=now),
                created_at=moment,
                next_attempt_at=moment,
            )
        )
    return rows


def announces_dead_letter(item: OutboxItem) -> bool:
    """Whether the dead-lettering of ``item`` should itself be announced to the notifiers.

    Not when ``item`` was a notification announcing a dead letter: two broken notifiers would otherwise tell each
    other about each other's failures for ever.
    """
    kind, _ = endpoint_kind(item.endpoint)
    if kind != "notify":
        return True
    try:
        payload = json.loads(item.payload)
    except ValueError:
        return True
    return not (isinstance(payload, dict) and payload.get("kind") == "dead_letter")


def unqueued(rows: Iterable[OutboxItem], queued: Iterable[OutboxItem]) -> list[OutboxItem]:
    """The ``rows`` not already in the outbox (``queued``): for announcements recomputed at every sweep (the
    at-risk alarm), so a row already sent is not queued (and sent) again."""
    known = {item.webhook_id for item in queued}
    return [row for row in rows if row.webhook_id not in known]


def _entries(previous: History) -> list[Mapping[str, object]]:
    if previous is None:
        return []
    if isinstance(previous, Mapping):
        return [previous]
    # The journal keeps a history entry that was not JSON as text: it says nothing here.
    return [entry for entry in previous if isinstance(entry, Mapping)]


def _failing(entry: Mapping[str, object]) -> bool | None:
    """``True`` for a failed renewal, ``False`` for an outcome that ends a streak, ``None`` for one that does not
    say (pending at the CA, another worker's claim, news beside the renewal)."""
    reason = entry.get("reason")
    status = entry.get("status")
    if reason in _BESIDE_THE_RENEWAL:
        return None
    if status == "failed":
        return True
    if status == "renewed" or reason == Reason.RECOVERED:
        return False
    if status == "skipped" and (reason in _RECOVERS or reason in _ENDS_QUIETLY):
        return False
    return None


def _same_renewal(entry: Mapping[str, object], outcome: Outcome) -> bool:
    """Whether ``entry`` was about renewing the same version (a failure renewing another is another streak)."""
    before = entry.get("previous_version")
    return before is None or outcome.previous_version is None or before == outcome.previous_version


def _same_news(entry: Mapping[str, object], outcome: Outcome) -> bool:
    return (
        entry.get("status") == outcome.status
        and entry.get("reason") == outcome.reason
        and entry.get("previous_version") == outcome.previous_version
        and entry.get("new_version") == outcome.new_version
    )


def _owners(tags: Mapping[str, str]) -> frozenset[str]:
    value = tag_value(tags, NOTIFY_TAG) or ""
    return frozenset(part.strip().lower() for part in value.split(",") if part.strip())


def _applies(config: NotifierConfig, tags: Mapping[str, str], owners: frozenset[str]) -> bool:
    if config.owner is not None and config.owner not in owners:
        return False
    if config.match_tag is None:
        return True
    key, value = config.match_tag
    folded = {k.strip().lower(): v.strip() for k, v in tags.items()}
    return folded.get(key.lower()) == value


def _kind_for(config: NotifierConfig, decision: str, outcome: Outcome) -> str | None:
    if decision in config.outcomes:
        return decision
    if decision == "recovered" and outcome.status == "renewed" and "renewed" in config.outcomes:
        return "renewed"
    return None


def _payload(outcome: Outcome, *, kind: str, vault_url: str, expires_on: datetime | None, now: datetime) -> str:
    body = to_dict(outcome)
    body.pop("deliveries", None)
    body["kind"] = kind
    body["vault_url"] = vault_url or None
    body["expires_on"] = _iso(expires_on) if expires_on is not None else None
    body["queued_at"] = _iso(now)
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
