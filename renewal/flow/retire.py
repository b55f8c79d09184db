"""Retire the superseded certificate: revoke it at the CA, then disable its Key Vault version and tag it
(docs/ca/revocation.md).

Opt-in per CA profile (``revoke_superseded``). A retirement is an outbox row, ``revoke:<profile>``, queued only
once every target of the certificate was *seen* serving the new version (``renewal.flow.rollout``), or, for a
certificate with no deployment target, queued with the merge to become due ``retire_grace_hours`` later. So it is
retried with backoff like any delivery, and a revocation that cannot be done ends loud: dead-lettered, with a
``revocation_failed`` outcome. ``RevokeSender`` checks the rollout again before it revokes anything: a row that
arrives early (or was queued by mistake) waits; it never revokes a certificate a target may still serve.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from renewal.ca import CAProfile, RevokingCAAdapter
from renewal.ca._options import retirement_options
from renewal.errors import PermanentError, RenewalError, RetryableError
from renewal.flow.deliveries import queue_for
from renewal.outcome import Delivery, Outcome, Reason, log_outcome
from renewal.pure.rollout import progress_of
from renewal.shells.journal import OutboxItem

if TYPE_CHECKING:
    from renewal.flow.runtime import Runtime
    from renewal.shells.rollouts import RolloutStore

__all__ = ["REVOKED_TAG", "REVOKE_KIND", "RevokeSender", "queue_retirement", "retires"]

logger = logging.getLogger("renewal")

REVOKE_KIND = "revoke"
REVOKED_TAG = "renewal-revoked"
_NAMESPACE = uuid.UUID("0b6f3d0e-3c55-4a86-9f6e-6a0c2f4b7d21")


def retires(runtime: Runtime, profile_name: str | None) -> tuple[bool, float]:
    """Whether the CA profile opted in to retiring superseded certificates, and its grace period in hours.

    Raises:
        ConfigurationError: the profile's retirement options are malformed, or it opts in with an adapter that
            cannot revoke.
    """
    profile = runtime.settings.ca_profiles.get(profile_name or "")
    if profile is None:
        return False, 0.0
    revokes = isinstance(runtime.adapter(profile), RevokingCAAdapter)
    options = retirement_options(profile, runtime.settings.environ, revokes=revokes)
    return options.revoke_superseded, options.retire_grace_hours


def queue_retirement(
    *,
    vault_name: str,
    vault_url: str,
    certificate_name: str,
    new_version: str,
    previous_version: str,
    ca_profile: str,
    targets: tuple[str, ...],
    due: datetime,
) -> OutboxItem:
    """The ``revoke:<profile>`` outbox row retiring ``previous_version``, due at ``due``.

    ``targets`` are the targets the new version was rolled out to (none: the grace period stood in for them); the
    sender checks each was seen serving it. The row's age for the maximum-age rule counts from ``due``.
    """
    key = f"{vault_name}/{certificate_name}/{new_version}/retire/{previous_version}".lower()
    payload = {
        "vault_name": vault_name,
        "vault_url": vault_url,
        "certificate_name": certificate_name,
        "version": new_version,
        "previous_version": previous_version,
        "ca_profile": ca_profile,
        "targets": list(targets),
        "due": due.isoformat(),
    }
    moment = due.timestamp()
    return OutboxItem(
        vault_name=vault_name,
        webhook_id="msg_" + uuid.uuid5(_NAMESPACE, key).hex,
        endpoint=f"{REVOKE_KIND}:{ca_profile}",
        certificate_name=certificate_name,
        version=new_version,
        payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
        created_at=moment,
        next_attempt_at=moment,
    )


class RevokeSender:
    """The ``OutboxSender`` for ``revoke:`` rows: revoke the superseded certificate, then disable and tag its
    Key Vault version.

    Safe to repeat: an adapter's ``revoke`` succeeds for a certificate already revoked, and a version already
    tagged ``renewal-revoked`` is only disabled (a crash between the two steps resumes at the second).

    Args:
        runtime: the settings, Key Vault clients, CA adapters, journal and clock (its own ``senders`` unused).
        rollouts: the rollout rows, to confirm the new version is served before anything is revoked.
    """

    def __init__(self, runtime: Runtime, rollouts: RolloutStore) -> None:
        self._runtime = runtime
        self._rollouts = rollouts

    def send(self, item: OutboxItem) -> Delivery:
        """Retire the version the row names; never raises for a CA or a vault that fails."""
        try:
            payload: Mapping[str, Any] = json.loads(item.payload)
            previous = str(payload["previous_version"])
            profile_name = str(payload["ca_profile"])
            due = datetime.fromisoformat(str(payload["due"]))
        except (ValueError, KeyError, TypeError):
            return self._failed(item, {}, PermanentError("the stored retirement is malformed"))
        now = self._runtime.clock()
        if now < due:
            wait = (due - now).total_seconds()
            return Delivery(item.endpoint, item.webhook_id, False, 0, None, "not due yet", retry_after_seconds=wait)
        try:
            waiting = self._not_confirmed(item, payload)
            if waiting is not None:
                # Not an error: the rollout goes on; the sweep offers the row again.
                return Delivery(item.endpoint, item.webhook_id, False, 0, None, waiting)
            profile = self._profile(profile_name)
            adapter = self._runtime.adapter(profile)
            if not isinstance(adapter, RevokingCAAdapter):
                raise PermanentError(
                    f"CA profile {profile_name!r} uses adapter {profile.adapter}, which cannot revoke certificates",
                    reason="bad_configuration",
                )
            _retire(self._runtime, adapter, payload, previous=previous, now=now)
        except RenewalError as exc:
            return self._failed(item, payload, exc)
        self._announce(item, payload, Reason.REVOKED, f"version {previous} was revoked at the CA and disabled")
        return Delivery(item.endpoint, item.webhook_id, True, 1, None, None)

    def _not_confirmed(self, item: OutboxItem, payload: Mapping[str, Any]) -> str | None:
        """Why the retirement must wait, or ``None`` when every target was seen serving the new version."""
        expected = tuple(str(name) for name in payload.get("targets") or ())
        if not expected:
            return None
        rows = [
            row
            for row in self._rollouts.rollouts([item.vault_name])
            if row.certificate_name.lower() == item.certificate_name.lower() and row.version == item.version
        ]
        progress = progress_of(rows) if rows else None
        if progress is None or not progress.confirmed:
            return f"the new version {item.version} is not yet seen served by every target"
        return None

    def _profile(self, name: str) -> CAProfile:
        profile = self._runtime.settings.ca_profiles.get(name)
        if profile is None:
            raise PermanentError(f"CA profile {name!r} is no longer configured", reason="unknown_ca_profile")
        return profile

    def _failed(self, item: OutboxItem, payload: Mapping[str, Any], exc: RenewalError) -> Delivery:
        message = self._runtime.scrub(exc.message)
        permanent = not isinstance(exc, RetryableError)
        age_hours = (self._runtime.clock().timestamp() - item.created_at) / 3600
        if permanent or age_hours >= self._runtime.settings.webhook_max_age_hours:
            # The outbox dead-letters it now: say in its own words that the old certificate stays valid.
            self._announce(
                item,
                payload,
                Reason.REVOCATION_FAILED,
                f"version {payload.get('previous_version', '?')} could not be retired and stays valid: {message}",
                failed=True,
            )
        retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
        return Delivery(item.endpoint, item.webhook_id, False, 1, None, message, permanent, retry_after)

    def _announce(
        self, item: OutboxItem, payload: Mapping[str, Any], reason: Reason, message: str, *, failed: bool = False
    ) -> None:
        outcome = Outcome(
            status="failed" if failed else "renewed",
            reason=reason,
            message=message,
            vault_name=item.vault_name,
            certificate_name=item.certificate_name,
            ca_profile=str(payload.get("ca_profile") or "") or None,
            previous_version=str(payload.get("previous_version") or "") or None,
            new_version=item.version,
        )
        log_outcome(outcome)
        self._runtime.journal.add_outbox(
            queue_for(
                self._runtime.settings,
                outcome,
                verified=None,
                vault_url=str(payload.get("vault_url") or ""),
                tags={},
                now=self._runtime.clock(),
                occurrence=str(reason),
            )
        )


def _retire(
    runtime: Runtime, adapter: RevokingCAAdapter, payload: Mapping[str, Any], *, previous: str, now: datetime
) -> None:
    """Revoke ``previous`` at the CA (unless its version says it already was), then disable and tag it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from renewal.shells.keyvault import _translated

    vault_url, name = str(payload["vault_url"]), str(payload["certificate_name"])
    configured = {vault.url.rstrip("/").lower() for vault in runtime.settings.vaults.values()}
    if vault_url.rstrip("/").lower() not in configured:
        raise PermanentError(f"vault {vault_url} is no longer configured", reason="bad_configuration")
    client = runtime.keyvault.client_for(vault_url)
    with _translated(f"read version {previous[:40]} of {name}"):
        old = client.get_certificate_version(name, previous)
    if not old.cer:
        raise PermanentError(f"version {previous} of {name} holds no certificate", reason="certificate_not_found")
    tags = dict((old.properties.tags if old.properties else None) or {})
    if REVOKED_TAG not in tags:
        certificate = x509.load_der_x509_certificate(bytes(old.cer))
        adapter.revoke(certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"), reason="superseded")
        tags[REVOKED_TAG] = now.astimezone(UTC).isoformat(timespec="seconds")
    with _translated(f"disable version {previous[:40]} of {name}"):
        client.update_certificate_properties(name, previous, enabled=False, tags=tags)
    logger.info(
        "superseded version retired vault=%s certificate=%s version=%s revoked_at=%s",
        payload.get("vault_name"),
        name,
        previous,
        tags[REVOKED_TAG],
    )
