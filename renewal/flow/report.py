"""What the fleet looks like, for the status HTTP trigger, the status page and the operator CLI: one set of
functions, so all three show the same thing.

- ``fleet(runtime)`` reads each vault's listing (Key Vault lists 25 certificates a page, with their validity and
  tags) and the journal, and says of each certificate whether the app manages it, when it renews, and its
  renewal's state. It reads no certificate on its own.
- ``status_report(runtime)`` (the status JSON and page), ``plan(runtime, days=...)`` (the CLI's ``plan``) and
  ``deliveries_report(runtime)`` are built from it and cost nothing more.
- ``inventory(runtime)`` adds what only a read of each certificate gives (issuer, subject, SANs): one request per
  certificate, a few at a time.

A certificate is **at risk** (``AT_RISK_REASONS``) when it is expired; when its renewal is failing; when the app
cannot tell how to renew it (a tag it cannot read); when it expires inside the horizon and nothing will renew it
(not managed, or paused); or when it is managed and still unrenewed with fewer than ``RENEWAL_ALERT_DAYS`` left.
The status report's horizon is ``RENEWAL_ALERT_DAYS``; ``plan``'s is its ``days``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from renewal.errors import RenewalError
from renewal.flow.runtime import Runtime
from renewal.pure.plan import UNKNOWN_ISSUER, ListedCertificate, listed_window_start, profile_for
from renewal.pure.tags import CA_PROFILE_TAG, is_paused, tag_value
from renewal.shells.journal import OutboxItem, RenewalRecord

__all__ = [
    "AT_RISK_REASONS",
    "INVENTORY_COLUMNS",
    "PLAN_ACTIONS",
    "PLAN_COLUMNS",
    "Fleet",
    "FleetCertificate",
    "deliveries_report",
    "fleet",
    "inventory",
    "plan",
    "rollouts_report",
    "status_report",
]

# The exports' columns, in order: the CSV header and the keys of each JSON row (docs/operating.md).
INVENTORY_COLUMNS = (
    "vault",
    "certificate",
    "managed",
    "why",
    "ca_profile",
    "issuer",
    "issued_by",
    "subject",
    "sans",
    "not_before",
    "expires_on",
    "window_start",
    "next_renewal",
    "journal_step",
    "last_outcome",
    "last_reason",
    "at_risk",
    "error",
)
PLAN_COLUMNS = ("when", "vault", "certificate", "action", "ca_profile", "expires_on", "window_start", "at_risk")
PLAN_ACTIONS = ("due", "renews", "under_way", "failing", "paused", "not_managed", "cannot_renew")
AT_RISK_REASONS = (
    "expired",
    "renewal_failing",
    "cannot_renew",
    "expires_unmanaged",
    "expires_paused",
    "expires_soon",
)
# The status page draws the soonest expiries one by one and the rest as weekly counts: both bounded, whatever
# the fleet's size.
_SOONEST = 60
_WEEKS = 26
_INVENTORY_WORKERS = 8


def _iso(moment: datetime | float | None) -> str | None:
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class FleetCertificate:
    """One certificate as its vault's listing shows it, and what the app makes of it.

    Attributes:
        vault: the vault's configured name.
        certificate: the certificate's name.
        tags: its tags.
        not_before: its current version's not-before, if listed.
        expires_on: its current version's expiry, if listed.
        ca_profile: the CA profile that renews it (its ``renewal-ca`` tag, else the default), if any.
        managed: whether the app renews it (as far as the listing tells: the issuer needs a read).
        why: in words, why it is managed or not.
        paused: whether its ``renewal-paused`` tag stops renewals.
        window_start: when its renewal window opens (managed certificates with a listed validity).
        problem: ``(reason, message)`` when its tags cannot be read (``invalid_tag``, ``unknown_ca_profile``).
        record: the journal's record of its renewals, if any.
    """

    vault: str
    certificate: str
    tags: Mapping[str, str]
    not_before: datetime | None
    expires_on: datetime | None
    ca_profile: str | None
    managed: bool
    why: str
    paused: bool
    window_start: datetime | None
    problem: tuple[str, str] | None
    record: RenewalRecord | None

    @property
    def failing(self) -> bool:
        """Whether the last renewal attempt the journal recorded failed."""
        return _failed(self.record)

    @property
    def under_way(self) -> bool:
        """Whether the journal holds a renewal in progress (a version pending in Key Vault or at the CA)."""
        return self.record is not None and self.record.under_way

    def at_risk(self, now: datetime, *, horizon: timedelta, alert: timedelta) -> str | None:
        """Why the certificate is at risk (one of ``AT_RISK_REASONS``), or ``None``."""
        expires = self.expires_on
        if expires is not None and expires <= now:
            return "expired"
        if self.managed and self.failing:
            return "renewal_failing"
        if self.problem is not None:
            return "cannot_renew"
        if expires is None:
            return None
        if expires <= now + horizon and not self.managed:
            return "expires_unmanaged"
        if expires <= now + horizon and self.paused:
            return "expires_paused"
        if self.managed and expires <= now + alert:
            return "expires_soon"
        return None

    def next_renewal(self, now: datetime) -> datetime | None:
        """When the app renews it next: the journal's retry time for a renewal under way or failing, else the
        window's start (now, once it is open); ``None`` when nothing will (unmanaged, paused, failed for good)."""
        if not self.managed or self.paused or self.problem is not None:
            return None
        record = self.record
        if record is not None and (record.under_way or _failed(record)):
            return datetime.fromtimestamp(record.next_attempt_at, UTC) if record.next_attempt_at else None
        if self.window_start is None:
            return None
        return max(self.window_start, now)

    def state(self, now: datetime, *, horizon: timedelta, alert: timedelta) -> str:
        """One word for the page's timeline: ``expired``, ``failing``, ``at_risk``, ``renewing``, ``paused``,
        ``not_managed``, ``due`` or ``ok``."""
        risk = self.at_risk(now, horizon=horizon, alert=alert)
        if risk == "expired":
            return "expired"
        if risk == "renewal_failing":
            return "failing"
        if risk is not None:
            return "at_risk"
        if self.under_way:
            return "renewing"
        if self.paused:
            return "paused"
        if not self.managed:
            return "not_managed"
        if self.window_start is not None and self.window_start <= now:
            return "due"
        return "ok"


@dataclass(frozen=True, slots=True)
class Fleet:
    """Every listed certificate of every allowed vault, with the journal's records and outbox.

    Attributes:
        now: when it was read (the runtime's clock).
        certificates: the listed certificates, vault by vault in listing order.
        list_errors: ``"<vault>: <reason>"`` for each vault that could not be listed.
        records: the journal's records of the allowed vaults.
        outbox: the journal's outbox rows of the allowed vaults.
    """

    now: datetime
    certificates: tuple[FleetCertificate, ...]
    list_errors: tuple[str, ...]
    records: tuple[RenewalRecord, ...]
    outbox: tuple[OutboxItem, ...]


def fleet(runtime: Runtime) -> Fleet:
    """Read each vault's listing and the journal (no certificate is read on its own).

    A vault that cannot be listed is named in ``list_errors`` and the others are still read.

    Raises:
        RetryableError: the journal is unreachable.
    """
    settings = runtime.settings
    vault_names = [v.name for v in settings.vaults.values()]
    records = tuple(runtime.journal.records(vault_names))
    outbox = tuple(runtime.journal.outbox(vault_names))
    by_name = {(r.vault_name.lower(), r.certificate_name.lower()): r for r in records}
    certificates: list[FleetCertificate] = []
    errors: list[str] = []
    for vault in settings.vaults.values():
        try:
            listed = runtime.keyvault.vault(vault.url).list_certificate_properties()
        except RenewalError as exc:
            errors.append(f"{vault.name}: {exc.reason}")
            continue
        for item in listed:
            record = by_name.get((vault.name.lower(), item.name.lower()))
            certificates.append(_assessed(runtime, vault.name, item, record))
    return Fleet(
        now=runtime.clock(),
        certificates=tuple(certificates),
        list_errors=tuple(errors),
        records=records,
        outbox=outbox,
    )


def _assessed(
    runtime: Runtime, vault_name: str, item: ListedCertificate, record: RenewalRecord | None
) -> FleetCertificate:
    settings = runtime.settings
    problem: tuple[str, str] | None = None
    profile_name: str | None = None
    window_start: datetime | None = None
    try:
        profile = profile_for(item.tags, settings.ca_profiles, settings.default_ca_profile)
        profile_name = profile.name if profile is not None else None
        window_start = listed_window_start(settings, vault_name, item) if profile is not None else None
    except RenewalError as exc:
        problem = (exc.reason, runtime.scrub(exc.message))
    tagged = bool(tag_value(item.tags, CA_PROFILE_TAG))
    paused = is_paused(item.tags)
    if problem is not None:
        managed, why = tagged, f"{problem[0]}: {problem[1]}"
    elif profile_name is None:
        managed, why = False, f"no {CA_PROFILE_TAG} tag and no default CA profile"
    else:
        managed = True
        why = f"{CA_PROFILE_TAG} tag" if tagged else "the default CA profile"
        if paused:
            why += "; paused by the renewal-paused tag"
    return FleetCertificate(
        vault=vault_name,
        certificate=item.name,
        tags=item.tags,
        not_before=item.not_before,
        expires_on=item.expires_on,
        ca_profile=profile_name,
        managed=managed,
        why=why,
        paused=paused,
        window_start=window_start,
        problem=problem,
        record=record,
    )


def _failed(record: RenewalRecord | None) -> bool:
    return bool(record is not None and record.history and record.history[-1].get("status") == "failed")


def status_report(runtime: Runtime) -> dict[str, Any]:
    """Renewals under way, recent failures, pending and dead-lettered deliveries, the next renewal times, and the
    fleet's summary (counts, what is at risk, the soonest expiries and the weekly expiry counts).

    Costs each vault's listing and the journal's reads.

    Raises:
        RetryableError: the journal is unreachable.
    """
    seen = fleet(runtime)
    return _status(runtime, seen)


def _status(runtime: Runtime, seen: Fleet) -> dict[str, Any]:
    now = seen.now
    alert = timedelta(days=runtime.settings.alert_days)
    records = seen.records
    next_renewals = [
        {
            "vault": c.vault,
            "certificate": c.certificate,
            "expires_on": _iso(c.expires_on),
            "renews_from": _iso(c.window_start),
        }
        for c in seen.certificates
        if not c.paused and c.problem is None and c.window_start is not None and c.expires_on is not None
    ]
    at_risk = []
    for c in seen.certificates:
        reason = c.at_risk(now, horizon=alert, alert=alert)
        if reason is not None:
            at_risk.append(
                {
                    "vault": c.vault,
                    "certificate": c.certificate,
                    "expires_on": _iso(c.expires_on),
                    "reason": reason,
                    "message": _risk_message(c, reason),
                }
            )
    failures = [_record_view(runtime, r) for r in records if _failed(r)]
    pending = [_delivery_view(runtime, i) for i in seen.outbox if i.status == "pending"]
    dead = [_delivery_view(runtime, i) for i in seen.outbox if i.status == "dead"]
    rollouts = rollouts_report(runtime)
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "under_way": [_record_view(runtime, r) for r in records if r.under_way],
        "failures": failures,
        "pending_deliveries": pending,
        "dead_letters": dead,
        "next_renewals": sorted(next_renewals, key=lambda r: r["renews_from"]),
        "paused": [{"vault": c.vault, "certificate": c.certificate} for c in seen.certificates if c.paused],
        "certificate_problems": [
            {"vault": c.vault, "certificate": c.certificate, "reason": c.problem[0], "message": c.problem[1]}
            for c in seen.certificates
            if c.problem is not None and not c.paused
        ],
        "list_errors": list(seen.list_errors),
        "summary": {
            "certificates": len(seen.certificates),
            "managed": sum(1 for c in seen.certificates if c.managed),
            "not_managed": sum(1 for c in seen.certificates if not c.managed),
            "renewing": sum(1 for r in records if r.under_way),
            "failing": len(failures),
            "at_risk": len(at_risk),
            "paused": sum(1 for c in seen.certificates if c.paused),
            "pending_deliveries": len(pending),
            "dead_letters": len(dead),
            "rollouts_stalled": sum(1 for r in rollouts if r["state"] == "stalled"),
            "alert_days": runtime.settings.alert_days,
        },
        "at_risk": sorted(at_risk, key=lambda r: r["expires_on"] or ""),
        "expiring": _soonest(seen, alert),
        "expiry_by_week": _weekly(seen),
        "rollouts": rollouts,
    }


def rollouts_report(runtime: Runtime) -> list[dict[str, Any]]:
    """Each deployment target's rollout of the newest version it was pushed (docs/targets.md): ``pushed``,
    ``serving``, ``stalled`` or ``unverified``, newest first; empty when no target is configured.

    Raises:
        RetryableError: the journal's table is unreachable.
    """
    if runtime.rollouts is None:
        return []
    vault_names = [v.name for v in runtime.settings.vaults.values()]
    rows = sorted(runtime.rollouts.rollouts(vault_names), key=lambda r: r.pushed_at, reverse=True)
    return [
        {
            "vault": r.vault_name,
            "certificate": r.certificate_name,
            "target": r.target,
            "kind": r.kind,
            "version": r.version,
            "previous_version": r.previous_version,
            "state": str(r.state),
            "pushed_at": r.pushed_at.isoformat(timespec="seconds"),
            "deadline": r.deadline.isoformat(timespec="seconds"),
            "checked_at": r.checked_at.isoformat(timespec="seconds") if r.checked_at else None,
            "probe": f"{r.probe_host}:{r.probe_port}" if r.probe_host else None,
            "serves_new_version": r.seen_thumbprint == r.thumbprint if r.seen_thumbprint else None,
            "last_error": runtime.scrub(r.last_error) if r.last_error else None,
        }
        for r in rows
    ]


def _risk_message(certificate: FleetCertificate, reason: str) -> str:
    record = certificate.record
    match reason:
        case "expired":
            return "the current version has expired"
        case "renewal_failing":
            last = record.history[-1] if record is not None and record.history else {}
            return f"the last renewal failed ({last.get('reason')}): {last.get('message')}"
        case "cannot_renew":
            return certificate.why
        case "expires_unmanaged":
            return f"it expires inside the horizon and the app does not manage it ({certificate.why})"
        case "expires_paused":
            return "it expires inside the horizon and the renewal-paused tag stops its renewal"
        case _:
            return "managed, and still not renewed with fewer than RENEWAL_ALERT_DAYS left"


def _soonest(seen: Fleet, alert: timedelta) -> list[dict[str, Any]]:
    dated = sorted((c for c in seen.certificates if c.expires_on is not None), key=lambda c: c.expires_on or seen.now)
    return [
        {
            "vault": c.vault,
            "certificate": c.certificate,
            "expires_on": _iso(c.expires_on),
            "renews_from": _iso(c.window_start),
            "state": c.state(seen.now, horizon=alert, alert=alert),
        }
        for c in dated[:_SOONEST]
    ]


def _weekly(seen: Fleet) -> dict[str, Any]:
    """How many certificates expire in each of the next ``_WEEKS`` weeks (week 0 starts now), before now, and
    after the last week."""
    counts = [0] * _WEEKS
    expired = later = 0
    for c in seen.certificates:
        if c.expires_on is None:
            continue
        week = int((c.expires_on - seen.now).total_seconds() // (7 * 86400))
        if c.expires_on <= seen.now:
            expired += 1
        elif week >= _WEEKS:
            later += 1
        else:
            counts[week] += 1
    return {"starting": _iso(seen.now), "weeks": counts, "expired": expired, "later": later}


def plan(runtime: Runtime, *, days: float = 30.0) -> dict[str, Any]:
    """What renews when over the next ``days`` days, and what is at risk: one row per certificate whose window
    opens, whose renewal is under way or failing, or that expires, inside the horizon (``PLAN_COLUMNS``; ``when``
    is the next renewal, or the expiry for a certificate nothing renews). Costs only the listings and the journal.

    Raises:
        RetryableError: the journal is unreachable.
    """
    seen = fleet(runtime)
    now = seen.now
    horizon = now + timedelta(days=days)
    alert = timedelta(days=runtime.settings.alert_days)
    rows = []
    for c in seen.certificates:
        risk = c.at_risk(now, horizon=timedelta(days=days), alert=alert)
        action = _action(c, now)
        when = c.next_renewal(now)
        opens_inside = c.window_start is not None and c.window_start <= horizon
        expires_inside = c.expires_on is not None and c.expires_on <= horizon
        planned = action in ("under_way", "failing") or (opens_inside and action in ("due", "renews"))
        if risk is None and not planned and not expires_inside:
            continue
        rows.append(
            {
                "when": _iso(when if when is not None else c.expires_on),
                "vault": c.vault,
                "certificate": c.certificate,
                "action": action,
                "ca_profile": c.ca_profile,
                "expires_on": _iso(c.expires_on),
                "window_start": _iso(c.window_start),
                "at_risk": risk,
            }
        )
    rows.sort(key=lambda r: (r["when"] or "9999", r["vault"], r["certificate"]))
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "days": days,
        "renewals": rows,
        "at_risk": sum(1 for r in rows if r["at_risk"]),
        "list_errors": list(seen.list_errors),
    }


def _action(c: FleetCertificate, now: datetime) -> str:
    if c.problem is not None:
        return "cannot_renew"
    if not c.managed:
        return "not_managed"
    if c.paused:
        return "paused"
    if c.failing:
        return "failing"
    if c.under_way:
        return "under_way"
    if c.window_start is not None and c.window_start <= now:
        return "due"
    return "renews"


def deliveries_report(runtime: Runtime) -> dict[str, Any]:
    """The outbox rows still pending and those dead-lettered (reads the journal only).

    Raises:
        RetryableError: the journal is unreachable.
    """
    vault_names = [v.name for v in runtime.settings.vaults.values()]
    outbox = runtime.journal.outbox(vault_names)
    return {
        "generated_at": runtime.clock().isoformat(timespec="seconds"),
        "pending": [_delivery_view(runtime, i) for i in outbox if i.status == "pending"],
        "dead_letters": [_delivery_view(runtime, i) for i in outbox if i.status == "dead"],
    }


def inventory(
    runtime: Runtime,
    *,
    workers: int = _INVENTORY_WORKERS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Every certificate of every allowed vault, one row each (``INVENTORY_COLUMNS``): the listing's view, plus
    issuer, subject and SANs from a read of each certificate (``workers`` at a time). ``progress(done, total)`` is
    called after each read. A certificate that cannot be read keeps its listing's columns and says why in
    ``error``; a vault that cannot be listed is named in ``list_errors``.

    Raises:
        RetryableError: the journal is unreachable.
    """
    seen = fleet(runtime)
    now = seen.now
    alert = timedelta(days=runtime.settings.alert_days)
    total = len(seen.certificates)
    urls = {v.name: v.url for v in runtime.settings.vaults.values()}
    done = 0

    def row(c: FleetCertificate) -> dict[str, Any]:
        return _inventory_row(runtime, c, urls[c.vault], now=now, alert=alert)

    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="inventory") as pool:
        for result in pool.map(row, seen.certificates):
            rows.append(result)
            done += 1
            if progress is not None:
                progress(done, total)
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "certificates": rows,
        "list_errors": list(seen.list_errors),
    }


def _inventory_row(
    runtime: Runtime, c: FleetCertificate, vault_url: str, *, now: datetime, alert: timedelta
) -> dict[str, Any]:
    record = c.record
    last = record.history[-1] if record is not None and record.history else {}
    managed, why = c.managed, c.why
    issuer = issued_by = subject = None
    sans: list[str] = []
    error = None
    try:
        snapshot = runtime.keyvault.vault(vault_url).read(c.certificate)
    except RenewalError as exc:
        error = f"{exc.reason}: {runtime.scrub(exc.message)}"
    else:
        policy = snapshot.policy
        issuer = snapshot.state.issuer_name
        subject = getattr(policy, "subject", None)
        sans = list(getattr(policy, "san_dns_names", None) or [])
        if snapshot.certificate_der:
            issued_by, subject, sans = _names_of(snapshot.certificate_der, subject, sans)
        if managed and issuer is not None and issuer.strip().lower() != UNKNOWN_ISSUER:
            managed, why = False, f"issuer {issuer[:60]!r} is renewed by Key Vault itself"
    risk = c.at_risk(now, horizon=alert, alert=alert)
    if c.managed and not managed:  # Key Vault renews it itself: only its expiry is worth a word
        risk = "expired" if risk == "expired" else None
    return {
        "vault": c.vault,
        "certificate": c.certificate,
        "managed": managed,
        "why": why,
        "ca_profile": c.ca_profile if managed else None,
        "issuer": issuer,
        "issued_by": issued_by,
        "subject": subject,
        "sans": sans,
        "not_before": _iso(c.not_before),
        "expires_on": _iso(c.expires_on),
        "window_start": _iso(c.window_start) if managed else None,
        "next_renewal": _iso(c.next_renewal(now)) if managed else None,
        "journal_step": str(record.step) if record is not None else None,
        "last_outcome": last.get("status"),
        "last_reason": last.get("reason"),
        "at_risk": risk,
        "error": error,
    }


def _names_of(der: bytes, subject: str | None, sans: Sequence[str]) -> tuple[str | None, str | None, list[str]]:
    """The issuer, subject and SANs the current version's certificate carries (the policy's when unreadable)."""
    from cryptography import x509

    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return None, subject, list(sans)
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in extension if isinstance(n, x509.DNSName | x509.IPAddress | x509.RFC822Name)]
    except (x509.ExtensionNotFound, ValueError):
        names = list(sans)
    return certificate.issuer.rfc4514_string(), certificate.subject.rfc4514_string(), names


def _record_view(runtime: Runtime, record: RenewalRecord) -> dict[str, Any]:
    return {
        "vault": record.vault_name,
        "certificate": record.certificate_name,
        "step": record.step,
        "ca_profile": record.ca_profile,
        "previous_version": record.previous_version,
        "new_version": record.new_version,
        "ca_reference": record.ca_reference,
        "attempts": record.attempts,
        "next_attempt_at": _iso(record.next_attempt_at),
        "last_reason": record.last_reason,
        "last_error": runtime.scrub(record.last_error) if record.last_error else None,
        "claimed_by": record.claim_owner,
        "last_outcome": record.history[-1] if record.history else None,
    }


def _delivery_view(runtime: Runtime, item: OutboxItem) -> dict[str, Any]:
    return {
        "vault": item.vault_name,
        "certificate": item.certificate_name,
        "version": item.version,
        "endpoint": item.endpoint,
        "webhook_id": item.webhook_id,
        "attempts": item.attempts,
        "created_at": _iso(item.created_at),
        "next_attempt_at": _iso(item.next_attempt_at),
        "last_error": runtime.scrub(item.last_error) if item.last_error else None,
    }
