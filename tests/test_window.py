"""The sweep's renewal window: two thirds of the lifetime by default, tag overrides, stable jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from renewal.errors import PermanentError
from renewal.pure.window import renewal_window_start

NBF = datetime(2026, 1, 1, tzinfo=UTC)
EXP = NBF + timedelta(days=90)


def start(tags: dict[str, str] | None = None, *, jitter: float = 0.0, key: str = "kv1/web") -> datetime:
    return renewal_window_start(not_before=NBF, expires_on=EXP, tags=tags or {}, fraction=2 / 3, jitter=jitter, key=key)


def test_default_window_opens_after_two_thirds_of_the_lifetime() -> None:
    """A 90-day certificate is due 60 days after it became valid."""
    assert start() == NBF + timedelta(days=60)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("0.5", NBF + timedelta(days=45)),
        ("30d", EXP - timedelta(days=30)),
        (" 7D ", EXP - timedelta(days=7)),
        (".25", NBF + timedelta(days=22.5)),
        ("3650d", NBF),
    ],
)
def test_window_tag_overrides_the_fraction(tag: str, expected: datetime) -> None:
    """renewal-window takes a fraction or days before expiry (never before the version's not-before)."""
    assert start({"Renewal-Window": tag}) == expected


@pytest.mark.parametrize(
    "tag", ["soon", "1.5", "0", "0d", "999999999d", "3651d", "1e3d", "nan", "inf", "\u0661\u0660d"]
)
def test_a_window_tag_that_does_not_parse_is_a_permanent_error_for_that_certificate(tag: str) -> None:
    """A renewal-window tag that is no bounded fraction or day count fails with reason invalid_tag, never overflows."""
    with pytest.raises(PermanentError) as raised:
        start({"renewal-window": tag})
    assert raised.value.reason == "invalid_tag"


def test_a_tag_name_is_matched_whole_and_in_ascii() -> None:
    """A tag whose name only starts like renewal-window, or spells it in full-width letters, is not that tag."""
    assert start({"renewal-window-x": "0.5"}) == NBF + timedelta(days=60)
    assert start({"renewal-\uff57indow": "0.5"}) == NBF + timedelta(days=60)


def test_jitter_is_bounded_and_stable_per_version() -> None:
    """Jitter moves the start by at most half its share of the lifetime either way, the same way every time."""
    starts = {start(jitter=0.05, key=f"kv1/cert{i}/v1") for i in range(200)}
    assert len(starts) > 150
    assert all(NBF + timedelta(days=60 - 2.25) <= s <= NBF + timedelta(days=60 + 2.25) for s in starts)
    assert start(jitter=0.05, key="kv1/web/v1") == start(jitter=0.05, key="KV1/Web/V1")


def test_jitter_cancels_out_over_many_versions() -> None:
    """Across many versions the offsets average to zero, so renewals keep to one per two thirds of a lifetime."""
    offsets = [(start(jitter=0.05, key=f"kv1/web/{i:032x}") - (NBF + timedelta(days=60))) for i in range(2000)]
    mean = sum(offset.total_seconds() for offset in offsets) / len(offsets)
    assert abs(mean) < timedelta(hours=3).total_seconds()  # against a spread of +-54 hours
    assert min(offsets) < timedelta(hours=-40)
    assert max(offsets) > timedelta(hours=40)


def test_a_consumer_lead_opens_the_window_early_enough_for_the_slowest_consumer() -> None:
    """With a 24-hour App Service pick-up (and more) to allow for, a 7-day certificate starts renewing no later
    than that lead before expiry, not at two thirds of its life."""
    from renewal.pure.window import WindowRule

    nbf, exp = NBF, NBF + timedelta(days=7)
    plain = WindowRule(jitter=0.0).start(not_before=nbf, expires_on=exp, tags={}, key="k")
    led = WindowRule(jitter=0.0, lead=timedelta(hours=26)).start(not_before=nbf, expires_on=exp, tags={}, key="k")
    assert plain == nbf + timedelta(days=7) * 2 / 3
    assert led == min(plain, exp - timedelta(hours=26))
    assert WindowRule(jitter=0.0, lead=timedelta(hours=26)).start(
        not_before=NBF, expires_on=EXP, tags={}, key="k"
    ) == NBF + timedelta(days=60), "a lead shorter than the window's own changes nothing"


def test_a_lead_longer_than_the_lifetime_still_lets_half_the_lifetime_pass() -> None:
    """A 24-hour certificate with a 49-hour lead renews at half its life, not at once after each merge."""
    from renewal.pure.window import WindowRule

    exp = NBF + timedelta(hours=24)
    start_ = WindowRule(jitter=0.0, lead=timedelta(hours=49)).start(not_before=NBF, expires_on=exp, tags={}, key="k")
    assert start_ == NBF + timedelta(hours=12)


def test_the_automatic_lead_is_the_slowest_target_kind_plus_turnaround_plus_a_sweep() -> None:
    import json

    from renewal.settings import Settings

    base = {
        "RENEWAL_VAULTS": "kv1",
        "RENEWAL_SWEEP_SCHEDULE": "0 */30 * * * *",
        "RENEWAL_TARGETS": json.dumps(
            {"gw": {"kind": "app_gateway"}, "apim": {"kind": "api_management"}, "odd": {"kind": "unknown"}}
        ),
    }
    assert Settings.from_environ(base).window_lead == timedelta(0)
    auto = Settings.from_environ({**base, "RENEWAL_CONSUMER_LEAD_HOURS": "auto"})
    assert auto.window_lead == timedelta(hours=48) + timedelta(hours=1) + timedelta(minutes=30)
    fixed = Settings.from_environ({**base, "RENEWAL_CONSUMER_LEAD_HOURS": "36"})
    assert fixed.window_lead == timedelta(hours=36)
