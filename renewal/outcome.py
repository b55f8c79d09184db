"""How one renewal ended, and the one place that turns it into a log line, a dict and metric labels.

Outcomes are closed (STYLE §5): ``renewed``, ``pending``, ``skipped`` or ``failed``, each with a machine
``reason`` from the closed set ``Reason`` and a human ``message``. An error's own reason that is not in the set
(an adapter's detail, such as ``acme_validation_timeout``) is folded into its family (``ca_unavailable``) by
``Reason.of``, and the detail goes into the message: dashboards, alerts and metric labels see a bounded set.
``to_dict`` is the single rendering; the log line, the metric labels and the webhook payload are built from it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

__all__ = [
    "Delivery",
    "Outcome",
    "Reason",
    "Status",
    "delivery_groups",
    "log_line",
    "log_outcome",
    "metric_labels",
    "to_dict",
]

Status = Literal["renewed", "pending", "skipped", "failed"]


class Reason(StrEnum):
    """Every reason an outcome can give: a closed set (cert-manager's conditions are the model)."""

    RENEWED = "renewed"
    CA_PENDING = "ca_pending"
    # Skipped: nothing to do, or not now.
    NOT_DUE = "not_due"
    ALREADY_RENEWED = "already_renewed"
    NOT_MANAGED = "not_managed"
    ISSUER_RENEWS_ITSELF = "issuer_renews_itself"
    PAUSED = "paused"
    RECENTLY_RENEWED = "recently_renewed"
    RENEWAL_IN_PROGRESS = "renewal_in_progress"
    UNSUPPORTED_EVENT_TYPE = "unsupported_event_type"
    NOT_A_KEY_VAULT_EVENT = "not_a_key_vault_event"
    NOT_A_CERTIFICATE = "not_a_certificate"
    VAULT_NOT_ALLOWED = "vault_not_allowed"
    INVALID_NAME = "invalid_name"
    # Failed before anything was asked of anyone.
    MALFORMED_EVENT = "malformed_event"
    BAD_CONFIGURATION = "bad_configuration"
    UNKNOWN_CA_PROFILE = "unknown_ca_profile"
    INVALID_TAG = "invalid_tag"
    # Key Vault.
    CERTIFICATE_NOT_FOUND = "certificate_not_found"
    POLICY_MISSING = "policy_missing"
    TOO_MANY_TAGS = "too_many_tags"
    NO_PENDING_OPERATION = "no_pending_operation"
    KEYVAULT_ACCESS_DENIED = "keyvault_access_denied"
    KEYVAULT_REJECTED = "keyvault_rejected"
    KEYVAULT_THROTTLED = "keyvault_throttled"
    KEYVAULT_UNAVAILABLE = "keyvault_unavailable"
    KEYVAULT_UNREACHABLE = "keyvault_unreachable"
    KEYVAULT_GARBLED = "keyvault_garbled"
    KEYVAULT_CHALLENGE_REFUSED = "keyvault_challenge_refused"
    KEYVAULT_REDIRECT_REFUSED = "keyvault_redirect_refused"
    KEYVAULT_TLS_UNTRUSTED = "keyvault_tls_untrusted"
    # The CA.
    CA_REJECTED = "ca_rejected"
    CA_AUTH_FAILED = "ca_auth_failed"
    CA_UNAVAILABLE = "ca_unavailable"
    CA_BAD_ANSWER = "ca_bad_answer"
    CA_REDIRECT_REFUSED = "ca_redirect_refused"
    CA_TLS_UNTRUSTED = "ca_tls_untrusted"
    CA_URL_REFUSED = "ca_url_refused"
    DENIED = "denied"
    UNKNOWN_REFERENCE = "unknown_reference"
    # Verification of the CA's answer (docs/verification.md).
    UNPARSABLE_CERTIFICATE = "unparsable_certificate"
    UNPARSABLE_CSR = "unparsable_csr"
    KEY_MISMATCH = "key_mismatch"
    LEAF_NOT_END_ENTITY = "leaf_not_end_entity"
    UNEXPECTED_NAMES = "unexpected_names"
    UNEXPECTED_USAGE = "unexpected_usage"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    VALIDITY_TOO_LONG = "validity_too_long"
    UNKNOWN_CRITICAL_EXTENSION = "unknown_critical_extension"
    CHAIN_INVALID = "chain_invalid"
    UNTRUSTED_ISSUER = "untrusted_issuer"
    VERIFICATION_FAILED = "verification_failed"
    # After the merge, and the sweep's alarms.
    DELIVERY_DEAD_LETTERED = "delivery_dead_lettered"
    EXPIRY_AT_RISK = "expiry_at_risk"
    JOURNAL_UNAVAILABLE = "journal_unavailable"
    # Observe mode: what the app would have done (status ``skipped``), and a failure streak that ended.
    WOULD_RENEW = "would_renew"
    RECOVERED = "recovered"
    # The rollout of a merged version to the services that present it (docs/targets.md).
    ROLLOUT_COMPLETE = "rollout_complete"
    ROLLOUT_STALLED = "rollout_stalled"
    TARGET_PUSH_FAILED = "target_push_failed"
    VERSION_PINNED = "version_pinned"
    REVOKED = "revoked"
    REVOCATION_FAILED = "revocation_failed"
    # Fleet fan-out through the Storage queue.
    QUEUE_MESSAGE_POISONED = "queue_message_poisoned"
    # What nothing more specific describes.
    TRANSIENT_ERROR = "transient_error"
    PERMANENT_ERROR = "permanent_error"
    INTERNAL_ERROR = "internal_error"

    @classmethod
    def of(cls, reason: str, *, retryable: bool) -> tuple[Reason, str | None]:
        """The closed reason for an error's own ``reason``, and the detail to keep in the message (or ``None``)."""
        try:
            return cls(reason), None
        except ValueError:
            pass
        family = _FAMILIES.get(reason)
        if family is None and reason.startswith(_FAMILY_PREFIXES):
            family = Reason.CA_UNAVAILABLE if retryable else Reason.CA_REJECTED
        if family is None:
            family = Reason.TRANSIENT_ERROR if retryable else Reason.PERMANENT_ERROR
        return family, reason


# Adapters' and shells' own reasons, by family; the detail stays in the message.
_FAMILIES: dict[str, Reason] = {
    **dict.fromkeys(
        (
            "csr_invalid",
            "csr_rejected",
            "ca_refused",
            "permission_denied",
            "unknown_role",
            "unsupported_key_usage",
            "unsupported_eku",
            "certificate_invalid",
            "ca_expired",
            "cfssl_rejected",
            "cfssl_csr_rejected",
            "cfssl_policy_violation",
            "acme_authorization_failed",
            "acme_order_invalid",
            "acme_order_not_finalized",
            "dns_rejected",
            "dns_zone_not_found",
            "dns_name_outside_zone",
        ),
        Reason.CA_REJECTED,
    ),
    **dict.fromkeys(
        (
            "auth_failed",
            "cfssl_unauthorized",
            "acme_account_does_not_exist",
            "dns_unauthorized",
            "dns_credential_unavailable",
        ),
        Reason.CA_AUTH_FAILED,
    ),
    **dict.fromkeys(
        (
            "ca_unreachable",
            "cfssl_unreachable",
            "cfssl_unavailable",
            "cfssl_timeout",
            "acme_unreachable",
            "acme_unavailable",
            "acme_timeout",
            "acme_validation_timeout",
            "acme_bad_nonce",
            "approval_store_unavailable",
            "auth_unavailable",
            "dns_unreachable",
            "dns_unavailable",
            "dns_concurrent_update",
            "throttled",
            "pending_operation_changed",
        ),
        Reason.CA_UNAVAILABLE,
    ),
    **dict.fromkeys(
        ("bad_ca_answer", "cfssl_bad_answer", "acme_bad_answer", "acme_protocol_error", "ari_bad_window"),
        Reason.CA_BAD_ANSWER,
    ),
    **dict.fromkeys(("acme_url_refused",), Reason.CA_URL_REFUSED),
    **dict.fromkeys(("dns_redirect_refused", "topic_redirect_refused"), Reason.CA_REDIRECT_REFUSED),
    **dict.fromkeys(("dns_tls_untrusted",), Reason.CA_TLS_UNTRUSTED),
    **dict.fromkeys(("pending_operation_not_mergeable",), Reason.NO_PENDING_OPERATION),
}
# Families of reasons an adapter made up that are not in the tables: by the prefix it uses.
_FAMILY_PREFIXES = ("acme_", "cfssl_", "dns_", "vault_", "ejbca_", "est_", "adcs_", "ca_")

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
        permanent: retrying cannot help (a refused configuration, a target that pins a version): dead-letter now.
        retry_after_seconds: how long the destination asked us to wait before the next attempt, if it did.
    """

    endpoint: str
    webhook_id: str
    delivered: bool
    attempts: int
    status_code: int | None
    error: str | None
    permanent: bool = False
    retry_after_seconds: float | None = None


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

    def __post_init__(self) -> None:
        # The set is closed here, wherever an outcome is built: an unknown reason is folded into its family.
        reason, detail = Reason.of(self.reason, retryable=self.retryable)
        object.__setattr__(self, "reason", reason)
        if detail is not None:
            object.__setattr__(self, "message", f"{self.message} ({detail})")


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


# An outbox endpoint's kind prefix (renewal.shells.senders) → how the outcome names what it sent; webhooks and the
# outcome topic (bare endpoint names) are "webhooks", as before the other kinds existed.
_DELIVERY_LABELS = {"target": "targets", "notify": "notifications", "revoke": "revocations"}


def delivery_groups(deliveries: tuple[Delivery, ...]) -> list[tuple[str, tuple[Delivery, ...]]]:
    """``deliveries`` by what they are: ``webhooks``, ``targets``, ``notifications``, ``revocations`` (in that
    order, only those present)."""
    groups: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        kind, sep, _ = delivery.endpoint.partition(":")
        label = _DELIVERY_LABELS.get(kind, "webhooks") if sep else "webhooks"
        groups.setdefault(label, []).append(delivery)
    order = ["webhooks", *_DELIVERY_LABELS.values()]
    return [(label, tuple(groups[label])) for label in order if label in groups]


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
    for label, deliveries in delivery_groups(outcome.deliveries):
        delivered = sum(1 for delivery in deliveries if delivery.delivered)
        pairs.append((f"{label}_delivered", f"{delivered}/{len(deliveries)}"))
        failed = [f"{d.endpoint}: {d.error or d.status_code}" for d in deliveries if not d.delivered]
        if failed:
            pairs.append((f"{label}_failed", "; ".join(failed)))
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
