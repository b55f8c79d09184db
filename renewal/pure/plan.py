"""Decide: renew, resume or skip one certificate (pure, no I/O).

An event is a hint, not an order: the decision is taken from the certificate's state as Key Vault reports it.
The rules are docs/architecture.md §1. Skip, with a reason, when the certificate

- is ``not_managed``: no ``renewal-ca`` tag and no default CA profile;
- has an issuer Key Vault renews by itself (``issuer_renews_itself``): ``Self``, a partner CA (DigiCert,
  GlobalSign) or any named issuer object; only issuer ``Unknown`` is ours to renew;
- is ``paused`` by its ``renewal-paused`` tag (a manual renewal with ``force`` goes ahead);
- was ``already_renewed``: for an event, the current version expires later than the event's version (a duplicate
  or late delivery), or, when the event carries no expiry, the current version is not the event's version; and
  for any trigger, the journal says this very version was renewed already (a version is renewed at most once);
- is ``not_due``: its current version has not entered its renewal window (the sweep's window, from the version's
  own ``nbf``/``exp``; a CA's suggestion, ACME ARI, may bring it forward). Key Vault fires ``CertificateNearExpiry``
  at a fixed 30 days before expiry, so a version living less than 30 days gets it at once after its merge;
  renewing on it would loop. An expired version (by Key Vault's ``exp``) is always due;
- was ``recently_renewed``: a manual renewal of a version this app merged inside the cooldown, so that a retried
  HTTP call does not make two versions (``force`` goes ahead).

A renewal already under way is resumed under both behaviours of "get latest" while a version is pending: the
pending placeholder (no certificate yet) gives ``Resume``; the previous version gives ``Renew``, and the Key
Vault shell turns the 409 Conflict of the create into a resume.

A ``renewal-ca`` tag naming a profile that does not exist raises ``PermanentError(reason="unknown_ca_profile")``
rather than skipping: the operator asked for management and it cannot happen, so it must show up as a failure.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from renewal.ca._protocol import CAProfile
from renewal.errors import PermanentError
from renewal.pure.intake import CERTIFICATE_EXPIRED, RenewalRequest
from renewal.pure.tags import CA_PROFILE_TAG, PAUSED_TAG, is_paused, renewed_by_the_app, tag_value
from renewal.pure.window import WindowRule, window_key
from renewal.settings import Settings

__all__ = [
    "CA_PROFILE_TAG",
    "CertificateState",
    "ListedCertificate",
    "Plan",
    "Renew",
    "Resume",
    "Skip",
    "decide",
    "listed_window_start",
    "profile_for",
    "window_start_of",
]

# Key Vault's issuer names: "Self" for self-signed, "Unknown" for a CSR signed outside Key Vault, and the
# partner CAs "DigiCert" and "GlobalSign", which Key Vault renews itself (like any issuer object it knows).
UNKNOWN_ISSUER = "unknown"
_SELF_OR_PARTNER = frozenset({"self", "digicert", "globalsign"})


@dataclass(frozen=True, slots=True)
class CertificateState:
    """The current certificate as one "get latest certificate with policy" request shows it.

    Attributes:
        name: the certificate's name.
        version: the latest version, or ``None`` if Key Vault gave none.
        issuer_name: the policy's issuer name (``Unknown``, ``Self``, ``DigiCert``, or an issuer object name).
        expires_on: the version's expiry, tz-aware; ``None`` for a pending placeholder.
        not_before: the version's not-before, tz-aware; ``None`` for a pending placeholder.
        created_on: when Key Vault created the version, tz-aware, if it said.
        has_certificate: ``False`` for the placeholder Key Vault returns while a version is pending (no ``cer``).
        tags: the certificate's tags.
        validity_months: the policy's validity, if set.
        key_usage: the policy's key usage names.
        ekus: the policy's extended key usage OIDs.
    """

    name: str
    version: str | None
    issuer_name: str | None
    expires_on: datetime | None
    has_certificate: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    not_before: datetime | None = None
    created_on: datetime | None = None
    validity_months: int | None = None
    key_usage: tuple[str, ...] = ()
    ekus: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListedCertificate:
    """A certificate as the vault's list shows it (no policy: reading that costs a request per certificate).

    Attributes:
        name: the certificate's name.
        tags: its tags.
        not_before: its current version's not-before.
        expires_on: its current version's expiry.
    """

    name: str
    tags: dict[str, str]
    not_before: datetime | None
    expires_on: datetime | None


@dataclass(frozen=True, slots=True)
class Renew:
    """Start a new version and have ``profile`` sign it.

    Attributes:
        profile: the CA profile to use.
    """

    profile: CAProfile


@dataclass(frozen=True, slots=True)
class Resume:
    """A renewal is already under way (the pending placeholder was seen); reuse the pending operation's CSR.

    Attributes:
        profile: the CA profile to use.
    """

    profile: CAProfile


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to do.

    Attributes:
        reason: ``not_managed``, ``issuer_renews_itself``, ``paused``, ``already_renewed``, ``not_due`` or
            ``recently_renewed``.
        message: a human explanation.
        renews_from: for ``not_due``, when the renewal window opens.
    """

    reason: str
    message: str
    renews_from: datetime | None = None


Plan = Renew | Resume | Skip


def decide(
    request: RenewalRequest,
    current: CertificateState,
    *,
    profiles: Mapping[str, CAProfile],
    default_profile: str | None,
    now: datetime,
    window: WindowRule,
    renewed_versions: Collection[str] = (),
    resuming: bool = False,
    suggested_start: datetime | None = None,
    manual_cooldown: timedelta = timedelta(minutes=5),
    sweep_lead: timedelta = timedelta(0),
) -> Plan:
    """Decide what to do about ``request`` given the certificate's ``current`` state at ``now``.

    ``renewed_versions`` are the versions the journal says were renewed already; ``resuming`` says the journal
    holds a renewal of the current version under way (it goes on whatever the window says); ``suggested_start``
    is an earlier window start the CA suggested (ACME ARI), if any, as is ``request.suggested_start``.
    ``sweep_lead`` lets the sweep renew at the run nearest the window's start (half its interval early) rather
    than at the first run after it, which would lose up to a whole interval on every renewal.

    Raises:
        PermanentError: reason ``unknown_ca_profile``, when the ``renewal-ca`` tag (or the default) names a
            profile that is not configured; reason ``invalid_tag``, when the ``renewal-window`` tag does not parse.
    """
    profile = profile_for(current.tags, profiles, default_profile)
    if profile is None:
        return Skip("not_managed", f"no {CA_PROFILE_TAG} tag and no default CA profile")

    issuer = (current.issuer_name or "").strip()
    if issuer.lower() != UNKNOWN_ISSUER:
        if issuer.lower() in _SELF_OR_PARTNER:
            message = f"issuer {issuer!r} is renewed by Key Vault itself"
        else:
            message = (
                f"issuer {issuer[:60]!r} is a Key Vault issuer object, which Key Vault renews itself; "
                "only issuer 'Unknown' is renewed here"
            )
        return Skip("issuer_renews_itself", message)

    forced = request.trigger == "manual" and request.force
    if is_paused(current.tags) and not forced:
        return Skip("paused", f"the {PAUSED_TAG} tag pauses renewals of this certificate")

    if not current.has_certificate:
        return Resume(profile)

    if request.trigger == "event_grid":
        already = _already_renewed(request, current)
        if already:
            return Skip("already_renewed", already)
    if current.version and current.version.lower() in {v.lower() for v in renewed_versions} and not forced:
        return Skip("already_renewed", f"version {current.version} was renewed already; a version is renewed once")

    if resuming:
        return Renew(profile)
    if request.trigger == "manual":
        created = current.created_on
        ours = renewed_by_the_app(current.tags)
        if not forced and ours and created is not None and now - created < manual_cooldown:
            return Skip(
                "recently_renewed",
                f"the current version was created {_ago(now - created)} ago, inside the "
                f"{_ago(manual_cooldown)} cooldown; renew with force to make another",
            )
        return Renew(profile)

    not_yet = _not_yet_due(request, current, now=now, window=window, suggested_start=suggested_start, lead=sweep_lead)
    return not_yet or Renew(profile)


def _not_yet_due(
    request: RenewalRequest,
    current: CertificateState,
    *,
    now: datetime,
    window: WindowRule,
    suggested_start: datetime | None,
    lead: timedelta,
) -> Skip | None:
    """``not_due`` with the window's start, unless the current version is expired or inside its window.

    The CA's suggestions bring the start forward; the sweep renews at its run nearest the start (``lead``).
    """
    if current.expires_on is not None and current.expires_on <= now:
        return None
    start = window_start_of(current, window=window, vault_name=request.vault_name)
    if start is None:
        return None
    start = min([start, *(s for s in (suggested_start, request.suggested_start) if s is not None)])
    if request.trigger == "sweep":
        start -= lead
    if now >= start:
        return None
    expired_event = request.event_type == CERTIFICATE_EXPIRED
    hint = " (a CertificateExpired event, but Key Vault says the version has not expired)" if expired_event else ""
    return Skip(
        "not_due",
        f"the current version is not due: its renewal window opens {start.isoformat(timespec='seconds')}{hint}",
        renews_from=start,
    )


def listed_window_start(settings: Settings, vault_name: str, listed: ListedCertificate) -> datetime | None:
    """When a certificate as a vault's listing shows it starts renewing; ``None`` when it is not managed or the
    listing gives no validity. The sweep and the status report both ask this, and agree with ``decide``.

    Raises:
        PermanentError: reason ``invalid_tag``, when its ``renewal-window`` tag does not parse.
    """
    managed = bool(tag_value(listed.tags, CA_PROFILE_TAG)) or settings.default_ca_profile is not None
    if not managed or listed.not_before is None or listed.expires_on is None:
        return None
    window = WindowRule(fraction=settings.window_fraction, jitter=settings.window_jitter, lead=settings.window_lead)
    key = window_key(vault_name, listed.name, listed.not_before)
    return window.start(not_before=listed.not_before, expires_on=listed.expires_on, tags=listed.tags, key=key)


def window_start_of(current: CertificateState, *, window: WindowRule, vault_name: str) -> datetime | None:
    """When the current version's renewal window opens; ``None`` when Key Vault gave no validity.

    Raises:
        PermanentError: reason ``invalid_tag``, when the ``renewal-window`` tag does not parse.
    """
    if current.not_before is None or current.expires_on is None:
        return None
    key = window_key(vault_name, current.name, current.not_before)
    return window.start(not_before=current.not_before, expires_on=current.expires_on, tags=current.tags, key=key)


def profile_for(
    tags: Mapping[str, str], profiles: Mapping[str, CAProfile], default_profile: str | None
) -> CAProfile | None:
    """The CA profile a certificate uses: its ``renewal-ca`` tag, else the default; ``None`` when unmanaged.

    Raises:
        PermanentError: reason ``unknown_ca_profile``, when the tag or default names an unconfigured profile.
    """
    tagged = tag_value(tags, CA_PROFILE_TAG) or None
    name = tagged or default_profile
    if name is None:
        return None
    profile = profiles.get(name)
    if profile is None:
        source = f"the {CA_PROFILE_TAG} tag" if tagged else "the default CA profile"
        known = ", ".join(sorted(profiles)) or "none"
        raise PermanentError(
            f"{source} names CA profile {name[:60]!r}, which is not configured (configured: {known})",
            reason="unknown_ca_profile",
        )
    return profile


def _already_renewed(request: RenewalRequest, current: CertificateState) -> str | None:
    if request.expires_on is not None and current.expires_on is not None:
        if current.expires_on > request.expires_on:
            return (
                f"the current version expires {current.expires_on.isoformat()}, "
                f"later than the event's {request.expires_on.isoformat()}"
            )
        return None
    if request.version and current.version and request.version.lower() != current.version.lower():
        return f"the current version {current.version} is not the event's version {request.version}"
    return None


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
