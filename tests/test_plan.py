"""Decide: renew, resume or skip, from the request and the certificate's current state."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from renewal.ca import CAProfile
from renewal.errors import PermanentError
from renewal.pure.intake import RenewalRequest
from renewal.pure.plan import CertificateState, Plan, Renew, Resume, Skip, decide
from renewal.pure.window import WindowRule

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


NOW = EXP - timedelta(days=1)
WINDOW = WindowRule(fraction=2 / 3, jitter=0.0)


def decide_now(
    req: RenewalRequest,
    current: CertificateState,
    *,
    profiles: dict[str, CAProfile] = PROFILES,
    default_profile: str | None = None,
    now: datetime = NOW,
    **options: Any,
) -> Plan:
    """``decide`` a day before ``EXP`` under the default window, unless told otherwise."""
    return decide(req, current, profiles=profiles, default_profile=default_profile, now=now, window=WINDOW, **options)


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
    assert decide_now(req, current, profiles=PROFILES, default_profile=default) == expected


def test_previous_version_returned_while_pending_gives_renew() -> None:
    """When get-latest returns the previous version during a pending renewal, decide says Renew (the shell
    turns Key Vault's 409 into a resume)."""
    assert decide_now(REQUEST, CURRENT, profiles=PROFILES, default_profile=None) == Renew(CORP)


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
    plan = decide_now(req, current, profiles=PROFILES, default_profile=default)
    assert isinstance(plan, Skip)
    assert plan.reason == reason
    assert plan.message


def test_named_issuer_skip_message_says_key_vault_renews_it() -> None:
    """A named issuer object is skipped with a message saying Key Vault renews it."""
    plan = decide_now(REQUEST, state(issuer_name="corp-issuer"), profiles=PROFILES, default_profile=None)
    assert isinstance(plan, Skip)
    assert "Key Vault renews itself" in plan.message


def test_same_expiry_is_not_already_renewed() -> None:
    """A current version expiring exactly when the event's does is the event's version: renew."""
    plan = decide_now(REQUEST, state(version="bbbb"), profiles=PROFILES, default_profile=None)
    assert plan == Renew(CORP)


@pytest.mark.parametrize(
    ("tags", "default"),
    [({"renewal-ca": "nope"}, None), ({"renewal-ca": "nope"}, "corp"), ({}, "missing")],
    ids=["tag", "tag-despite-default", "default"],
)
def test_unknown_profile_raises(tags: dict[str, str], default: str | None) -> None:
    """A tag or default naming an unconfigured profile raises PermanentError(unknown_ca_profile)."""
    with pytest.raises(PermanentError) as caught:
        decide_now(REQUEST, state(tags=tags), profiles=PROFILES, default_profile=default)
    assert caught.value.reason == "unknown_ca_profile"


# --- renewing on the certificate's own clock ---------------------------------------------------------------

TWO_DAYS = state(not_before=NOW - timedelta(minutes=1), expires_on=NOW + timedelta(days=2) - timedelta(minutes=1))


def test_near_expiry_for_a_short_lived_version_just_merged_is_not_due() -> None:
    """A 2-day certificate merged a minute ago gets NearExpiry at once (30 days is longer): skipped not_due."""
    plan = decide_now(request(expires_on=TWO_DAYS.expires_on), TWO_DAYS)
    assert isinstance(plan, Skip)
    assert plan.reason == "not_due"
    assert plan.renews_from == TWO_DAYS.not_before + timedelta(days=2) * 2 / 3  # type: ignore[operator]
    assert "opens" in plan.message


def test_the_window_comes_from_key_vault_not_from_the_event() -> None:
    """An event for the current version that carries no validity of its own is judged by Key Vault's nbf/exp."""
    plan = decide_now(request(expires_on=None, not_before=None), TWO_DAYS)
    assert isinstance(plan, Skip)
    assert plan.reason == "not_due"


def test_a_replayed_near_expiry_for_a_year_long_version_with_300_days_left_is_not_due() -> None:
    """A NearExpiry event replayed for a version with 300 days left does not renew it."""
    fresh = state(not_before=NOW - timedelta(days=65), expires_on=NOW + timedelta(days=300))
    plan = decide_now(request(expires_on=fresh.expires_on), fresh)
    assert isinstance(plan, Skip)
    assert plan.reason == "not_due"


def test_once_two_thirds_of_the_lifetime_have_passed_the_version_is_due() -> None:
    """The same 2-day version is renewed once its window has opened."""
    later = NOW + timedelta(days=2) * 2 / 3
    assert decide_now(request(expires_on=TWO_DAYS.expires_on), TWO_DAYS, now=later) == Renew(CORP)


def test_the_sweep_follows_the_same_window() -> None:
    """A sweep request for a version not yet due is skipped not_due, like an event."""
    sweep = request(trigger="sweep", expires_on=None, version=None, event_type="sweep")
    plan = decide_now(sweep, TWO_DAYS)
    assert isinstance(plan, Skip)
    assert plan.reason == "not_due"


def test_an_expired_version_is_always_renewed() -> None:
    """A version Key Vault reports expired is renewed whatever the window says."""
    expired = state(
        not_before=NOW - timedelta(days=10),
        expires_on=NOW - timedelta(seconds=1),
        tags={"renewal-ca": "corp", "renewal-window": "1d"},
    )
    event = request(event_type="Microsoft.KeyVault.CertificateExpired", expires_on=expired.expires_on)
    assert decide_now(event, expired) == Renew(CORP)


def test_an_expired_event_for_a_version_key_vault_says_is_fresh_is_not_due() -> None:
    """CertificateExpired about a version that Key Vault says expires in two days is a hint, not an order."""
    event = request(event_type="Microsoft.KeyVault.CertificateExpired", expires_on=TWO_DAYS.expires_on)
    plan = decide_now(event, TWO_DAYS)
    assert isinstance(plan, Skip)
    assert plan.reason == "not_due"
    assert "CertificateExpired" in plan.message


def test_a_suggested_start_from_the_ca_brings_the_window_forward() -> None:
    """ACME ARI's suggested start, when earlier than ours and past, makes the version due."""
    suggested = NOW - timedelta(minutes=5)
    assert decide_now(request(expires_on=None), TWO_DAYS, suggested_start=suggested) == Renew(CORP)
    assert decide_now(request(trigger="sweep", suggested_start=suggested), TWO_DAYS) == Renew(CORP)


def test_a_version_is_renewed_at_most_once() -> None:
    """When the journal says this very version was renewed, no event, sweep or CA suggestion renews it again."""
    due = state(not_before=NOW - timedelta(days=300), expires_on=NOW + timedelta(days=1))
    for req in (request(), request(trigger="sweep", expires_on=None, version=None, event_type="sweep")):
        plan = decide_now(req, due, renewed_versions=("AAAA",), suggested_start=NOW - timedelta(days=1))
        assert isinstance(plan, Skip)
        assert plan.reason == "already_renewed"


def test_a_renewal_under_way_goes_on_whatever_the_window() -> None:
    """A forced manual renewal that was begun is resumed by the sweep even though the version is not due."""
    sweep = request(trigger="sweep", expires_on=None, version=None, event_type="sweep")
    assert decide_now(sweep, TWO_DAYS, resuming=True) == Renew(CORP)


def test_an_unreadable_window_tag_is_a_permanent_error() -> None:
    """A renewal-window tag that does not parse fails this certificate with reason invalid_tag."""
    broken = state(not_before=NOW - timedelta(days=1), tags={"renewal-ca": "corp", "renewal-window": "999999999d"})
    with pytest.raises(PermanentError) as raised:
        decide_now(request(), broken)
    assert raised.value.reason == "invalid_tag"


# --- pause and the manual cooldown -------------------------------------------------------------------------

PAUSED = state(tags={"renewal-ca": "corp", "Renewal-Paused": "true"})
MANUAL = request(trigger="manual", expires_on=None, version=None, event_type="manual")


@pytest.mark.parametrize(
    "req",
    [REQUEST, request(trigger="sweep", expires_on=None, version=None, event_type="sweep"), MANUAL],
    ids=["event", "sweep", "manual"],
)
def test_the_pause_tag_stops_events_sweep_and_manual_renewals(req: RenewalRequest) -> None:
    """renewal-paused=true skips the certificate with reason paused, whatever the trigger."""
    plan = decide_now(req, PAUSED)
    assert isinstance(plan, Skip)
    assert plan.reason == "paused"


def test_a_forced_manual_renewal_goes_past_the_pause() -> None:
    """A manual renewal with force renews a paused certificate; force means nothing to other triggers."""
    assert decide_now(dataclasses.replace(MANUAL, force=True), PAUSED) == Renew(CORP)
    plan = decide_now(dataclasses.replace(REQUEST, force=True), PAUSED)
    assert isinstance(plan, Skip)
    assert plan.reason == "paused"


@pytest.mark.parametrize("value", ["false", "no", "", "truthy", "TRUE\u212a"])
def test_only_a_true_pause_tag_pauses(value: str) -> None:
    """A pause tag that does not say true does not pause."""
    assert decide_now(REQUEST, state(tags={"renewal-ca": "corp", "renewal-paused": value})) == Renew(CORP)


def test_a_manual_renewal_inside_the_cooldown_is_refused_unless_forced() -> None:
    """A second manual renewal minutes after the current version was created is skipped recently_renewed."""
    ours = {"renewal-ca": "corp", "renewal-by": "keyvault-private-ca-renewal"}
    just_made = state(created_on=NOW - timedelta(minutes=2), tags=ours)
    plan = decide_now(MANUAL, just_made, manual_cooldown=timedelta(minutes=5))
    assert isinstance(plan, Skip)
    assert plan.reason == "recently_renewed"
    assert decide_now(dataclasses.replace(MANUAL, force=True), just_made) == Renew(CORP)
    assert decide_now(MANUAL, state(created_on=NOW - timedelta(minutes=6), tags=ours)) == Renew(CORP)


def test_the_cooldown_counts_only_versions_the_app_made() -> None:
    """A version a person created a minute ago can be renewed manually at once."""
    assert decide_now(MANUAL, state(created_on=NOW - timedelta(minutes=1))) == Renew(CORP)


def test_a_profile_tag_is_matched_whole() -> None:
    """A tag that only starts like renewal-ca does not choose a profile."""
    plan = decide_now(REQUEST, state(tags={"renewal-ca-x": "corp"}))
    assert isinstance(plan, Skip)
    assert plan.reason == "not_managed"
