"""The one protocol every notifier kind implements, and the notice it renders.

A kind (``teams``, ``slack``, ``email``) is one module with one class: ``render`` turns a ``Notice`` into the
message that kind sends (pure, so tests can read it), ``send`` sends it once. ``send`` says what went wrong by
the error's type (``RetryableError``, with ``retry_after`` when the service said when; ``PermanentError`` when
retrying cannot help); ``NotifierSender`` turns that into the outbox's ``Delivery``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from renewal.errors import PermanentError

__all__ = ["Channel", "Notice"]

_TITLES = {
    "renewed": "Certificate renewed",
    "failed": "Renewal failed",
    "at_risk": "Expiry at risk",
    "dead_letter": "Delivery given up",
    "recovered": "Renewal recovered",
    "rollout_complete": "Rollout complete",
    "rollout_stalled": "Rollout stalled",
    "would_renew": "Would renew (observe mode)",
}
# How loud each kind is, in the words Adaptive Cards use for colours.
_SEVERITY = {
    "renewed": "good",
    "recovered": "good",
    "rollout_complete": "good",
    "failed": "attention",
    "at_risk": "attention",
    "dead_letter": "attention",
    "rollout_stalled": "warning",
    "would_renew": "default",
}
_MESSAGE_MAX = 1000
# A line break in a name would end an e-mail header or forge a line in a card: the stored row is text from a table.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """What one notification says, read back from its outbox row.

    Attributes:
        notifier: the notifier's name.
        webhook_id: the outbox row's id (the same on every attempt; e-mail uses it for the ``Message-ID``).
        kind: the kind of news (``OUTCOME_KINDS``).
        status: the outcome's status.
        reason: the outcome's machine reason.
        message: the outcome's human message (already scrubbed by the flow).
        vault_name: the vault.
        certificate_name: the certificate.
        vault_url: the vault's URL, if known.
        ca_profile: the CA profile, if one was chosen.
        previous_version: the version being replaced, if known.
        new_version: the version created, if any.
        trigger: what started the renewal.
        expires_on: when the certificate the news is about expires (ISO 8601), if known.
        renews_from: when its renewal window opens (ISO 8601), if known.
        queued_at: when the notification was queued (ISO 8601).
    """

    notifier: str
    webhook_id: str
    kind: str
    status: str
    reason: str
    message: str
    vault_name: str
    certificate_name: str
    vault_url: str | None = None
    ca_profile: str | None = None
    previous_version: str | None = None
    new_version: str | None = None
    trigger: str | None = None
    expires_on: str | None = None
    renews_from: str | None = None
    queued_at: str | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, object], *, notifier: str, webhook_id: str) -> Notice:
        """Read a row's payload (as ``routing.notifications_for`` writes it).

        Raises:
            PermanentError: reason ``notify_bad_payload``, the payload lacks what every notice needs.
        """

        def text(key: str) -> str | None:
            value = payload.get(key)
            return _CONTROL.sub(" ", value) if isinstance(value, str) and value else None

        required = {key: text(key) for key in ("kind", "status", "reason", "vault_name", "certificate_name")}
        missing = sorted(key for key, value in required.items() if value is None)
        if missing or required["kind"] not in _TITLES:
            raise PermanentError(
                f"the stored notification lacks {', '.join(missing) or 'a known kind'}", reason="notify_bad_payload"
            )
        return cls(
            notifier=notifier,
            webhook_id=webhook_id,
            kind=str(required["kind"]),
            status=str(required["status"]),
            reason=str(required["reason"]),
            message=(text("message") or "")[:_MESSAGE_MAX],
            vault_name=str(required["vault_name"]),
            certificate_name=str(required["certificate_name"]),
            vault_url=text("vault_url"),
            ca_profile=text("ca_profile"),
            previous_version=text("previous_version"),
            new_version=text("new_version"),
            trigger=text("trigger"),
            expires_on=text("expires_on"),
            renews_from=text("renews_from"),
            queued_at=text("queued_at"),
        )

    @property
    def title(self) -> str:
        """One line naming the news and the certificate: ``Renewal failed: web in kv1``."""
        return f"{_TITLES[self.kind]}: {self.certificate_name} in {self.vault_name}"

    @property
    def severity(self) -> str:
        """``good``, ``attention``, ``warning`` or ``default``."""
        return _SEVERITY[self.kind]

    @property
    def certificate_id(self) -> str | None:
        """The Key Vault id of the version the news is about (of the certificate when no version is known)."""
        if not self.vault_url:
            return None
        version = self.new_version or self.previous_version
        base = f"{self.vault_url.rstrip('/')}/certificates/{self.certificate_name}"
        return f"{base}/{version}" if version else base

    def facts(self) -> list[tuple[str, str]]:
        """The notice's facts, as (label, value) pairs in reading order; unknown ones are left out."""
        pairs = [
            ("Vault", self.vault_name),
            ("Certificate", self.certificate_name),
            ("Status", self.status),
            ("Reason", self.reason),
            ("Expires", self.expires_on),
            ("Renewal window opens", self.renews_from),
            ("Previous version", self.previous_version),
            ("New version", self.new_version),
            ("CA profile", self.ca_profile),
            ("Trigger", self.trigger),
        ]
        return [(label, value) for label, value in pairs if value]


class Channel(Protocol):
    """One notifier kind, built for one notifier with its secret: renders a notice and sends it once."""

    def render(self, notice: Notice) -> object:
        """The message this kind sends for ``notice`` (a JSON body, an e-mail)."""
        ...

    def send(self, notice: Notice) -> int:
        """Send ``notice`` once; return the service's success code (HTTP status, SMTP reply code).

        Raises:
            RetryableError: a later attempt may succeed (``retry_after`` when the service said when).
            PermanentError: retrying cannot help (refused, gone, misconfigured, untrusted TLS).
        """
        ...
