"""One renewal, step by step (DESIGN §1), resumable at every step through the journal (DESIGN §2).

Under the certificate's claim in the journal: read Key Vault, decide, begin (or resume) the version, ask the CA
(or poll it, or reuse its recorded answer), verify, merge and queue the deliveries in one journal transaction,
deliver, record. A crash between any two steps leaves a record from which the next event or the sweep goes on:

- a pending operation in Key Vault → its CSR is reused (Key Vault's 409, or the placeholder);
- a CA reference recorded → it is polled, not resubmitted;
- the CA's answer recorded → it is merged without asking the CA again;
- a version merged (even if the journal missed it) → the deliveries are queued and sent;
- a delivery recorded as sent → it is not sent again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal.ca import (
    CAAdapter,
    CAProfile,
    Issued,
    Pending,
    RenewalInfoSource,
    ReplacingCAAdapter,
    SigningRequest,
    adapter_for,
)
from renewal.config import Settings
from renewal.deliveries import Deliverer, queue_failure, queue_for
from renewal.errors import RenewalError, RetryableError, VerificationError
from renewal.intake import Ignored, RenewalRequest
from renewal.journal import ClaimLostError, Journal, OutboxItem, RenewalRecord, table_client_from_environ
from renewal.keyvault import (
    TAG_PREVIOUS_VERSION,
    TAG_RENEWED_BY,
    TAG_RENEWED_WITH_PROFILE,
    CertificateSnapshot,
    KeyVaultClients,
    PendingVersion,
    StaticTokenCredential,
)
from renewal.outcome import Delivery, Outcome, log_outcome, to_dict
from renewal.plan import CertificateState, Plan, Renew, Resume, Skip, decide, profile_for
from renewal.redact import SecretScrubber, scrub
from renewal.tags import RENEWED_BY_VALUE
from renewal.verify import VerifiedCertificate, describe, verify_issued
from renewal.webhooks import WebhookSender
from renewal.window import WindowRule

__all__ = ["Runtime", "outcome_for_ignored", "renew"]

logger = logging.getLogger("renewal")

# Retries of a transient failure, from the sweep: RENEWAL_RETRY_SECONDS doubling up to 6 h, with ±20 % jitter,
# never past expiry.
_LONGEST_RETRY = timedelta(hours=6)
# Retries aim to finish this long before the certificate expires.
_EXPIRY_MARGIN = timedelta(hours=1)


_SOMEONE_ELSE = "another worker holds this certificate's renewal; it will finish it"


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Runtime:
    """Everything a renewal needs, built once per configuration and reused across invocations.

    Attributes:
        settings: the validated app settings.
        keyvault: one SDK client per vault, reused.
        journal: the renewal records and the outbox.
        webhooks: the deployment webhook sender.
        topic: the outcome topic publisher, if configured.
        clock: the current time, tz-aware UTC (injected so tests control it).
        worker_id: who holds claims taken by this runtime.
        checkpoint: called after each step with its name (``created``, ``submitted``, ``merged``,
            ``delivered``); a no-op in production, a crash point in the crash-resume tests.
        rng: jitter source.
    """

    settings: Settings
    keyvault: KeyVaultClients
    journal: Journal
    webhooks: WebhookSender
    topic: Any = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    worker_id: str = field(default_factory=_worker_id)
    checkpoint: Callable[[str], None] = field(default=lambda step: None)
    rng: random.Random = field(default_factory=random.Random)
    _adapters: dict[str, CAAdapter] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Runtime:
        """Build the runtime the settings describe; keyword overrides replace parts (tests inject here).

        Raises:
            ConfigurationError: no storage for the journal.
        """
        static = settings.keyvault_static_token
        credential = StaticTokenCredential(static) if static else None
        parts: dict[str, Any] = {
            "settings": settings,
            "keyvault": KeyVaultClients(
                credential=credential,
                connection_verify=settings.keyvault_ca_bundle,
                timeout_seconds=settings.keyvault_timeout_seconds,
            ),
            "webhooks": WebhookSender(),
        }
        parts.update(overrides)
        if "journal" not in parts:
            clock = parts.get("clock") or (lambda: datetime.now(UTC))
            parts["journal"] = Journal(
                table_client_from_environ(settings.environ, settings.journal_table),
                clock=lambda: clock().timestamp(),
                claim_seconds=settings.claim_seconds,
            )
        if "topic" not in parts and settings.outcome_topic_endpoint:
            from renewal.keyvault import is_loopback_url
            from renewal.topic import OutcomeTopic

            # The static token is for local emulators: a topic elsewhere gets DefaultAzureCredential (None).
            local_topic = is_loopback_url(settings.outcome_topic_endpoint)
            parts["topic"] = OutcomeTopic(
                settings.outcome_topic_endpoint,
                key=settings.outcome_topic_key,
                credential=credential if local_topic else None,
                connection_verify=settings.keyvault_ca_bundle,
            )
        SecretScrubber.install(settings.secret_values)
        return cls(**parts)

    def scrub(self, text: str) -> str:
        """``text`` fit to show: without PEM blocks, control characters, credentials or any configured secret."""
        return scrub(text, self.settings.secret_values)

    def adapter(self, profile: CAProfile) -> CAAdapter:
        """Return the profile's CA adapter, created once.

        Raises:
            ConfigurationError: the profile's adapter or options are not usable.
        """
        adapter = self._adapters.get(profile.name)
        if adapter is None:
            adapter = self._adapters[profile.name] = adapter_for(profile, self.settings.environ)
        return adapter

    def deliverer(self) -> Deliverer:
        """The outbox sender for this runtime."""
        return Deliverer(
            settings=self.settings,
            journal=self.journal,
            webhooks=self.webhooks,
            topic=self.topic,
            clock=lambda: self.clock().timestamp(),
            rng=self.rng,
            checkpoint=self.checkpoint,
        )


def renew(request: RenewalRequest, runtime: Runtime) -> Outcome:
    """Run one renewal to its outcome under the certificate's claim, and record it (one log line).

    Permanent problems end in a ``failed`` outcome and are not raised. When another worker holds the claim, the
    outcome is ``skipped`` with reason ``renewal_in_progress``: that worker (or the sweep) finishes the renewal.

    Raises:
        RetryableError: only after the outcome is recorded, when a transient failure may be helped by a
            redelivery of the event (DESIGN §2: redelivery is a bonus, never relied on).
    """
    started = time.monotonic()
    context = _Context(request=request)
    claim: _Claim | None = None
    try:
        record = runtime.journal.claim(request.vault_name, request.certificate_name, runtime.worker_id)
        if record is None:
            outcome = context.outcome("skipped", "renewal_in_progress", _SOMEONE_ELSE)
        else:
            claim = _Claim(runtime.journal, record)
            outcome = _renew(request, runtime, context, claim)
    except ClaimLostError:
        # Another worker took the record over (our claim lapsed): it owns the renewal now, nothing failed.
        outcome = replace(
            context.outcome("skipped", "renewal_in_progress", _SOMEONE_ELSE),
            duration_seconds=time.monotonic() - started,
        )
        log_outcome(outcome, logger)
        return outcome
    except RenewalError as exc:
        # CA and service text may echo what it was sent: scrubbed before the journal, the log or an event.
        message = runtime.scrub(exc.message)
        outcome = context.outcome("failed", exc.reason, message)
        outcome = replace(
            outcome, duration_seconds=time.monotonic() - started, retryable=isinstance(exc, RetryableError)
        )
        if claim is not None:
            _record_failure(runtime, claim, exc, outcome)
        log_outcome(outcome, logger)
        if isinstance(exc, RetryableError) and request.trigger == "event_grid":
            # The host logs what it is raised, chain included: only the scrubbed message leaves.
            raise RetryableError(message, reason=exc.reason, retry_after=exc.retry_after) from None
        return outcome
    outcome = replace(outcome, duration_seconds=time.monotonic() - started)
    if claim is not None:
        _release(claim, outcome, now=runtime.clock())
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
class _Claim:
    """The claimed record, kept current as each step saves it (the etag moves with every write)."""

    journal: Journal
    record: RenewalRecord

    def save(self, record: RenewalRecord, **kwargs: Any) -> RenewalRecord:
        self.record = self.journal.save(record, **kwargs)
        return self.record


@dataclass
class _Context:
    request: RenewalRequest
    ca_profile: str | None = None
    previous_version: str | None = None
    new_version: str | None = None
    deliveries: tuple[Delivery, ...] = ()

    def outcome(self, status: Any, reason: str, message: str, *, renews_from: datetime | None = None) -> Outcome:
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
            renews_from=renews_from,
        )


def _step(request: RenewalRequest, step: str, detail: str) -> None:
    # Steps are DEBUG: the one INFO-or-above line per renewal is the outcome's (STYLE §10).
    logger.debug("step=%s vault=%s certificate=%s %s", step, request.vault_name, request.certificate_name, detail)


def _renew(request: RenewalRequest, runtime: Runtime, context: _Context, claim: _Claim) -> Outcome:
    settings = runtime.settings
    vault = runtime.keyvault.vault(request.vault_url)
    snapshot = vault.read(request.certificate_name)
    state = snapshot.state
    record = claim.record
    _step(request, "read", f"version={state.version} issuer={state.issuer_name} journal_step={record.step}")

    if record.step == "merged" or _merged_unrecorded(record, snapshot):
        return _finish_merged(request, runtime, context, claim, snapshot)

    _warn_if_shorter_than_the_sweep_allows(request, runtime, state)
    plan = _decide(request, runtime, snapshot, record)
    _step(request, "decide", type(plan).__name__.lower())
    if isinstance(plan, Skip):
        context.previous_version = state.version
        if plan.reason == "already_renewed" and record.under_way:
            # Renewed meanwhile by someone else (a person, another deployment): nothing left to resume.
            claim.save(replace(record, step="done", next_attempt_at=None))
        return context.outcome("skipped", plan.reason, plan.message, renews_from=plan.renews_from)

    profile = plan.profile
    context.ca_profile = profile.name
    adapter = runtime.adapter(profile)

    pending: PendingVersion
    if isinstance(plan, Resume):
        pending = vault.pending_version(request.certificate_name)
        tags = dict(state.tags)
    else:
        assert isinstance(plan, Renew)
        tags = _new_version_tags(state.tags, profile=profile.name, previous_version=state.version)
        pending = vault.begin_version(snapshot, tags=tags)
    csr_sha256 = hashlib.sha256(pending.csr_der).hexdigest()
    previous_version = tags.get(TAG_PREVIOUS_VERSION) or record.previous_version or state.version
    context.previous_version = previous_version
    if record.csr_sha256 != csr_sha256 or record.step in ("idle", "done"):
        # A new CSR: whatever the journal knew about an older one (CA reference, answer) no longer applies.
        expires_on = state.expires_on or request.expires_on
        record = claim.save(
            replace(
                record,
                step="begun",
                ca_profile=profile.name,
                previous_version=previous_version,
                request_id=pending.request_id,
                csr_sha256=csr_sha256,
                ca_reference=None,
                issued_leaf_pem=None,
                issued_chain_pem=None,
                new_version=None,
                expires_on=expires_on.timestamp() if expires_on else record.expires_on,
            )
        )
    _step(request, "begin_version", f"resumed={pending.resumed} journal_step={record.step}")
    runtime.checkpoint("created")

    # ACME ARI: an order that names the certificate it replaces (RFC 9773 §5), when the current one is known.
    previous_pem = _pem(snapshot.certificate_der) if isinstance(plan, Renew) and snapshot.certificate_der else None
    answer = _ask_ca(
        request,
        adapter,
        claim,
        pending,
        policy=(state.validity_months, state.key_usage, state.ekus),
        previous_leaf_pem=previous_pem,
    )
    _step(request, "ca", f"profile={profile.name} answer={type(answer).__name__.lower()}")
    if isinstance(answer, Pending):
        now = runtime.clock()
        wait = timedelta(seconds=answer.retry_after or settings.ca_poll_seconds)
        claim.save(
            replace(
                claim.record,
                step="pending_ca",
                ca_reference=answer.reference,
                next_attempt_at=_within_budget(now + wait, claim.record, now).timestamp(),
                last_reason="ca_pending",
                last_error=None,
            )
        )
        return context.outcome(
            "pending",
            "ca_pending",
            f"the CA deferred issuance: request {answer.reference[:80]} awaits the CA"
            + (f", retry after {answer.retry_after:g} s" if answer.retry_after is not None else ""),
        )
    runtime.checkpoint("submitted")

    anchors, replaced_leaf_der = _trust_for_verification(
        profile,
        settings.environ,
        vault.read_version_der,
        request.certificate_name,
        replaced_leaf_der=snapshot.certificate_der if isinstance(plan, Renew) else None,
        previous_version=previous_version,
    )
    try:
        verified = verify_issued(
            pending.csr_der,
            answer,
            now=runtime.clock(),
            validity_months=state.validity_months,
            ekus=state.ekus,
            replaced_leaf_der=replaced_leaf_der,
            anchors=anchors,
        )
    except VerificationError:
        # The CA's answer is unusable: forget it, so the next attempt asks the CA again.
        claim.save(replace(claim.record, step="begun", issued_leaf_pem=None, issued_chain_pem=None))
        raise
    _step(request, "verify", f"serial={verified.serial_number} not_after={verified.not_after.isoformat()}")
    merged = vault.merge(request.certificate_name, verified, tags=tags)
    context.new_version = merged.version
    _step(request, "merge", f"new_version={merged.version}")
    renewed = context.outcome("renewed", "renewed", f"new version {merged.version} merged")
    outbox = queue_for(
        settings, renewed, verified=verified, vault_url=request.vault_url, tags=tags, now=runtime.clock()
    )
    claim.save(replace(claim.record, step="merged", new_version=merged.version), outbox=outbox)
    runtime.checkpoint("merged")
    return _deliver_and_finish(request, runtime, context, claim, resumed=pending.resumed)


def _decide(request: RenewalRequest, runtime: Runtime, snapshot: CertificateSnapshot, record: RenewalRecord) -> Plan:
    """The plan for this certificate now; for an early event, the CA's suggestion (ACME ARI) is asked once."""
    settings = runtime.settings
    state = snapshot.state
    done = record.step == "done" and record.previous_version is not None
    decision = partial(
        decide,
        request,
        state,
        profiles=settings.ca_profiles,
        default_profile=settings.default_ca_profile,
        now=runtime.clock(),
        window=WindowRule(fraction=settings.window_fraction, jitter=settings.window_jitter),
        renewed_versions=(record.previous_version,) if done and record.previous_version else (),
        resuming=record.under_way and record.previous_version == state.version and record.csr_sha256 is not None,
        manual_cooldown=timedelta(seconds=settings.manual_cooldown_seconds),
        sweep_lead=settings.sweep_interval / 2 if settings.sweep_interval else timedelta(0),
    )
    plan = decision()
    if not (isinstance(plan, Skip) and plan.reason == "not_due" and request.trigger == "event_grid"):
        return plan
    profile = profile_for(state.tags, settings.ca_profiles, settings.default_ca_profile)
    adapter = runtime.adapter(profile) if profile is not None else None
    if not isinstance(adapter, RenewalInfoSource) or not snapshot.certificate_der:
        return plan
    window = adapter.suggested_window(_pem(snapshot.certificate_der))
    return decision(suggested_start=window[0]) if window is not None else plan


def _warn_if_shorter_than_the_sweep_allows(request: RenewalRequest, runtime: Runtime, state: CertificateState) -> None:
    """The sweep's cadence bounds how short a lifetime can be served: say so when a certificate lives shorter."""
    interval = runtime.settings.sweep_interval
    if interval is None or state.not_before is None or state.expires_on is None:
        return
    lifetime = state.expires_on - state.not_before
    if lifetime < interval * 4:
        logger.warning(
            "certificate lifetime shorter than four sweep intervals: vault=%s certificate=%s lifetime_hours=%.2f "
            "sweep_interval_minutes=%.1f; schedule the sweep at least every %.1f minutes (docs/short-lived.md)",
            request.vault_name,
            request.certificate_name,
            lifetime.total_seconds() / 3600,
            interval.total_seconds() / 60,
            lifetime.total_seconds() / 240,
        )


def _ask_ca(
    request: RenewalRequest,
    adapter: CAAdapter,
    claim: _Claim,
    pending: PendingVersion,
    *,
    policy: tuple[int | None, tuple[str, ...], tuple[str, ...]],
    previous_leaf_pem: str | None,
) -> Issued | Pending:
    """The CA's answer for this CSR: recorded earlier, polled, or asked for now (and recorded)."""
    record = claim.record
    if record.issued_leaf_pem:
        return Issued(record.issued_leaf_pem, _split_pem(record.issued_chain_pem))
    if record.ca_reference:
        answer = adapter.poll(record.ca_reference)
    else:
        claim.save(replace(record, step="submitting"))
        validity_months, key_usage, ekus = policy
        signing = SigningRequest(
            csr_der=pending.csr_der,
            vault_name=request.vault_name,
            certificate_name=request.certificate_name,
            validity_months=validity_months,
            key_usage=key_usage,
            ekus=ekus,
        )
        if previous_leaf_pem and isinstance(adapter, ReplacingCAAdapter):
            answer = adapter.submit_replacing(signing, previous_leaf_pem)
        else:
            answer = adapter.submit(signing)
    if isinstance(answer, Issued):
        claim.save(
            replace(
                claim.record,
                step="issued",
                ca_reference=None,
                issued_leaf_pem=answer.leaf_pem,
                issued_chain_pem="".join(answer.chain_pem),
            )
        )
    return answer


def _merged_unrecorded(record: RenewalRecord, snapshot: CertificateSnapshot) -> bool:
    """Key Vault holds the version this renewal merged, but the journal never heard (a crash right after merge)."""
    state = snapshot.state
    return (
        record.step in ("begun", "submitting", "issued", "pending_ca")
        and record.previous_version is not None
        and state.has_certificate
        and state.version != record.previous_version
        and state.tags.get(TAG_PREVIOUS_VERSION) == record.previous_version
    )


def _finish_merged(
    request: RenewalRequest, runtime: Runtime, context: _Context, claim: _Claim, snapshot: CertificateSnapshot
) -> Outcome:
    record = claim.record
    state = snapshot.state
    context.ca_profile = record.ca_profile
    context.previous_version = record.previous_version
    if record.step != "merged":
        context.new_version = state.version
        verified = _described(snapshot)
        renewed = context.outcome("renewed", "renewed", f"new version {state.version} merged")
        outbox = queue_for(
            runtime.settings,
            renewed,
            verified=verified,
            vault_url=request.vault_url,
            tags=state.tags,
            now=runtime.clock(),
        )
        claim.save(replace(record, step="merged", new_version=state.version), outbox=outbox)
        runtime.checkpoint("merged")
    else:
        context.new_version = record.new_version
    return _deliver_and_finish(request, runtime, context, claim, resumed=True)


def _deliver_and_finish(
    request: RenewalRequest, runtime: Runtime, context: _Context, claim: _Claim, *, resumed: bool
) -> Outcome:
    record = claim.record
    items = [
        item
        for item in runtime.journal.outbox([request.vault_name], certificate_name=request.certificate_name)
        if item.version == record.new_version and item.status == "pending"
    ]
    context.deliveries = runtime.deliverer().send(items)
    claim.save(
        replace(
            claim.record,
            step="done",
            attempts=0,
            next_attempt_at=None,
            last_reason=None,
            last_error=None,
            issued_leaf_pem=None,
            issued_chain_pem=None,
        )
    )
    delivered = sum(d.delivered for d in context.deliveries)
    message = f"new version {record.new_version} merged; webhooks delivered {delivered}/{len(context.deliveries)}"
    if resumed:
        message += " (resumed a renewal already under way)"
    return context.outcome("renewed", "renewed", message)


def _described(snapshot: CertificateSnapshot) -> VerifiedCertificate | None:
    if not snapshot.certificate_der:
        return None
    return describe(x509.load_der_x509_certificate(snapshot.certificate_der))


def _record_failure(runtime: Runtime, claim: _Claim, exc: RenewalError, outcome: Outcome) -> None:
    """Keep the failure in the record; a transient one gets a retry time within the expiry budget."""
    if isinstance(exc, ClaimLostError):
        return
    now = runtime.clock()
    record = claim.record
    attempts = record.attempts + 1
    next_attempt: float | None = None
    if isinstance(exc, RetryableError):
        first = timedelta(seconds=runtime.settings.retry_seconds)
        delay = min(first * 2 ** (attempts - 1), _LONGEST_RETRY) * runtime.rng.uniform(0.8, 1.2)
        if exc.retry_after:
            delay = max(delay, timedelta(seconds=exc.retry_after))
        next_attempt = _within_budget(now + delay, record, now).timestamp()
    step = record.step if record.step not in ("idle", "done") else "failed"
    failed = replace(
        record,
        step=step,
        attempts=attempts,
        next_attempt_at=next_attempt,
        last_reason=exc.reason,
        last_error=outcome.message[:500],
    )
    announcements = queue_failure(runtime.settings, outcome, now=now, occurrence=f"{record.csr_sha256}/{attempts}")
    _release(claim, outcome, failed, outbox=announcements, now=now)
    if announcements:
        queued = {item.webhook_id for item in announcements}
        stored = runtime.journal.outbox([record.vault_name], certificate_name=record.certificate_name)
        runtime.deliverer().send([item for item in stored if item.webhook_id in queued])


def _release(
    claim: _Claim,
    outcome: Outcome,
    record: RenewalRecord | None = None,
    *,
    outbox: Sequence[OutboxItem] = (),
    now: datetime,
) -> None:
    try:
        claim.journal.release((record or claim.record).with_outcome(_history_entry(outcome, now)), outbox=outbox)
    except ClaimLostError:
        logger.debug("claim of %s lost before release; the new holder owns the record", outcome.certificate_name)
    except RetryableError as exc:
        # The claim lapses by itself; the renewal's own outcome is what matters here.
        logger.debug("could not release the claim of %s: %s", outcome.certificate_name, exc.reason)


def _history_entry(outcome: Outcome, now: datetime) -> dict[str, object]:
    entry = to_dict(outcome)
    entry.pop("deliveries", None)
    entry["at"] = now.isoformat(timespec="seconds")
    return entry


def _within_budget(moment: datetime, record: RenewalRecord, now: datetime) -> datetime:
    """Never schedule a retry past the certificate's expiry (cert-manager's users were bitten by exactly that)."""
    if record.expires_on is None:
        return moment
    latest = datetime.fromtimestamp(record.expires_on, UTC) - _EXPIRY_MARGIN
    return moment if moment <= latest else max(latest, now)


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode("ascii")


def _split_pem(bundle: str | None) -> tuple[str, ...]:
    if not bundle:
        return ()
    marker = "-----END CERTIFICATE-----"
    return tuple(part.strip() + "\n" + marker + "\n" for part in bundle.split(marker) if part.strip())


def _new_version_tags(current: Mapping[str, str], *, profile: str, previous_version: str | None) -> dict[str, str]:
    tags = dict(current)
    tags[TAG_RENEWED_BY] = RENEWED_BY_VALUE
    tags[TAG_RENEWED_WITH_PROFILE] = profile
    if previous_version:
        tags[TAG_PREVIOUS_VERSION] = previous_version
    return tags


def _trust_for_verification(
    profile: CAProfile,
    environ: Mapping[str, str],
    read_version_der: Callable[[str, str], bytes | None],
    certificate_name: str,
    *,
    replaced_leaf_der: bytes | None,
    previous_version: str | None,
) -> tuple[tuple[x509.Certificate, ...], bytes | None]:
    """What the CA's answer must chain to: the profile's configured anchors, or else the certificate of the version
    being replaced (its issuing CA is the default anchor), read from Key Vault (one request) when the renewal
    resumed from a pending placeholder and so never saw it.

    Raises:
        ConfigurationError: the profile's trust anchor option cannot be read (the CA's answer stays recorded).
        RetryableError / PermanentError: as ``VaultCertificates.read_version_der``.
    """
    from renewal.anchors import trust_anchors_for

    anchors = trust_anchors_for(profile, environ)
    if anchors or replaced_leaf_der is not None or previous_version is None:
        return anchors, replaced_leaf_der
    return anchors, read_version_der(certificate_name, previous_version)
