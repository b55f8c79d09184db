"""How one renewal ended, and the one place that turns it into a log line, a dict and metric labels.

Outcomes are closed (STYLE §5): ``renewed``, ``pending``, ``skipped`` or ``failed``, each with a machine
``reason`` and a human ``message``. ``to_dict`` is the single rendering; the log line, the metric labels and the
webhook payload (``renewal.webhooks``) are all built from it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["Delivery", "Outcome", "Status", "log_line", "log_outcome", "metric_labels", "to_dict"]

Status = Literal["renewed", "pending", "skipped", "failed"]

_logger = logging.getLogger(__name__)
_BARE_VALUE = re.compile(r'^[^\s"=\\]+$')
_MESSAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery's result.

    Attributes:
        endpoint: the endpoint's configured name (not its URL).
        webhook_id: the Standard Webhooks ``webhook-id``, the same on every attempt.
        delivered: whether a 2xx answer came back.
        attempts: how many requests were sent (0 when the URL was refused before sending).
        status_code: the last HTTP status, or ``None`` when no answer came.
        error: why it failed, or ``None``.
    """

    endpoint: str
    webhook_id: str
    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one renewal ended.

    Attributes:
        status: ``renewed``, ``pending``, ``skipped`` or ``failed``.
        reason: a machine reason (``snake_case``), e.g. ``already_renewed``, ``ca_rejected``.
        message: a human explanation; never holds a secret or PEM body.
        vault_name: the vault, if known.
        certificate_name: the certificate, if known.
        ca_profile: the CA profile used, if one was chosen.
        previous_version: the version being replaced, if known.
        new_version: the version created, if any.
        trigger: ``event_grid``, ``manual`` or ``sweep``.
        event_id: the triggering event's id, if any.
        duration_seconds: how long the renewal took, if measured.
        deliveries: the webhook deliveries made.
        retryable: for a failure, whether trying again later may help (the error's class said so).
        renews_from: for a ``not_due`` skip, when the certificate's renewal window opens.
    """

    status: Status
    reason: str
    message: str
    vault_name: str | None = None
    certificate_name: str | None = None
    ca_profile: str | None = None
    previous_version: str | None = None
    new_version: str | None = None
    trigger: str | None = None
    event_id: str | None = None
    duration_seconds: float | None = None
    deliveries: tuple[Delivery, ...] = ()
    retryable: bool = False
    renews_from: datetime | None = None


def to_dict(outcome: Outcome) -> dict[str, object]:
    """Render ``outcome`` as a JSON-serialisable dict (for ``outcome.json``, HTTP answers and webhooks)."""
    return {
        "status": outcome.status,
        "reason": outcome.reason,
        "message": outcome.message,
        "vault_name": outcome.vault_name,
        "certificate_name": outcome.certificate_name,
        "ca_profile": outcome.ca_profile,
        "previous_version": outcome.previous_version,
        "new_version": outcome.new_version,
        "trigger": outcome.trigger,
        "event_id": outcome.event_id,
        "retryable": outcome.retryable,
        "duration_seconds": outcome.duration_seconds,
        "renews_from": outcome.renews_from.isoformat(timespec="seconds") if outcome.renews_from else None,
        "deliveries": [
            {
                "endpoint": d.endpoint,
                "webhook_id": d.webhook_id,
                "delivered": d.delivered,
                "attempts": d.attempts,
                "status_code": d.status_code,
                "error": d.error,
            }
            for d in outcome.deliveries
        ],
    }


def log_line(outcome: Outcome) -> str:
    """One line of ``key=value`` pairs; values with spaces, quotes or ``=`` are JSON-quoted, ``None`` is left out."""
    d = to_dict(outcome)
    pairs: list[tuple[str, object]] = [
        ("outcome", d["status"]),
        ("reason", d["reason"]),
        ("vault", d["vault_name"]),
        ("certificate", d["certificate_name"]),
        ("ca_profile", d["ca_profile"]),
        ("previous_version", d["previous_version"]),
        ("new_version", d["new_version"]),
        ("trigger", d["trigger"]),
        ("event_id", d["event_id"]),
        ("renews_from", d["renews_from"]),
    ]
    if outcome.duration_seconds is not None:
        pairs.append(("duration_ms", round(outcome.duration_seconds * 1000)))
    if outcome.deliveries:
        delivered = sum(1 for delivery in outcome.deliveries if delivery.delivered)
        pairs.append(("webhooks_delivered", f"{delivered}/{len(outcome.deliveries)}"))
        failed = [f"{d.endpoint}: {d.error or d.status_code}" for d in outcome.deliveries if not d.delivered]
        if failed:
            pairs.append(("webhooks_failed", "; ".join(failed)))
    message = outcome.message if len(outcome.message) <= _MESSAGE_MAX else outcome.message[:_MESSAGE_MAX] + "..."
    pairs.append(("message", message))
    return "renewal " + " ".join(f"{key}={_quote(value)}" for key, value in pairs if value is not None)


def log_outcome(outcome: Outcome, logger: logging.Logger | None = None) -> None:
    """Log ``log_line(outcome)``: ERROR when the renewal or any webhook delivery failed, INFO otherwise.

    The record also carries the outcome as ``renewal_outcome`` (``to_dict``), for handlers that keep structure
    (Application Insights custom dimensions, the demo's ``outcome.json``).
    """
    failed = outcome.status == "failed" or any(not delivery.delivered for delivery in outcome.deliveries)
    (logger or _logger).log(
        logging.ERROR if failed else logging.INFO,
        "%s",
        log_line(outcome),
        extra={"renewal_outcome": to_dict(outcome)},
    )


def metric_labels(outcome: Outcome) -> dict[str, str]:
    """Low-cardinality labels for metrics: status, reason, vault, CA profile and trigger (no certificate names)."""
    d = to_dict(outcome)
    return {
        key: str(d[source]) if d[source] is not None else ""
        for key, source in (
            ("status", "status"),
            ("reason", "reason"),
            ("vault", "vault_name"),
            ("ca_profile", "ca_profile"),
            ("trigger", "trigger"),
        )
    }


def _quote(value: object) -> str:
    text = str(value)
    return text if _BARE_VALUE.match(text) else json.dumps(text)
