"""Decide: renew, resume or skip, from the request and the certificate's current state."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from renewal.ca import CAProfile
from renewal.errors import PermanentError
from renewal.intake import RenewalRequest
from renewal.plan import CertificateState, Renew, Resume, Skip, decide

EXP = datetime(2026, 12, 1, tzinfo=UTC)
CORP = CAProfile(name="corp", adapter="local")
LAB = CAProfile(name="lab", adapter="local")
PROFILES = {"corp": CORP, "lab": LAB}

REQUEST = RenewalRequest(
    vault_name="kv1",
    vault_url="https://kv1.vault.azure.net",
    certificate_name="web",
    version="aaaa",
    not_before=EXP - timedelta(days=365),
    expires_on=EXP,
    event_type="Microsoft.KeyVault.CertificateNearExpiry",
    event_id="e1",
)
CURRENT = CertificateState(
    name="web",
    version="aaaa",
    issuer_name="Unknown",
    expires_on=EXP,
    has_certificate=True,
    tags={"renewal-ca": "corp"},
    validity_months=12,
    key_usage=("digitalSignature",),
    ekus=("1.3.6.1.5.5.7.3.1",),
)
PLACEHOLDER = dataclasses.replace(CURRENT, version="bbbb", expires_on=None, has_certificate=False)
LATER = dataclasses.replace(CURRENT, version="bbbb", expires_on=EXP + timedelta(days=365))


def state(**changes: object) -> CertificateState:
    return dataclasses.replace(CURRENT, **changes)  # type: ignore[arg-type]


def request(**changes: object) -> RenewalRequest:
    return dataclasses.replace(REQUEST, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("req", "current", "default", "expected"),
    [
        (REQUEST, CURRENT, None, Renew(CORP)),
        (REQUEST, state(tags={}), "lab", Renew(LAB)),
        (REQUEST, state(tags={"renewal-ca": "corp"}), "lab", Renew(CORP)),
        (REQUEST, state(tags={"Renewal-CA": " corp "}), None, Renew(CORP)),
        (REQUEST, PLACEHOLDER, None, Resume(CORP)),
        (REQUEST, state(issuer_name="unknown"), None, Renew(CORP)),
        (request(trigger="manual", expires_on=None, version=None, event_type="manual"), LATER, None, Renew(CORP)),
        (request(trigger="sweep", expires_on=None, version=None, event_type="sweep"), LATER, None, Renew(CORP)),
        (request(expires_on=None, version=None), LATER, None, Renew(CORP)),
        (request(expires_on=None), CURRENT, None, Renew(CORP)),
        (request(version="AAAA", expires_on=None), CURRENT, None, Renew(CORP)),
        (request(event_type="Microsoft.KeyVault.CertificateExpired"), CURRENT, None, Renew(CORP)),
    ],
    ids=[
        "tag-chooses-profile",
        "default-profile-without-tag",
        "tag-wins-over-default",
        "tag-key-case-and-value-spaces",
        "placeholder-seen-resumes",
        "unknown-issuer-any-case",
        "manual-renews-even-if-later",
        "sweep-renews-even-if-later",
        "event-without-expiry-or-version-renews",
        "same-version-without-expiry-renews",
        "version-compared-case-insensitively",
        "expired-event-renews",
    ],
)
def test_renew_or_resume(req: RenewalRequest, current: CertificateState, default: str | None, expected: object) -> None:
    """Managed certificates with issuer Unknown are renewed with the chosen profile, or resumed when pending."""
    assert decide(req, current, profiles=PROFILES, default_profile=default) == expected


def test_previous_version_returned_while_pending_gives_renew() -> None:
    """When get-latest returns the previous version during a pending renewal, decide says Renew (the shell
    turns Key Vault's 409 into a resume)."""
    assert decide(REQUEST, CURRENT, profiles=PROFILES, default_profile=None) == Renew(CORP)


@pytest.mark.parametrize(
    ("req", "current", "default", "reason"),
    [
        (REQUEST, LATER, None, "already_renewed"),
        (request(expires_on=None), LATER, None, "already_renewed"),
        (REQUEST, state(tags={}), None, "not_managed"),
        (REQUEST, state(tags={"owner": "me"}), None, "not_managed"),
        (REQUEST, state(issuer_name="Self"), None, "issuer_renews_itself"),
        (REQUEST, state(issuer_name="self"), None, "issuer_renews_itself"),
        (REQUEST, state(issuer_name="DigiCert"), None, "issuer_renews_itself"),
        (REQUEST, state(issuer_name="GLOBALSIGN"), None, "issuer_renews_itself"),
        (REQUEST, state(issuer_name="my-digicert-issuer"), None, "issuer_renews_itself"),
        (REQUEST, state(issuer_name=None), None, "issuer_renews_itself"),
        (REQUEST, state(issuer_name="Self", tags={}), None, "not_managed"),
    ],
    ids=[
        "later-expiry",
        "other-version-without-expiry",
        "no-tag-no-default",
        "unrelated-tags",
        "self",
        "self-lower",
        "digicert",
        "globalsign-upper",
        "named-issuer-object",
        "no-issuer",
        "unmanaged-checked-first",
    ],
)
def test_skips(req: RenewalRequest, current: CertificateState, default: str | None, reason: str) -> None:
    """Each skip rule gives its machine reason."""
    plan = decide(req, current, profiles=PROFILES, default_profile=default)
    assert isinstance(plan, Skip)
    assert plan.reason == reason
    assert plan.message


def test_named_issuer_skip_message_says_key_vault_renews_it() -> None:
    """A named issuer object is skipped with a message saying Key Vault renews it."""
    plan = decide(REQUEST, state(issuer_name="corp-issuer"), profiles=PROFILES, default_profile=None)
    assert isinstance(plan, Skip)
    assert "Key Vault renews itself" in plan.message


def test_same_expiry_is_not_already_renewed() -> None:
    """A current version expiring exactly when the event's does is the event's version: renew."""
    plan = decide(REQUEST, state(version="bbbb"), profiles=PROFILES, default_profile=None)
    assert plan == Renew(CORP)


@pytest.mark.parametrize(
    ("tags", "default"),
    [({"renewal-ca": "nope"}, None), ({"renewal-ca": "nope"}, "corp"), ({}, "missing")],
    ids=["tag", "tag-despite-default", "default"],
)
def test_unknown_profile_raises(tags: dict[str, str], default: str | None) -> None:
    """A tag or default naming an unconfigured profile raises PermanentError(unknown_ca_profile)."""
    with pytest.raises(PermanentError) as caught:
        decide(REQUEST, state(tags=tags), profiles=PROFILES, default_profile=default)
    assert caught.value.reason == "unknown_ca_profile"
