"""One renewal as an explicit state machine over the steps of ``renewal.steps.Step`` (docs/architecture.md).

Under the certificate's claim in the journal, one invocation reads Key Vault once, reconciles the journal with
what Key Vault shows, then runs steps until the renewal ends or has to wait::

    BEGIN    decide from Key Vault's state; have Key Vault create a version (or resume the pending one) ─► SUBMIT
    SUBMIT   ask the CA; verify its answer before recording it ─► MERGE, or ─► POLL when the CA defers
    POLL     ask the CA again about its reference; verify ─► MERGE (or stay, waiting)
    MERGE    merge the recorded answer into Key Vault and queue its notifications, in one journal write ─► DELIVER
    DELIVER  send the notifications ─► DONE

Each step ends with one journal save and one checkpoint named after it, so a crash between two steps resumes
where it stopped: the pending operation's CSR is reused, the CA's reference is polled (not resubmitted), a
recorded answer is merged without asking the CA again, a merge the journal missed is found in Key Vault, and a
delivery recorded as sent is not sent again. A failure is not a step: it is recorded on the record, and whether
and when to try again is decided in one place, at the end (``_failed``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal.ca import (
    CAAdapter,
    CAProfile,
    DeferringCAAdapter,
    Issued,
    Pending,
    RenewalInfoSource,
    ReplacingCAAdapter,
    SigningRequest,
)
from renewal.errors import ClaimLostError, PermanentError, RenewalError, RetryableError
from renewal.flow.deliveries import queue_failure, queue_for
from renewal.flow.runtime import Runtime
from renewal.notify.routing import notifications_for
from renewal.outcome import Delivery, Outcome, Reason, Status, delivery_groups, log_outcome, to_dict
from renewal.pure.backoff import EXPIRY_MARGIN, next_attempt
from renewal.pure.intake import Ignored, RenewalRequest
from renewal.pure.plan import (
    CertificateState,
    ListedCertificate,
    Plan,
    Resume,
    Skip,
    decide,
    listed_window_start,
    profile_for,
)
from renewal.pure.tags import (
    LEGACY_TAGS,
    MAX_TAGS,
    RENEWED_BY_TAG,
    is_observed,
    our_tag,
    previous_version_tagged,
    tag_value,
)
from renewal.pure.verify import VerifiedCertificate, describe, verify_issued
from renewal.pure.window import WindowRule
from renewal.shells.journal import OutboxItem, RenewalJournal, RenewalRecord
from renewal.shells.keyvault import CertificateSnapshot, PendingVersion, VaultCertificates
from renewal.steps import Step

__all__ = ["outcome_for_ignored", "renew"]

logger = logging.getLogger("renewal")

# Retries of a transient failure, from the sweep: RENEWAL_RETRY_SECONDS doubling up to 6 h, never past expiry.
_LONGEST_RETRY = timedelta(hours=6)
_SOMEONE_ELSE = "another worker holds this certificate's renewal; it will finish it"


def renew(request: RenewalRequest, runtime: Runtime) -> Outcome:
    """Run one renewal to its outcome under the certificate's claim, and record it (one log line).

    Permanent problems end in a ``failed`` outcome and are not raised. When another worker holds the claim (or
    takes it over), the outcome is ``skipped`` with reason ``renewal_in_progress``: that worker finishes it.

    Raises:
        RetryableError: only after the outcome is recorded, when a transient failure may be helped by a
            redelivery of the event (redelivery is a bonus, never relied on: docs/architecture.md).
    """
    started = time.monotonic()
    context = _Context(request=request)
    run: _Run | None = None
    try:
        record = runtime.journal.claim(request.vault_name, request.certificate_name, runtime.worker_id)
        if record is None:
            outcome = context.outcome("skipped", "renewal_in_progress", _SOMEONE_ELSE)
        else:
            run = _Run(request, runtime, context, record)
            outcome = run.to_the_end()
    except ClaimLostError:
        # Another worker took the record over (our claim lapsed): it owns the renewal now, nothing failed.
        outcome = context.outcome("skipped", "renewal_in_progress", _SOMEONE_ELSE)
        return _measured(runtime, _logged(replace(outcome, duration_seconds=time.monotonic() - started)))
    except RenewalError as exc:
        return _failed(request, runtime, context, run, exc, started)
    outcome = replace(outcome, duration_seconds=time.monotonic() - started)
    if run is not None:
        record = run.record
        if outcome.status == "skipped" and not record.step.under_way:
            # Nothing is under way: an earlier failure's retry time no longer applies.
            record = replace(record, next_attempt_at=None)
        # A skip can end a failure streak (renewed meanwhile) or be observe mode's report: the notifiers' rules
        # decide whether it is news (a renewal's own notifications were queued with its merge).
        notices = [] if outcome.status == "renewed" else _notices(runtime, run, outcome)
        _release(runtime.journal, record, outcome, outbox=notices, now=runtime.clock())
        _send_queued(runtime, record, notices)
    return _measured(runtime, _logged(outcome))


def outcome_for_ignored(ignored: Ignored) -> Outcome:
    """Record an event the app acknowledges but does not act on."""
    return _logged(
        Outcome(
            status="skipped",
            reason=ignored.reason,
            message=ignored.message,
            vault_name=ignored.vault_name,
            certificate_name=ignored.certificate_name,
        )
    )


@dataclass
class _Context:
    """What the outcome will say, filled in as the renewal learns it; the one place a renewal's outcome is built."""

    request: RenewalRequest
    ca_profile: str | None = None
    previous_version: str | None = None
    new_version: str | None = None
    deliveries: tuple[Delivery, ...] = ()
    # What the outcome should tell about the new version (an EKU that changed, a tag that did not fit).
    notes: tuple[str, ...] = ()

    def outcome(self, status: Status, reason: str, message: str, *, renews_from: datetime | None = None) -> Outcome:
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


@dataclass
class _Run:
    """One invocation's pass through the state machine, holding what it read so no step reads it twice."""

    request: RenewalRequest
    runtime: Runtime
    context: _Context
    record: RenewalRecord
    vault: VaultCertificates = field(init=False)
    snapshot: CertificateSnapshot = field(init=False)
    pending: PendingVersion | None = None
    resumed: bool = False

    def __post_init__(self) -> None:
        self.vault = self.runtime.keyvault.vault(self.request.vault_url)

    # --- the machine ---------------------------------------------------------------------------------------

    def to_the_end(self) -> Outcome:
        """Read Key Vault, reconcile, then advance one step at a time until an outcome."""
        self.snapshot = self.vault.read(self.request.certificate_name)
        self.resumed = self.record.step.under_way
        _debug(self.request, "read", f"version={self.snapshot.state.version} step={self.record.step}")
        ended = self.reconcile()
        while ended is None:
            ended = self.advance()
        return ended

    def advance(self) -> Outcome | None:
        """Run the step the record stands at; ``None`` means go on with the next one."""
        match self.record.step:
            case Step.BEGIN | Step.DONE:
                return self.begin()
            case Step.SUBMIT:
                return self.submit()
            case Step.POLL:
                return self.poll()
            case Step.MERGE:
                return self.merge()
            case Step.DELIVER:
                return self.deliver()
        raise ValueError(f"the journal holds an unknown step {self.record.step!r}")

    def save(self, step: Step, *, outbox: Sequence[OutboxItem] = (), **changes: Any) -> None:
        """The step's one journal write, then its checkpoint (a crash point in the crash tests)."""
        self.record = self.runtime.journal.save(replace(self.record, step=step, **changes), outbox=outbox)

    def passed(self, step: Step) -> None:
        self.runtime.checkpoint(step)

    # --- reconcile: what Key Vault shows wins --------------------------------------------------------------

    def reconcile(self) -> Outcome | None:
        """Before any step: a merge the journal missed, or a renewal someone else finished, is found here."""
        record, state = self.record, self.snapshot.state
        if record.step not in (Step.SUBMIT, Step.POLL, Step.MERGE) or record.previous_version is None:
            return None
        if not state.has_certificate or state.version == record.previous_version:
            return None
        if previous_version_tagged(state.tags) == record.previous_version:
            # Key Vault holds the version this renewal merged, but the journal never heard (a crash right after
            # the merge): queue its notifications now and deliver them.
            self.context.ca_profile, self.context.previous_version = record.ca_profile, record.previous_version
            self.context.new_version = state.version
            self.queue_and_save(state.version or "", _described(self.snapshot), dict(state.tags))
            self.passed(Step.MERGE)
            return None
        # Renewed meanwhile by someone else (a person, another deployment): nothing left to resume.
        self.context.previous_version = state.version
        self.save(Step.DONE, next_attempt_at=None)
        return self.context.outcome(
            "skipped", "already_renewed", f"version {state.version} replaced {record.previous_version} meanwhile"
        )

    # --- BEGIN ---------------------------------------------------------------------------------------------

    def begin(self) -> Outcome | None:
        """Decide from Key Vault's state; create the version (or resume the pending one) and record its CSR."""
        state = self.snapshot.state
        _warn_if_shorter_than_the_sweep_allows(self.request, self.runtime, state)
        plan = self.decide()
        _debug(self.request, "decide", type(plan).__name__.lower())
        if isinstance(plan, Skip):
            self.context.previous_version = state.version
            return self.context.outcome("skipped", plan.reason, plan.message, renews_from=plan.renews_from)
        profile = plan.profile
        self.context.ca_profile = profile.name
        if not isinstance(plan, Resume) and is_observed(state.tags, app_observes=self.runtime.settings.observe):
            return self.observed(plan.profile)
        if isinstance(plan, Resume):
            self.pending = self.vault.pending_version(self.request.certificate_name)
        else:
            tags = _new_version_tags(state.tags, profile=profile.name, previous_version=state.version)
            self.pending = self.vault.create_version(self.snapshot, tags=tags)
        previous = _previous_version(self.snapshot, self.record)
        self.context.previous_version = previous
        expires_on = state.expires_on or self.request.expires_on
        self.save(
            Step.SUBMIT,
            ca_profile=profile.name,
            previous_version=previous,
            request_id=self.pending.request_id,
            csr_sha256=_sha256(self.pending.csr_der),
            ca_reference=None,
            issued_leaf_pem=None,
            issued_chain=(),
            new_version=None,
            expires_on=expires_on.timestamp() if expires_on else self.record.expires_on,
        )
        self.resumed = self.resumed or self.pending.resumed
        _debug(self.request, "begin", f"resumed={self.pending.resumed}")
        self.passed(Step.BEGIN)
        return None

    def observed(self, profile: CAProfile) -> Outcome:
        """Observe mode: say what would be done now, and change nothing (no new version, no CA request)."""
        state = self.snapshot.state
        self.context.previous_version = state.version
        expires = state.expires_on.isoformat(timespec="minutes") if state.expires_on else "unknown"
        window = _listed_window_text(self.runtime, self.request, state)
        return self.context.outcome(
            "skipped",
            "would_renew",
            f"observe mode: would create a new version of {state.version or 'the certificate'} now and have CA "
            f"profile {profile.name!r} ({profile.adapter}) sign it; the window {window}, it expires {expires}",
            renews_from=_window_start(self.runtime, self.request, state),
        )

    def decide(self) -> Plan:
        """The plan for this certificate now; for an early event, the CA's suggestion (ACME ARI) is asked once."""
        settings, state, record = self.runtime.settings, self.snapshot.state, self.record
        done = record.step == Step.DONE and record.previous_version is not None
        decision = partial(
            decide,
            self.request,
            state,
            profiles=settings.ca_profiles,
            default_profile=settings.default_ca_profile,
            now=self.runtime.clock(),
            window=WindowRule(
                fraction=settings.window_fraction, jitter=settings.window_jitter, lead=settings.window_lead
            ),
            renewed_versions=(record.previous_version,) if done and record.previous_version else (),
            manual_cooldown=timedelta(seconds=settings.manual_cooldown_seconds),
            sweep_lead=settings.sweep_interval / 2 if settings.sweep_interval else timedelta(0),
        )
        plan = decision()
        if not (isinstance(plan, Skip) and plan.reason == "not_due" and self.request.trigger == "event_grid"):
            return plan
        profile = profile_for(state.tags, settings.ca_profiles, settings.default_ca_profile)
        adapter = self.runtime.adapter(profile) if profile is not None else None
        if not isinstance(adapter, RenewalInfoSource) or not self.snapshot.certificate_der:
            return plan
        window = adapter.suggested_window(_pem(self.snapshot.certificate_der))
        return decision(suggested_start=window[0]) if window is not None else plan

    # --- SUBMIT and POLL -----------------------------------------------------------------------------------

    def submit(self) -> Outcome | None:
        """Ask the CA to sign the pending CSR; verify the answer before recording it."""
        profile, adapter = self.profile_and_adapter()
        pending = self.pending_version()
        if pending is None:
            return None
        signing = SigningRequest(
            csr_der=pending.csr_der,
            vault_name=self.request.vault_name,
            certificate_name=self.request.certificate_name,
            validity_months=self.snapshot.state.validity_months,
            key_usage=self.snapshot.state.key_usage,
            ekus=self.snapshot.state.ekus,
        )
        # ACME ARI: an order that names the certificate it replaces (RFC 9773 §5), when the current one is known.
        replaced = self.snapshot.certificate_der if self.snapshot.state.has_certificate else None
        with self.measured_ca_request(profile):
            if replaced and isinstance(adapter, ReplacingCAAdapter):
                answer = adapter.submit_replacing(signing, _pem(replaced))
            else:
                answer = adapter.submit(signing)
        return self.answered(Step.SUBMIT, answer, profile, adapter, pending)

    def poll(self) -> Outcome | None:
        """Ask the CA again about the request it deferred."""
        profile, adapter = self.profile_and_adapter()
        if not isinstance(adapter, DeferringCAAdapter):
            raise PermanentError(
                f"CA profile {profile.name!r} cannot poll the deferred request it holds", reason="unknown_reference"
            )
        pending = self.pending_version()
        if pending is None or self.record.step != Step.POLL:
            return None
        with self.measured_ca_request(profile):
            answer = adapter.poll(self.record.ca_reference or "")
        return self.answered(Step.POLL, answer, profile, adapter, pending)

    @contextmanager
    def measured_ca_request(self, profile: CAProfile) -> Iterator[None]:
        """Count a CA request that failed, by its closed reason (``answered`` counts those that answered)."""
        metrics = self.runtime.metrics
        try:
            yield
        except RenewalError as exc:
            reason, _ = Reason.of(exc.reason, retryable=isinstance(exc, RetryableError))
            metrics.ca_request(ca_profile=profile.name, adapter=profile.adapter, result=str(reason))
            raise

    def answered(
        self, step: Step, answer: Issued | Pending, profile: CAProfile, adapter: CAAdapter, pending: PendingVersion
    ) -> Outcome | None:
        """Record what the CA said: a verified certificate (─► MERGE) or a deferral (stay at POLL, waiting)."""
        result = "pending" if isinstance(answer, Pending) else "issued"
        self.runtime.metrics.ca_request(ca_profile=profile.name, adapter=profile.adapter, result=result)
        _debug(self.request, step, f"profile={profile.name} answer={type(answer).__name__.lower()}")
        if isinstance(answer, Pending):
            if not isinstance(adapter, DeferringCAAdapter):
                raise PermanentError(
                    f"CA profile {profile.name!r} deferred, but its adapter cannot poll", reason="ca_bad_answer"
                )
            now = self.runtime.clock()
            wait = timedelta(seconds=answer.retry_after or self.runtime.settings.ca_poll_seconds)
            self.save(
                Step.POLL,
                ca_reference=answer.reference,
                next_attempt_at=_within_expiry(now + wait, self.record, now).timestamp(),
                last_reason="ca_pending",
                last_error=None,
            )
            self.passed(step)
            return self.context.outcome(
                "pending",
                "ca_pending",
                f"the CA deferred issuance: request {answer.reference[:80]} awaits the CA"
                + (f", retry after {answer.retry_after:g} s" if answer.retry_after is not None else ""),
            )
        verified = self.verified(answer, profile, pending)
        _debug(self.request, "verify", f"serial={verified.serial_number} not_after={verified.not_after.isoformat()}")
        self.save(
            Step.MERGE,
            ca_reference=None,
            issued_leaf_pem=_pem(verified.leaf_der),
            issued_chain=tuple(_pem(der) for der in verified.chain_der),
        )
        self.passed(step)
        return None

    def verified(self, answer: Issued, profile: CAProfile, pending: PendingVersion) -> VerifiedCertificate:
        """The answer, checked against what was asked and the profile's trust anchor (docs/verification.md).

        Raises:
            VerificationError: the answer is not exactly what was asked, from the expected CA.
        """
        from renewal.ca.anchors import trust_anchors_for

        anchors = trust_anchors_for(profile, self.runtime.settings.environ)
        replaced = self.snapshot.certificate_der if self.snapshot.state.has_certificate else None
        if not anchors and replaced is None and self.record.previous_version:
            # Resumed from the pending placeholder: read the replaced version once, its issuer is the anchor.
            replaced = self.vault.read_version_der(self.request.certificate_name, self.record.previous_version)
        state = self.snapshot.state
        return verify_issued(
            pending.csr_der,
            answer,
            now=self.runtime.clock(),
            validity_months=state.validity_months,
            ekus=state.ekus,
            replaced_leaf_der=replaced,
            anchors=anchors,
        )

    # --- MERGE and DELIVER ---------------------------------------------------------------------------------

    def merge(self) -> Outcome | None:
        """Merge the recorded answer into Key Vault; queue its notifications in the same journal write."""
        record = self.record
        self.context.ca_profile, self.context.previous_version = record.ca_profile, record.previous_version
        leaf = x509.load_pem_x509_certificate((record.issued_leaf_pem or "").encode("ascii"))
        chain = [x509.load_pem_x509_certificate(pem.encode("ascii")) for pem in record.issued_chain]
        verified = describe(leaf, chain)
        tags = self.new_version_tags()
        merged = self.vault.merge(self.request.certificate_name, verified, tags=tags)
        self.context.new_version = merged.version
        self.context.notes += _carry_notes(self.snapshot, leaf, tags)
        _debug(self.request, "merge", f"new_version={merged.version}")
        self.queue_and_save(merged.version, verified, tags)
        self.passed(Step.MERGE)
        return None

    def queue_and_save(self, version: str, verified: VerifiedCertificate | None, tags: Mapping[str, str]) -> None:
        renewed = self.context.outcome("renewed", "renewed", f"new version {version} merged")
        settings, now = self.runtime.settings, self.runtime.clock()
        outbox = queue_for(settings, renewed, verified=verified, vault_url=self.request.vault_url, tags=tags, now=now)
        outbox += notifications_for(
            settings.notifiers,
            renewed,
            previous=self.record.history,
            tags=tags,
            vault_url=self.request.vault_url,
            now=now,
            expires_on=verified.not_after if verified else None,
        )
        if verified is not None and self.runtime.rollouts is not None:
            from renewal.flow.rollout import queue_rollout

            outbox += queue_rollout(
                self.runtime,
                vault_name=self.request.vault_name,
                vault_url=self.request.vault_url,
                certificate_name=self.request.certificate_name,
                new_version=version,
                thumbprint=verified.thumbprint_sha1,
                previous_version=self.context.previous_version,
                tags=tags,
                now=now,
                ca_profile=self.context.ca_profile,
                key_curve=_key_curve(self.snapshot),
            )
        self.save(Step.DELIVER, outbox=outbox, new_version=version)

    def deliver(self) -> Outcome:
        """Send the notifications still pending for the new version; the renewal is done."""
        record = self.record
        self.context.ca_profile, self.context.previous_version = record.ca_profile, record.previous_version
        self.context.new_version = record.new_version
        items = [
            item
            for item in self.runtime.journal.outbox([record.vault_name], certificate_name=record.certificate_name)
            if item.version == record.new_version and item.status == "pending"
        ]
        self.context.deliveries = self.runtime.deliverer().send(items)
        self.save(
            Step.DONE,
            attempts=0,
            next_attempt_at=None,
            last_reason=None,
            last_error=None,
            issued_leaf_pem=None,
            issued_chain=(),
        )
        self.passed(Step.DELIVER)
        groups = delivery_groups(self.context.deliveries) or [("webhooks", ())]
        sent = ", ".join(f"{label} delivered {sum(d.delivered for d in group)}/{len(group)}" for label, group in groups)
        message = f"new version {record.new_version} merged; {sent}"
        if self.resumed:
            message += " (resumed a renewal already under way)"
        if self.context.notes:
            message += "; " + "; ".join(self.context.notes)
        return self.context.outcome("renewed", "renewed", message)

    # --- what the steps share ------------------------------------------------------------------------------

    def profile_and_adapter(self) -> tuple[CAProfile, CAAdapter]:
        settings = self.runtime.settings
        name = self.record.ca_profile
        profile = settings.ca_profiles.get(name) if name else None
        if profile is None:
            profile = profile_for(self.snapshot.state.tags, settings.ca_profiles, settings.default_ca_profile)
        if profile is None:
            raise PermanentError(
                f"the renewal under way used CA profile {name!r}, which is no longer configured",
                reason="unknown_ca_profile",
            )
        self.context.ca_profile, self.context.previous_version = profile.name, self.record.previous_version
        return profile, self.runtime.adapter(profile)

    def pending_version(self) -> PendingVersion | None:
        """The pending operation's CSR: the one just created, or read from Key Vault (one request) on a resume.

        ``None`` when Key Vault holds no pending operation any more (cancelled or deleted): the record is back at
        ``BEGIN`` and the machine starts over. A pending operation with another CSR than the one recorded (someone
        replaced it) is adopted: the record is back at ``SUBMIT`` with the new CSR, and what the CA knew of the
        old one no longer applies.
        """
        if self.pending is not None:
            return self.pending
        try:
            self.pending = self.vault.pending_version(self.request.certificate_name)
        except PermanentError as exc:
            if exc.reason not in ("no_pending_operation", "pending_operation_not_mergeable"):
                raise
            self.save(Step.BEGIN, csr_sha256=None, ca_reference=None, issued_leaf_pem=None, issued_chain=())
            return None
        digest = _sha256(self.pending.csr_der)
        if self.record.csr_sha256 != digest:
            self.save(Step.SUBMIT, csr_sha256=digest, ca_reference=None, issued_leaf_pem=None, issued_chain=())
        return self.pending

    def new_version_tags(self) -> dict[str, str]:
        """The tags the new version carries: the placeholder's own, or the current version's plus ours."""
        state = self.snapshot.state
        if not state.has_certificate:
            return dict(state.tags)
        return _new_version_tags(
            state.tags, profile=self.record.ca_profile or "", previous_version=self.record.previous_version
        )


# --- the one place a failure is classified ----------------------------------------------------------------


def _failed(
    request: RenewalRequest,
    runtime: Runtime,
    context: _Context,
    run: _Run | None,
    exc: RenewalError,
    started: float,
) -> Outcome:
    """Record a failure and decide, by its type, whether and when to try again (cert-manager's single switch).

    Permanent: recorded, no retry time (an event, the sweep's alarm or a person takes it from there). Transient:
    a retry time by ``next_attempt``, never past the certificate's expiry; for an event, raised after recording
    so that Event Grid may redeliver.
    """
    # CA and service text may echo what it was sent: scrubbed before the journal, the log or an event.
    message = runtime.scrub(exc.message)
    retryable = isinstance(exc, RetryableError)
    outcome = replace(
        context.outcome("failed", exc.reason, message),
        duration_seconds=time.monotonic() - started,
        retryable=retryable,
    )
    if run is not None:
        now = runtime.clock()
        record = run.record
        attempts = record.attempts + 1
        retry_at: float | None = None
        if isinstance(exc, RetryableError):
            expires = datetime.fromtimestamp(record.expires_on, UTC) if record.expires_on is not None else None
            retry_at = next_attempt(
                attempts,
                now=now,
                first=timedelta(seconds=runtime.settings.retry_seconds),
                cap=_LONGEST_RETRY,
                rng=runtime.rng,
                retry_after=_retry_after(exc),
                expires_on=expires,
            ).timestamp()
        failed = replace(
            record,
            step=Step.BEGIN if record.step == Step.DONE else record.step,
            attempts=attempts,
            next_attempt_at=retry_at,
            last_reason=outcome.reason,
            last_error=outcome.message[:500],
        )
        occurrence = f"{record.csr_sha256}/{attempts}"
        snapshot: CertificateSnapshot | None = getattr(run, "snapshot", None)
        announcements = queue_failure(runtime.settings, outcome, now=now, occurrence=occurrence)
        announcements += notifications_for(
            runtime.settings.notifiers,
            outcome,
            previous=record.history,
            tags=snapshot.state.tags if snapshot is not None else {},
            vault_url=request.vault_url,
            now=now,
            occurrence=occurrence,
            expires_on=datetime.fromtimestamp(record.expires_on, UTC) if record.expires_on is not None else None,
        )
        _release(runtime.journal, failed, outcome, outbox=announcements, now=now)
        _send_queued(runtime, record, announcements)
    _measured(runtime, _logged(outcome))
    if retryable and request.trigger == "event_grid":
        # The host logs what it is raised, chain included: only the scrubbed message leaves.
        raise RetryableError(message, reason=outcome.reason, retry_after=_retry_after(exc)) from None
    return outcome


def _notices(runtime: Runtime, run: _Run, outcome: Outcome) -> list[OutboxItem]:
    state = run.snapshot.state
    return notifications_for(
        runtime.settings.notifiers,
        outcome,
        previous=run.record.history,
        tags=state.tags,
        vault_url=run.request.vault_url,
        now=runtime.clock(),
        expires_on=state.expires_on,
    )


def _send_queued(runtime: Runtime, record: RenewalRecord, queued: Sequence[OutboxItem]) -> None:
    """Send now the rows just queued with the record (as stored: another worker may have settled one)."""
    if not queued:
        return
    ids = {item.webhook_id for item in queued}
    stored = runtime.journal.outbox([record.vault_name], certificate_name=record.certificate_name)
    runtime.deliverer().send([item for item in stored if item.webhook_id in ids])


def _retry_after(exc: RenewalError) -> float | None:
    return exc.retry_after if isinstance(exc, RetryableError) else None


def _release(
    journal: RenewalJournal,
    record: RenewalRecord,
    outcome: Outcome,
    *,
    outbox: Sequence[OutboxItem] = (),
    now: datetime,
) -> None:
    try:
        journal.release(record.with_outcome(_history_entry(outcome, now)), outbox=outbox)
    except ClaimLostError:
        logger.debug("claim of %s lost before release; the new holder owns the record", outcome.certificate_name)
    except RetryableError as exc:
        # The claim lapses by itself; the renewal's own outcome is what matters here.
        logger.debug("could not release the claim of %s: %s", outcome.certificate_name, exc.reason)


def _measured(runtime: Runtime, outcome: Outcome) -> Outcome:
    """Count the renewal's outcome (and its duration) in the app's metrics."""
    profile = runtime.settings.ca_profiles.get(outcome.ca_profile) if outcome.ca_profile else None
    runtime.metrics.renewal_finished(
        outcome, duration_seconds=outcome.duration_seconds, adapter=profile.adapter if profile else None
    )
    return outcome


def _logged(outcome: Outcome) -> Outcome:
    log_outcome(outcome, logger)
    return outcome


def _history_entry(outcome: Outcome, now: datetime) -> dict[str, object]:
    entry = to_dict(outcome)
    entry.pop("deliveries", None)
    entry["at"] = now.isoformat(timespec="seconds")
    return entry


def _debug(request: RenewalRequest, step: str, detail: str) -> None:
    # Steps are DEBUG: the one INFO-or-above line per renewal is the outcome's (STYLE §10).
    logger.debug("step=%s vault=%s certificate=%s %s", step, request.vault_name, request.certificate_name, detail)


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


def _within_expiry(moment: datetime, record: RenewalRecord, now: datetime) -> datetime:
    """Never schedule a poll past the certificate's expiry (less the margin ``next_attempt`` keeps too)."""
    if record.expires_on is None:
        return moment
    latest = datetime.fromtimestamp(record.expires_on, UTC) - EXPIRY_MARGIN
    return moment if moment <= latest else max(latest, now)


def _previous_version(snapshot: CertificateSnapshot, record: RenewalRecord) -> str | None:
    """The version being replaced: the placeholder's tag says it, else the current version is it."""
    state = snapshot.state
    tagged = previous_version_tagged(state.tags)
    if not state.has_certificate:
        return tagged or record.previous_version
    return state.version


def _described(snapshot: CertificateSnapshot) -> VerifiedCertificate | None:
    if not snapshot.certificate_der:
        return None
    return describe(x509.load_der_x509_certificate(snapshot.certificate_der))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode("ascii")


def _new_version_tags(current: Mapping[str, str], *, profile: str, previous_version: str | None) -> dict[str, str]:
    """The owners' tags, carried unchanged, plus the app's one tag (docs/adopting.md, "What carries over").

    Tags of the app's own from before (three of them, once) are dropped. A certificate whose owners use all 15
    tags Key Vault allows is renewed without the app's tag rather than refused: the journal still knows the
    replaced version, and the outcome says so.
    """
    ours = {name.lower() for name in (*LEGACY_TAGS, RENEWED_BY_TAG)}
    tags = {key: value for key, value in current.items() if key.strip().lower() not in ours}
    if len(tags) < MAX_TAGS:
        name, value = our_tag(profile=profile, previous_version=previous_version)
        tags[name] = value
    return tags


def _carry_notes(snapshot: CertificateSnapshot, leaf: x509.Certificate, tags: Mapping[str, str]) -> tuple[str, ...]:
    """What differs between the replaced certificate and the new one that its owners should hear about."""
    notes = []
    if tag_value(tags, RENEWED_BY_TAG) is None:
        notes.append(f"the new version carries no {RENEWED_BY_TAG} tag: its owners use all {MAX_TAGS} tags")
    if snapshot.state.has_certificate and snapshot.certificate_der:
        before, after = _ekus(x509.load_der_x509_certificate(snapshot.certificate_der)), _ekus(leaf)
        if before != after:
            notes.append(
                "the CA changed the extended key usages: "
                f"{', '.join(sorted(before)) or 'none'} before, {', '.join(sorted(after)) or 'none'} now"
            )
    return tuple(notes)


def _ekus(certificate: x509.Certificate) -> frozenset[str]:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(getattr(oid, "_name", None) or oid.dotted_string for oid in usages)


def _window_start(runtime: Runtime, request: RenewalRequest, state: CertificateState) -> datetime | None:
    listed = ListedCertificate(
        name=state.name, expires_on=state.expires_on, not_before=state.not_before, tags=dict(state.tags)
    )
    try:
        return listed_window_start(runtime.settings, request.vault_name, listed)
    except RenewalError:
        return None


def _listed_window_text(runtime: Runtime, request: RenewalRequest, state: CertificateState) -> str:
    start = _window_start(runtime, request, state)
    return f"opened {start.isoformat(timespec='minutes')}" if start is not None else "is open"


def _key_curve(snapshot: CertificateSnapshot) -> str | None:
    """The policy's EC curve (``P-384``), for targets that refuse some curves (Container Apps)."""
    curve = getattr(snapshot.policy, "key_curve_name", None)
    return str(getattr(curve, "value", curve)) if curve else None
