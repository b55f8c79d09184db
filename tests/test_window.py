"""The sweep's renewal window: two thirds of the lifetime by default, tag overrides, stable jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from renewal.window import renewal_window_start

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
        ("soon", NBF + timedelta(days=60)),
        ("1.5", NBF + timedelta(days=60)),
    ],
)
def test_window_tag_overrides_the_fraction(tag: str, expected: datetime) -> None:
    """renewal-window takes a fraction or days before expiry; anything else is ignored."""
    assert start({"Renewal-Window": tag}) == expected


def test_jitter_is_bounded_and_stable_per_certificate() -> None:
    """Jitter moves the start earlier by at most its share of the lifetime, the same way every time."""
    starts = {start(jitter=0.05, key=f"kv1/cert{i}") for i in range(200)}
    assert len(starts) > 150
    assert all(NBF + timedelta(days=60 - 4.5) <= s <= NBF + timedelta(days=60) for s in starts)
    assert start(jitter=0.05, key="kv1/web") == start(jitter=0.05, key="KV1/Web")
