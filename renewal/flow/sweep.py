"""The timer sweep: the safety net for everything events miss (docs/architecture.md §4).

Each run, within a time budget well under ``functionTimeout`` (what is left waits for the next run), and vault by
vault (``sweep_vault``, the unit the queue's fan-out runs in parallel, one vault per message):

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
from renewal.errors import PermanentError, RenewalError
from renewal.flow.renew import renew
from renewal.flow.runtime import Runtime
from renewal.notify.routing import notifications_for, unqueued
from renewal.outcome import Outcome, log_outcome
from renewal.pure.intake import RenewalRequest, on_demand_request
from renewal.pure.plan import ListedCertificate, listed_window_start, profile_for
from renewal.pure.tags import is_paused
from renewal.settings import VaultConfig
from renewal.shells.journal import RenewalRecord

__all__ = ["SweepReport", "sweep", "sweep_vault", "trim_settled"]

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
        rollouts_probed: deployment targets' endpoints probed for the new version.
        rollouts_announced: announcements queued for rollouts (complete, stalled, retire).
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
    rollouts_probed: int = 0
    rollouts_announced: int = 0
    out_of_time: bool = False


def sweep(
    runtime: Runtime, *, budget_seconds: float | None = None, monotonic: Callable[[], float] = time.monotonic
) -> SweepReport:
    """Run one sweep over every allow-listed vault in this process; see the module docstring. Never raises for
    one certificate's failure.

    The queue's fan-out (``renewal.flow.fanout``) runs the same ``sweep_vault`` unit, one vault per message.

    Raises:
        RetryableError: the journal is unreachable (the next run tries again).
    """
    budget = _budget(runtime, budget_seconds, monotonic)
    report = SweepReport()
    for vault in runtime.settings.vaults.values():
        _sweep_vault(runtime, vault, budget, report)
    report.trimmed = _trim(runtime, budget)
    report.out_of_time = budget.ran_out
    _log_report("sweep", report)
    return report


def sweep_vault(
    runtime: Runtime,
    vault_name: str,
    *,
    budget_seconds: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> SweepReport:
    """Sweep one allow-listed vault: resume and redeliver what is due there, renew what entered its window, and
    raise its alarms. The unit of work of both ``sweep`` and the queue's fan-out.

    Raises:
        PermanentError: the vault is not in ``RENEWAL_VAULTS`` (reason ``vault_not_allowed``).
        RetryableError: the journal is unreachable (a redelivery or the next run tries again).
    """
    vault = runtime.settings.vaults.get(vault_name.lower())
    if vault is None:
        raise PermanentError(f"vault {vault_name[:40]!r} is not in RENEWAL_VAULTS", reason="vault_not_allowed")
    budget = _budget(runtime, budget_seconds, monotonic)
    report = SweepReport()
    _sweep_vault(runtime, vault, budget, report)
    report.out_of_time = budget.ran_out
    _log_report(f"sweep vault={vault.name}", report)
    return report


def trim_settled(
    runtime: Runtime, *, budget_seconds: float | None = None, monotonic: Callable[[], float] = time.monotonic
) -> int:
    """Delete delivered and dead-lettered outbox rows past their retention, a bounded batch at a time, while the
    budget lasts; how many went.

    Raises:
        RetryableError: the journal is unreachable.
    """
    return _trim(runtime, _budget(runtime, budget_seconds, monotonic))


def _trim(runtime: Runtime, budget: _Budget) -> int:
    trimmed = 0
    while not budget.spent():
        batch = runtime.journal.trim(runtime.clock().timestamp())
        trimmed += batch
        if batch < _TRIM_BATCH:
            break
    return trimmed


def _sweep_vault(runtime: Runtime, vault: VaultConfig, budget: _Budget, report: SweepReport) -> None:
    vault_names = [vault.name]
    _resume_due(runtime, vault_names, budget, report)
    _check_rollouts(runtime, vault_names, budget, report)
    _redeliver_due(runtime, vault_names, budget, report)
    # One read, with a server-side filter, for both the listing and the alarms: it does not grow with idle
    # certificates.
    under_way = runtime.journal.under_way_records(vault_names)
    tags = _renew_what_is_due(runtime, vault, under_way, budget, report)
    report.alarms.extend(_alarms(runtime, vault, under_way, tags))


def _budget(runtime: Runtime, budget_seconds: float | None, monotonic: Callable[[], float]) -> _Budget:
    seconds = budget_seconds if budget_seconds is not None else runtime.settings.sweep_budget_seconds
    return _Budget(deadline=monotonic() + seconds, monotonic=monotonic)


def _log_report(what: str, report: SweepReport) -> None:
    logger.info(
        "%s resumed=%d started=%d failed=%d paused=%d deliveries_sent=%d deliveries_failed=%d alarms=%d "
        "trimmed=%d out_of_time=%s",
        what,
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
    due = runtime.journal.due_outbox(runtime.clock().timestamp(), vault_names)
    deliverer = runtime.deliverer()
    for item in due:
        if budget.spent():
            return
        for delivery in deliverer.send([item]):
            if delivery.delivered:
                report.deliveries_sent += 1
            else:
                report.deliveries_failed += 1


def _check_rollouts(runtime: Runtime, vault_names: list[str], budget: _Budget, report: SweepReport) -> None:
    """Probe the deployment targets that were pushed a new version (docs/targets.md): serving, stalled, done."""
    if runtime.rollouts is None or budget.spent():
        return
    from renewal.flow.rollout import check_rollouts

    checked = check_rollouts(runtime, vault_names, spent=budget.spent)
    report.rollouts_probed += checked.probed
    report.rollouts_announced += len(checked.announced)


def _renew_what_is_due(
    runtime: Runtime, vault: VaultConfig, under_way: list[RenewalRecord], budget: _Budget, report: SweepReport
) -> dict[str, dict[str, str]]:
    """Managed certificates inside their window with no renewal under way; one certificate at a time, alone.

    Returns each listed certificate's tags (lower-cased name → tags), for the alarms' notifications.
    """
    tags: dict[str, dict[str, str]] = {}
    if budget.spent():
        return tags
    records = {r.certificate_name.lower(): r for r in under_way}
    try:
        listed = runtime.keyvault.vault(vault.url).list_certificate_properties()
    except RenewalError as exc:
        logger.warning("sweep could not list vault=%s reason=%s: %s", vault.name, exc.reason, exc.message)
        return tags
    for properties in listed:
        tags[properties.name.lower()] = properties.tags
        if budget.spent():
            return tags
        known = records.get(properties.name.lower())
        try:
            start: datetime | None = listed_window_start(runtime.settings, vault.name, properties)
            unreadable: RenewalError | None = None
        except RenewalError as exc:
            start, unreadable = None, exc
        _report_listed(runtime, vault, properties, known, start)
        if known is not None and known.under_way:
            continue
        if is_paused(properties.tags):
            report.paused.append(f"{vault.name}/{properties.name}")
            continue
        try:
            if unreadable is not None:
                raise unreadable
            request = _due_request(runtime, vault, properties, start)
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
    return tags


def _report_listed(
    runtime: Runtime,
    vault: VaultConfig,
    listed: ListedCertificate,
    known: RenewalRecord | None,
    window_start: datetime | None,
) -> None:
    """Tell the metrics about a listed certificate, from what the listing and the journal read already gave."""
    settings = runtime.settings
    try:
        profile = profile_for(listed.tags, settings.ca_profiles, settings.default_ca_profile)
    except RenewalError:
        profile = None
    now = runtime.clock()
    failing = known is not None and bool(known.last_reason)
    expired = listed.expires_on is not None and listed.expires_on <= now
    at_risk = (
        failing and listed.expires_on is not None and listed.expires_on <= now + timedelta(days=settings.alert_days)
    )
    try:
        runtime.metrics.certificate_listed(
            vault=vault.name,
            certificate=listed.name,
            ca_profile=profile.name if profile is not None else None,
            adapter=profile.adapter if profile is not None else None,
            expires_on=listed.expires_on,
            not_before=listed.not_before,
            window_start=window_start,
            ready=not expired and not at_risk,
        )
    except Exception:  # a measurement must never stop the sweep
        logger.debug("sweep could not report certificate=%s to the metrics", listed.name, exc_info=True)


def _due_request(
    runtime: Runtime, vault: VaultConfig, listed: ListedCertificate, start: datetime | None
) -> RenewalRequest | None:
    """The renewal to run for a listed certificate whose window opens at ``start``, or ``None`` when it is not
    due now."""
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


def _alarms(
    runtime: Runtime, vault: VaultConfig, under_way: list[RenewalRecord], tags: dict[str, dict[str, str]]
) -> list[str]:
    """Certificates whose renewal keeps failing with fewer than ``alert_days`` left: loud in the log at every run;
    told to the notifiers once per version at risk."""
    now = runtime.clock()
    horizon = now + timedelta(days=runtime.settings.alert_days)
    alarms = []
    for record in under_way:
        if not record.last_reason or not record.under_way or record.expires_on is None:
            continue
        expires = datetime.fromtimestamp(record.expires_on, UTC)
        if expires > horizon:
            continue
        alarms.append(f"{record.vault_name}/{record.certificate_name}")
        outcome = _alarm_outcome(record, expires, now)
        log_outcome(outcome, logger)
        _notify_alarm(runtime, vault, record, outcome, tags.get(record.certificate_name.lower(), {}), expires)
    return alarms


def _notify_alarm(
    runtime: Runtime,
    vault: VaultConfig,
    record: RenewalRecord,
    outcome: Outcome,
    tags: dict[str, str],
    expires: datetime,
) -> None:
    """Queue and send the at-risk notice, once per version: a row already queued (even delivered) is not
    queued again, so the notifiers are not told at every sweep."""
    settings = runtime.settings
    if not settings.notifiers:
        return
    rows = notifications_for(
        settings.notifiers,
        outcome,
        previous=None,
        tags=tags,
        vault_url=vault.url,
        now=runtime.clock(),
        occurrence=record.previous_version or "",
        expires_on=expires,
    )
    if not rows:
        return
    queued = runtime.journal.outbox([record.vault_name], certificate_name=record.certificate_name)
    fresh = unqueued(rows, queued)
    if fresh:
        runtime.journal.add_outbox(fresh)
        # Sent as stored (with its etag), so that the delivery's outcome is saved on the row.
        ids = {row.webhook_id for row in fresh}
        stored = runtime.journal.outbox([record.vault_name], certificate_name=record.certificate_name)
        runtime.deliverer().send([row for row in stored if row.webhook_id in ids])


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
