"""Decide: renew, resume or skip one certificate (pure, no I/O).

The rules are DESIGN §1 step 2. Skip, with a reason, when the certificate

- is ``not_managed``: no ``renewal-ca`` tag and no default CA profile;
- has an issuer Key Vault renews by itself (``issuer_renews_itself``): ``Self``, a partner CA (DigiCert,
  GlobalSign) or any named issuer object; only issuer ``Unknown`` is ours to renew;
- was ``already_renewed``: for an event, the current version expires later than the event's version (a duplicate
  or late delivery), or, when the event carries no expiry, the current version is not the event's version.

A renewal already under way is resumed under both behaviours of "get latest" while a version is pending: the
pending placeholder (no certificate yet) gives ``Resume``; the previous version gives ``Renew``, and the Key
Vault shell turns the 409 Conflict of the create into a resume.

A ``renewal-ca`` tag naming a profile that does not exist raises ``PermanentError(reason="unknown_ca_profile")``
rather than skipping: the operator asked for management and it cannot happen, so it must show up as a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from renewal.ca._protocol import CAProfile
from renewal.errors import PermanentError
from renewal.intake import RenewalRequest

__all__ = ["CA_PROFILE_TAG", "CertificateState", "Plan", "Renew", "Resume", "Skip", "decide", "profile_for"]

CA_PROFILE_TAG = "renewal-ca"

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
    validity_months: int | None = None
    key_usage: tuple[str, ...] = ()
    ekus: tuple[str, ...] = ()


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
        reason: ``not_managed``, ``issuer_renews_itself`` or ``already_renewed``.
        message: a human explanation.
    """

    reason: str
    message: str


Plan = Renew | Resume | Skip


def decide(
    request: RenewalRequest,
    current: CertificateState,
    *,
    profiles: Mapping[str, CAProfile],
    default_profile: str | None,
) -> Plan:
    """Decide what to do about ``request`` given the certificate's ``current`` state.

    Raises:
        PermanentError: reason ``unknown_ca_profile``, when the ``renewal-ca`` tag (or the default) names a
            profile that is not configured.
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
                f"issuer {issuer!r} is a Key Vault issuer object, which Key Vault renews itself; "
                "only issuer 'Unknown' is renewed here"
            )
        return Skip("issuer_renews_itself", message)

    if not current.has_certificate:
        return Resume(profile)

    if request.trigger == "event_grid":
        already = _already_renewed(request, current)
        if already:
            return Skip("already_renewed", already)
    return Renew(profile)


def profile_for(
    tags: Mapping[str, str], profiles: Mapping[str, CAProfile], default_profile: str | None
) -> CAProfile | None:
    """The CA profile a certificate uses: its ``renewal-ca`` tag, else the default; ``None`` when unmanaged.

    Raises:
        PermanentError: reason ``unknown_ca_profile``, when the tag or default names an unconfigured profile.
    """
    tagged = next((v.strip() for k, v in tags.items() if k.strip().lower() == CA_PROFILE_TAG), None)
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
