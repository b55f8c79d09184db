"""The timer sweep: the safety net for everything events miss (docs/architecture.md §4).

Each run, within a time budget well under ``functionTimeout`` (what is left waits for the next run):

1. resumes renewals whose retry time has come or whose worker died (claim lapsed), and polls deferred CA
   requests;
2. redelivers due webhooks and topic events from the outbox, dead-lettering those past the maximum age;
3. lists the certificates of every allow-listed vault and renews each managed one that is inside its renewal
   window with no renewal under way (events can be lost, and ``CertificateNearExpiry`` fires only at 30 days);
4. raises the alarm, every run, for a certificate whose renewal keeps failing close to its expiry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal.ca import RenewalInfoSource
from renewal.errors import RenewalError
from renewal.flow.renew import renew
from renewal.flow.runtime import Runtime
from renewal.outcome import Outcome, log_outcome
from renewal.pure.intake import RenewalRequest, on_demand_request
from renewal.pure.plan import ListedCertificate, listed_window_start, profile_for
from renewal.pure.tags import is_paused
from renewal.settings import VaultConfig
from renewal.shells.journal import RenewalRecord

__all__ = ["SweepReport", "sweep"]

logger = logging.getLogger("renewal")

# The journal's own bound per trim call (renewal.shells.journal): a full batch means there may be more.
_TRIM_BATCH = 100


@dataclass
class SweepReport:
    """What one sweep run did.

    Attributes:
        resumed: outcomes of renewals resumed from the journal.
        started: outcomes of renewals started because a certificate entered its window.
        deliveries_sent: outbox rows delivered.
        deliveries_failed: outbox rows that failed again (or were dead-lettered).
        failed: outcomes of certificates the sweep could not even consider (a broken tag, say); the others go on.
        paused: certificates passed over because their ``renewal-paused`` tag is set.
        alarms: certificates whose renewal keeps failing close to expiry.
        trimmed: outbox rows deleted past their retention.
        out_of_time: whether the budget ran out before the work did.
    """

    resumed: list[Outcome] = field(default_factory=list)
    started: list[Outcome] = field(default_factory=list)
    deliveries_sent: int = 0
    deliveries_failed: int = 0
    failed: list[Outcome] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    trimmed: int = 0
    out_of_time: bool = False


def sweep(
    runtime: Runtime, *, budget_seconds: float | None = None, monotonic: Callable[[], float] = time.monotonic
) -> SweepReport:
    """Run one sweep; see the module docstring. Never raises for one certificate's failure.

    Raises:
        RetryableError: the journal is unreachable (the next run tries again).
    """
    seconds = budget_seconds if budget_seconds is not None else runtime.settings.sweep_budget_seconds
    budget = _Budget(deadline=monotonic() + seconds, monotonic=monotonic)
    report = SweepReport()
    vault_names = [v.name for v in runtime.settings.vaults.values()]
    _resume_due(runtime, vault_names, budget, report)
    _redeliver_due(runtime, vault_names, budget, report)
    _renew_what_is_due(runtime, vault_names, budget, report)
    report.alarms = _alarms(runtime, vault_names)
    _trim(runtime, budget, report)
    report.out_of_time = budget.ran_out
    logger.info(
        "sweep resumed=%d started=%d failed=%d paused=%d deliveries_sent=%d deliveries_failed=%d alarms=%d "
        "trimmed=%d out_of_time=%s",
        len(report.resumed),
        len(report.started),
        len(report.failed),
        len(report.paused),
        report.deliveries_sent,
        report.deliveries_failed,
        len(report.alarms),
        report.trimmed,
        report.out_of_time,
    )
    return report


@dataclass
class _Budget:
    """The sweep's time budget: each phase stops when it is spent, and the next run picks the rest up."""

    deadline: float
    monotonic: Callable[[], float]
    ran_out: bool = False

    def spent(self) -> bool:
        if self.monotonic() >= self.deadline:
            self.ran_out = True
        return self.ran_out


def _resume_due(runtime: Runtime, vault_names: list[str], budget: _Budget, report: SweepReport) -> None:
    """Renewals whose retry time has come or whose worker died (claim lapsed), and deferred CA requests."""
    for record in runtime.journal.due_records(runtime.clock().timestamp(), vault_names):
        if budget.spent():
            return
        outcome = _run(runtime, _request_for(runtime, record.vault_name, record.certificate_name))
        if outcome is not None:
            report.resumed.append(outcome)


def _redeliver_due(runtime: Runtime, vault_names: list[str], budget: _Budget, report: SweepReport) -> None:
    """Notifications whose next attempt has come (dead-lettered past the maximum age by the deliverer)."""
    now = runtime.clock().timestamp()
    due = [i for i in runtime.journal.outbox(vault_names) if i.status == "pending" and i.next_attempt_at <= now]
    deliverer = runtime.deliverer()
    for item in due:
        if budget.spent():
            return
        for delivery in deliverer.send([item]):
            if delivery.delivered:
                report.deliveries_sent += 1
            else:
                report.deliveries_failed += 1


def _renew_what_is_due(runtime: Runtime, vault_names: list[str], budget: _Budget, report: SweepReport) -> None:
    """Managed certificates inside their window with no renewal under way; one certificate at a time, alone."""
    journal = runtime.journal.records(vault_names)
    records = {(r.vault_name.lower(), r.certificate_name.lower()): r for r in journal}
    for vault in runtime.settings.vaults.values():
        if budget.spent():
            return
        try:
            listed = runtime.keyvault.vault(vault.url).list_certificate_properties()
        except RenewalError as exc:
            logger.warning("sweep could not list vault=%s reason=%s: %s", vault.name, exc.reason, exc.message)
            continue
        for properties in listed:
            if budget.spent():
                return
            known = records.get((vault.name.lower(), properties.name.lower()))
            if known is not None and known.under_way:
                continue
            if is_paused(properties.tags):
                report.paused.append(f"{vault.name}/{properties.name}")
                continue
            try:
                request = _due_request(runtime, vault, properties)
            except RenewalError as exc:
                report.failed.append(_unconsidered(vault.name, properties.name, exc.reason, runtime.scrub(exc.message)))
                continue
            except Exception as exc:  # one certificate's surprise must not stop the others
                report.failed.append(_unconsidered(vault.name, properties.name, "internal_error", type(exc).__name__))
                logger.debug("sweep could not consider certificate=%s", properties.name, exc_info=True)
                continue
            outcome = _run(runtime, request)
            if outcome is not None:
                report.started.append(outcome)


def _trim(runtime: Runtime, budget: _Budget, report: SweepReport) -> None:
    """Delivered and dead-lettered rows past their retention go, a bounded batch at a time, while time is left."""
    while not budget.spent():
        trimmed = runtime.journal.trim(runtime.clock().timestamp())
        report.trimmed += trimmed
        if trimmed < _TRIM_BATCH:
            return


def _due_request(runtime: Runtime, vault: VaultConfig, listed: ListedCertificate) -> RenewalRequest | None:
    """The renewal to run for a listed certificate now, or ``None`` when it is not due.

    Raises:
        PermanentError: the certificate's tags cannot be read (reason ``invalid_tag``, ``unknown_ca_profile``).
    """
    start = listed_window_start(runtime.settings, vault.name, listed)
    if start is None:
        return None
    # The run nearest the window's start renews, not the first after it (see renewal.pure.plan.decide).
    interval = runtime.settings.sweep_interval
    if runtime.clock() >= start - (interval / 2 if interval else timedelta(0)):
        return on_demand_request(vault, listed.name, trigger="sweep")
    suggested = _ca_suggested_start(runtime, vault.url, listed.name, listed.tags)
    if suggested is None or suggested > runtime.clock():
        return None
    return on_demand_request(vault, listed.name, trigger="sweep", suggested_start=suggested)


def _unconsidered(vault_name: str, certificate_name: str, reason: str, message: str) -> Outcome:
    outcome = Outcome(
        status="failed",
        reason=reason,
        message=f"the sweep passed over this certificate: {message}",
        vault_name=vault_name,
        certificate_name=certificate_name,
        trigger="sweep",
    )
    log_outcome(outcome, logger)
    return outcome


def _ca_suggested_start(runtime: Runtime, vault_url: str, name: str, tags: dict[str, str]) -> datetime | None:
    """When the certificate's CA suggests renewing it (ACME ARI, RFC 9773 §4.2), if it offers that.

    Costs one Key Vault read and one CA request, and only for certificates whose profile's CA offers it.
    """
    settings = runtime.settings
    try:
        profile = profile_for(tags, settings.ca_profiles, settings.default_ca_profile)
        if profile is None:
            return None
        adapter = runtime.adapter(profile)
        if not isinstance(adapter, RenewalInfoSource):
            return None
        snapshot = runtime.keyvault.vault(vault_url).read(name)
        if not snapshot.certificate_der:
            return None
        pem = x509.load_der_x509_certificate(snapshot.certificate_der).public_bytes(serialization.Encoding.PEM)
        window = adapter.suggested_window(pem.decode("ascii"))
    except RenewalError as exc:
        logger.warning("sweep could not ask the CA about certificate=%s reason=%s", name, exc.reason)
        return None
    return window[0] if window is not None else None


def _run(runtime: Runtime, request: RenewalRequest | None) -> Outcome | None:
    if request is None:
        return None
    try:
        return renew(request, runtime)
    except RenewalError:  # renew raises only for event deliveries; kept for safety
        return None
    except Exception as exc:  # one certificate's surprise (a bug, an SDK oddity) must not stop the others
        logger.debug("sweep: the renewal of certificate=%s raised", request.certificate_name, exc_info=True)
        return _unconsidered(request.vault_name, request.certificate_name, "internal_error", type(exc).__name__)


def _request_for(runtime: Runtime, vault_name: str, certificate_name: str) -> RenewalRequest | None:
    vault = runtime.settings.vaults.get(vault_name.lower())
    return on_demand_request(vault, certificate_name, trigger="sweep") if vault is not None else None


def _alarms(runtime: Runtime, vault_names: list[str]) -> list[str]:
    """Certificates whose renewal keeps failing with fewer than ``alert_days`` left: loud, every run."""
    now = runtime.clock()
    horizon = now + timedelta(days=runtime.settings.alert_days)
    alarms = []
    for record in runtime.journal.records(vault_names):
        if not record.last_reason or not record.under_way or record.expires_on is None:
            continue
        expires = datetime.fromtimestamp(record.expires_on, UTC)
        if expires > horizon:
            continue
        alarms.append(f"{record.vault_name}/{record.certificate_name}")
        log_outcome(_alarm_outcome(record, expires, now), logger)
    return alarms


def _alarm_outcome(record: RenewalRecord, expires: datetime, now: datetime) -> Outcome:
    left = expires - now
    return Outcome(
        status="failed",
        reason="expiry_at_risk",
        message=(
            f"the renewal keeps failing ({record.last_reason}: {(record.last_error or '')[:200]}) and the "
            f"certificate expires {expires.isoformat(timespec='minutes')}, in {left.total_seconds() / 86400:.1f} days"
        ),
        vault_name=record.vault_name,
        certificate_name=record.certificate_name,
        ca_profile=record.ca_profile,
        previous_version=record.previous_version,
        trigger="sweep",
    )
