"""Renewing on the certificate's own clock, end to end: events are hints, pause, cooldown, one bad certificate.

The app here runs on the emulator's clock (injected), so a test can let two thirds of a lifetime pass without
sleeping; the local CA issues on the same clock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

import renewal
from renewal.ca import CAProfile
from renewal.ca.local import LocalCA
from renewal.flow.entry import handle_event
from renewal.flow.runtime import Runtime, build_runtime
from renewal.flow.sweep import sweep
from renewal.settings import Settings
from renewal.steps import Step
from tests.integration.conftest import Stack


def runtime_on_emulator_clock(
    stack: Stack, *, clock: Callable[[], datetime] | None = None, **overrides: Any
) -> Runtime:
    """The app's runtime for the stack's settings, reading the emulator's clock, with a local CA on it too."""
    clock = clock or stack.now
    settings = Settings.from_environ(dict(os.environ))
    options = {k: v for k, v in stack.ca.profile_options().items() if k != "adapter"}
    ca = LocalCA.from_profile(CAProfile("corp", "local", options), os.environ, clock=clock)
    return build_runtime(settings, clock=clock, adapters={"corp": ca}, **overrides)


def seed_two_day_certificate(stack: Stack, name: str = "short", **tags: str) -> None:
    """A certificate living two days, merged a minute ago."""
    minute = 1 / 1440
    stack.seed(name, days_old=minute, days_left=2 - minute, tags={"renewal-ca": "corp", **tags})


def test_near_expiry_right_after_a_short_lived_merge_is_skipped_not_due(stack: Stack) -> None:
    """A 2-day version merged a minute ago gets NearExpiry at once: skipped not_due, with the window's start."""
    seed_two_day_certificate(stack)
    runtime = runtime_on_emulator_clock(stack)
    stack.emulator.request_log.clear()

    outcome = handle_event(stack.near_expiry_event("short"), runtime)

    assert (outcome.status, outcome.reason) == ("skipped", "not_due")
    assert outcome.renews_from is not None
    # Two thirds of the lifetime from its not-before, give or take the jitter's half of 2 % of the lifetime.
    lifetime, not_before = timedelta(days=2), stack.now() - timedelta(minutes=1)
    assert abs(outcome.renews_from - (not_before + lifetime * 2 / 3)) <= lifetime * 0.01
    assert stack.authenticated_requests() == 1  # the read that decided, nothing more
    assert len(stack.versions("short")) == 1
    assert not stack.sink.deliveries


def test_the_sweep_renews_a_short_lived_certificate_once_two_thirds_have_elapsed(stack: Stack) -> None:
    """Nothing happens before the window opens; the sweep renews once it has; the new version is not due again."""
    seed_two_day_certificate(stack)
    runtime = runtime_on_emulator_clock(stack)

    # Due after 32 hours, give or take the jitter (half of 2 % of 48 hours: 29 minutes).
    stack.emulator.clock.advance(timedelta(hours=31).total_seconds())
    early = sweep(runtime)
    assert early.started == []

    stack.emulator.clock.advance(timedelta(hours=1, minutes=30).total_seconds())
    report = sweep(runtime)
    assert [(o.certificate_name, o.status) for o in report.started] == [("short", "renewed")]
    assert len(stack.versions("short")) == 2

    replayed = handle_event(stack.near_expiry_event("short"), runtime)
    assert (replayed.status, replayed.reason) == ("skipped", "not_due")
    assert sweep(runtime).started == []
    assert len(stack.versions("short")) == 2


def test_a_replayed_event_for_the_replaced_version_does_nothing(stack: Stack) -> None:
    """Once renewed, the old version's NearExpiry (late or duplicated) is skipped already_renewed."""
    stack.seed("web")
    old_event = stack.near_expiry_event("web")
    runtime = runtime_on_emulator_clock(stack)
    assert handle_event(old_event, runtime).status == "renewed"

    again = handle_event(old_event, runtime)

    assert (again.status, again.reason) == ("skipped", "already_renewed")
    assert len(stack.versions("web")) == 2


def test_an_expired_event_renews_even_inside_a_long_window(stack: Stack) -> None:
    """CertificateExpired for a version Key Vault reports expired renews it, whatever the window tag says."""
    stack.seed("gone", days_old=30, days_left=-1 / 24, tags={"renewal-ca": "corp", "renewal-window": "0.99"})
    runtime = runtime_on_emulator_clock(stack)

    outcome = handle_event(stack.emulator.fire("kv1", "gone", "Microsoft.KeyVault.CertificateExpired"), runtime)

    assert outcome.status == "renewed"


def test_a_paused_certificate_is_left_alone_by_events_sweep_and_manual_renewals(stack: Stack) -> None:
    """renewal-paused=true stops every trigger, shows in the status, and a forced manual renewal goes ahead."""
    stack.seed("held", tags={"renewal-ca": "corp", "renewal-paused": "true"})

    stack.deliver(stack.near_expiry_event("held"))
    assert (stack.recorder.last["status"], stack.recorder.last["reason"]) == ("skipped", "paused")
    report = renewal.run_sweep()
    assert report is not None
    assert report.paused == ["kv1/held"]
    assert report.started == []
    code, body = renewal.renew_now("kv1", "held")
    assert (code, json.loads(body)["reason"]) == (200, "paused")
    status_code, status = renewal.status()
    assert status_code == 200
    assert json.loads(status)["paused"] == [{"vault": "kv1", "certificate": "held"}]
    assert len(stack.versions("held")) == 1

    code, body = renewal.renew_now("kv1", "held", force=True)

    assert (code, json.loads(body)["status"]) == (200, "renewed")
    assert len(stack.versions("held")) == 2


def test_a_retried_manual_renewal_inside_the_cooldown_makes_no_second_version(stack: Stack) -> None:
    """Two manual renewals in a row make one version; force makes another."""
    stack.seed("web")
    first = json.loads(renewal.renew_now("kv1", "web")[1])
    second = json.loads(renewal.renew_now("kv1", "web")[1])

    assert first["status"] == "renewed"
    assert (second["status"], second["reason"]) == ("skipped", "recently_renewed")
    assert len(stack.versions("web")) == 2
    assert json.loads(renewal.renew_now("kv1", "web", force=True)[1])["status"] == "renewed"
    assert len(stack.versions("web")) == 3


@pytest.mark.parametrize("name", ["web\n", "w\u212ab", "web%0A"], ids=["newline", "kelvin", "encoded-newline"])
def test_a_manual_renewal_names_its_certificate_whole_and_in_ascii(stack: Stack, name: str) -> None:
    """A manual renewal of 'web\\n' or a lookalike is refused as not a certificate name, touching nothing."""
    stack.seed("web")
    stack.emulator.request_log.clear()

    code, body = renewal.renew_now("kv1", name)

    assert (code, json.loads(body)["reason"]) == (404, "invalid_name")
    assert stack.authenticated_requests() == 0


@pytest.mark.parametrize("vault", ["kv1\n", "\u212av1"], ids=["newline", "kelvin"])
def test_a_manual_renewal_names_its_vault_whole_and_in_ascii(stack: Stack, vault: str) -> None:
    """'kv1\\n' and a Kelvin-sign 'kv1' are not the allowed vault kv1."""
    stack.seed("web")

    code, body = renewal.renew_now(vault, "web")

    assert (code, json.loads(body)["reason"]) == (404, "vault_not_allowed")


def test_one_certificate_with_a_broken_tag_does_not_stop_the_sweep(stack: Stack) -> None:
    """A window tag that overflows ends as one failed outcome for that certificate; the others are renewed."""
    stack.seed("broken", days_old=300, days_left=20, tags={"renewal-ca": "corp", "renewal-window": "999999999d"})
    stack.seed("fine", days_old=300, days_left=20)

    report = renewal.run_sweep()

    assert report is not None
    assert [(o.certificate_name, o.reason) for o in report.failed] == [("broken", "invalid_tag")]
    assert [(o.certificate_name, o.status) for o in report.started] == [("fine", "renewed")]
    status = json.loads(renewal.status()[1])
    assert [p["certificate"] for p in status["certificate_problems"]] == ["broken"]
    assert [r["certificate"] for r in status["next_renewals"]] == ["fine"]


def test_an_event_for_a_certificate_with_a_broken_tag_fails_that_certificate_only(stack: Stack) -> None:
    """The event path reports the broken tag as a failed outcome (not a crash, not a retry)."""
    stack.seed("broken", tags={"renewal-ca": "corp", "renewal-window": "soon"})

    stack.deliver(stack.near_expiry_event("broken"))

    assert (stack.recorder.last["status"], stack.recorder.last["reason"]) == ("failed", "invalid_tag")
    assert stack.recorder.last["retryable"] is False


def test_a_lost_claim_is_skipped_renewal_in_progress_and_not_raised(stack: Stack) -> None:
    """When another worker takes the record over mid-renewal, this one stops with a skip, raising nothing."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    clock = {"offset": timedelta(0)}

    def now() -> datetime:
        return stack.now() + clock["offset"]

    thief = runtime_on_emulator_clock(stack, clock=now, worker_id="thief")

    def take_over(step: str) -> None:
        if step == Step.BEGIN:
            clock["offset"] = timedelta(hours=2)  # past the claim's 10 minutes
            assert thief.journal.claim("kv1", "web", "thief") is not None

    runtime = runtime_on_emulator_clock(stack, clock=now, checkpoint=take_over, worker_id="slow")

    outcome = handle_event(event, runtime)

    assert (outcome.status, outcome.reason) == ("skipped", "renewal_in_progress")
    assert not outcome.retryable
