"""One renewal, step by step (DESIGN §1): decide, begin a version, CA, verify, merge, deploy, record."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from renewal.ca import CAAdapter, CAProfile, Issued, Pending, SigningRequest, adapter_for
from renewal.config import Settings
from renewal.errors import RenewalError, RetryableError
from renewal.intake import Ignored, RenewalRequest
from renewal.keyvault import (
    RENEWED_BY_VALUE,
    TAG_PREVIOUS_VERSION,
    TAG_RENEWED_BY,
    TAG_RENEWED_WITH_PROFILE,
    KeyVaultClients,
    MergedVersion,
    PendingVersion,
    StaticTokenCredential,
)
from renewal.outcome import Delivery, Outcome, log_outcome
from renewal.plan import Renew, Resume, Skip, decide
from renewal.verify import VerifiedCertificate, verify_issued
from renewal.webhooks import WebhookSender, build_payload, endpoints_for

__all__ = ["Runtime", "outcome_for_ignored", "renew"]

logger = logging.getLogger("renewal")


@dataclass
class Runtime:
    """Everything a renewal needs, built once per configuration and reused across invocations.

    Attributes:
        settings: the validated app settings.
        keyvault: one SDK client per vault, reused.
        webhooks: the deployment webhook sender.
        clock: the current time, tz-aware UTC (injected so tests control it).
    """

    settings: Settings
    keyvault: KeyVaultClients
    webhooks: WebhookSender
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _adapters: dict[str, CAAdapter] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Runtime:
        """Build the runtime the settings describe; keyword overrides replace parts (tests inject here)."""
        credential = StaticTokenCredential(settings.keyvault_static_token) if settings.keyvault_static_token else None
        parts: dict[str, Any] = {
            "settings": settings,
            "keyvault": KeyVaultClients(credential=credential, connection_verify=settings.keyvault_ca_bundle),
            "webhooks": WebhookSender(),
        }
        parts.update(overrides)
        return cls(**parts)

    def adapter(self, profile: CAProfile) -> CAAdapter:
        """Return the profile's CA adapter, created once.

        Raises:
            ConfigurationError: the profile's adapter or options are not usable.
        """
        adapter = self._adapters.get(profile.name)
        if adapter is None:
            adapter = self._adapters[profile.name] = adapter_for(profile, self.settings.environ)
        return adapter


def renew(request: RenewalRequest, runtime: Runtime) -> Outcome:
    """Run one renewal to its outcome, and record it (one log line).

    Permanent problems end in a ``failed`` outcome and are not raised.

    Raises:
        RetryableError: only after the outcome is recorded, when a transient failure may be helped by a
            redelivery of the event (DESIGN §2: redelivery is a bonus, never relied on).
    """
    started = time.monotonic()
    context = _Context(request=request)
    try:
        outcome = _renew(request, runtime, context)
    except RenewalError as exc:
        outcome = context.outcome("failed", exc.reason, exc.message)
        outcome = replace(outcome, duration_seconds=time.monotonic() - started)
        log_outcome(outcome, logger)
        if isinstance(exc, RetryableError) and request.trigger == "event_grid":
            raise
        return outcome
    outcome = replace(outcome, duration_seconds=time.monotonic() - started)
    log_outcome(outcome, logger)
    return outcome


def outcome_for_ignored(ignored: Ignored) -> Outcome:
    """Record an event the app acknowledges but does not act on."""
    outcome = Outcome(
        status="skipped",
        reason=ignored.reason,
        message=ignored.message,
        vault_name=ignored.vault_name,
        certificate_name=ignored.certificate_name,
    )
    log_outcome(outcome, logger)
    return outcome


@dataclass
class _Context:
    request: RenewalRequest
    ca_profile: str | None = None
    previous_version: str | None = None
    new_version: str | None = None
    deliveries: tuple[Delivery, ...] = ()

    def outcome(self, status: Any, reason: str, message: str) -> Outcome:
        # Oddities intake tolerated (an Id naming another host, say) stay visible in the record.
        notes = "; ".join(self.request.notes)
        return Outcome(
            status=status,
            reason=reason,
            message=f"{message} (note: {notes})" if notes else message,
            vault_name=self.request.vault_name,
            certificate_name=self.request.certificate_name,
            ca_profile=self.ca_profile,
            previous_version=self.previous_version,
            new_version=self.new_version,
            trigger=self.request.trigger,
            event_id=self.request.event_id,
            deliveries=self.deliveries,
        )


def _step(request: RenewalRequest, step: str, detail: str) -> None:
    # Steps are DEBUG: the one INFO-or-above line per renewal is the outcome's (STYLE §10).
    logger.debug("step=%s vault=%s certificate=%s %s", step, request.vault_name, request.certificate_name, detail)


def _renew(request: RenewalRequest, runtime: Runtime, context: _Context) -> Outcome:
    settings = runtime.settings
    vault = runtime.keyvault.vault(request.vault_url)
    snapshot = vault.read(request.certificate_name)
    state = snapshot.state
    _step(request, "read", f"version={state.version} issuer={state.issuer_name} expires={state.expires_on}")
    plan = decide(request, state, profiles=settings.ca_profiles, default_profile=settings.default_ca_profile)
    _step(request, "decide", type(plan).__name__.lower())
    if isinstance(plan, Skip):
        context.previous_version = state.version
        return context.outcome("skipped", plan.reason, plan.message)

    profile = plan.profile
    context.ca_profile = profile.name
    adapter = runtime.adapter(profile)

    pending: PendingVersion
    if isinstance(plan, Resume):
        pending = vault.pending_version(request.certificate_name)
        tags = dict(state.tags)
    else:
        assert isinstance(plan, Renew)
        context.previous_version = state.version
        tags = _new_version_tags(state.tags, profile=profile.name, previous_version=state.version)
        pending = vault.begin_version(snapshot, tags=tags)
    context.previous_version = tags.get(TAG_PREVIOUS_VERSION, context.previous_version)
    _step(request, "begin_version", f"resumed={pending.resumed} csr_bytes={len(pending.csr_der)}")

    answer = adapter.submit(
        SigningRequest(
            csr_der=pending.csr_der,
            vault_name=request.vault_name,
            certificate_name=request.certificate_name,
            validity_months=state.validity_months,
            key_usage=state.key_usage,
            ekus=state.ekus,
        )
    )
    _step(request, "ca_submit", f"profile={profile.name} answer={type(answer).__name__.lower()}")
    if isinstance(answer, Pending):
        return context.outcome(
            "pending",
            "ca_pending",
            f"the CA deferred issuance: request {answer.reference[:80]} awaits the CA"
            + (f", retry after {answer.retry_after:g} s" if answer.retry_after is not None else ""),
        )
    assert isinstance(answer, Issued)
    verified = verify_issued(pending.csr_der, answer, now=runtime.clock())
    _step(request, "verify", f"serial={verified.serial_number} not_after={verified.not_after.isoformat()}")
    merged = vault.merge(request.certificate_name, verified, tags=tags)
    context.new_version = merged.version
    _step(request, "merge", f"new_version={merged.version}")
    context.deliveries = _deploy(runtime, request, context, verified, merged, tags)
    delivered = sum(d.delivered for d in context.deliveries)
    message = f"new version {merged.version} merged; webhooks delivered {delivered}/{len(context.deliveries)}"
    if pending.resumed:
        message += " (resumed a renewal already under way)"
    return context.outcome("renewed", "renewed", message)


def _new_version_tags(current: Mapping[str, str], *, profile: str, previous_version: str | None) -> dict[str, str]:
    tags = dict(current)
    tags[TAG_RENEWED_BY] = RENEWED_BY_VALUE
    tags[TAG_RENEWED_WITH_PROFILE] = profile
    if previous_version:
        tags[TAG_PREVIOUS_VERSION] = previous_version
    return tags


def _deploy(
    runtime: Runtime,
    request: RenewalRequest,
    context: _Context,
    verified: VerifiedCertificate,
    merged: MergedVersion,
    tags: Mapping[str, str],
) -> tuple[Delivery, ...]:
    endpoints = endpoints_for(runtime.settings.webhooks, tags)
    if not endpoints:
        return ()
    renewed = context.outcome("renewed", "renewed", f"new version {merged.version} merged")
    payload = build_payload(
        renewed,
        verified=verified,
        vault_url=request.vault_url,
        now=runtime.clock(),
        event_id=str(uuid.uuid4()),
    )
    deliveries = []
    for endpoint in endpoints:
        # One id per (version, endpoint): a redelivery carries the same id so receivers can deduplicate.
        webhook_id = f"msg_{merged.version}_{endpoint.name}"
        deliveries.append(runtime.webhooks.deliver(endpoint, payload, webhook_id=webhook_id))
    return tuple(deliveries)
