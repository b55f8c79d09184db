"""The long-horizon backoff (pure): when the journal and the outbox try again, over hours."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from renewal.pure.backoff import EXPIRY_MARGIN, next_attempt

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FIRST = timedelta(seconds=60)
CAP = timedelta(hours=1)


class Jitter(random.Random):
    """Randomness pinned to one end of whatever range is asked for (``low`` or ``high``), or its middle."""

    def __init__(self, end: str = "middle") -> None:
        super().__init__(0)
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return {"low": a, "high": b, "middle": (a + b) / 2}[self.end]


def delay(
    attempts: int,
    *,
    rng: random.Random | None = None,
    retry_after: float | None = None,
    expires_on: datetime | None = None,
) -> timedelta:
    """How long after ``NOW`` the next attempt is, with ``first`` a minute and the cap an hour."""
    moment = next_attempt(
        attempts, now=NOW, first=FIRST, cap=CAP, rng=rng or Jitter(), retry_after=retry_after, expires_on=expires_on
    )
    return moment - NOW


def test_delay_doubles_from_first_after_each_failure() -> None:
    """The first failure waits ``first``, and each further one twice as long as the one before."""
    assert [delay(n) for n in (1, 2, 3, 4)] == [timedelta(seconds=s) for s in (60, 120, 240, 480)]


def test_delay_stops_growing_at_the_cap() -> None:
    """Past the cap the wait stays at the cap (here an hour, reached at the seventh failure)."""
    assert [delay(n) for n in (6, 7, 8, 20)] == [timedelta(seconds=1920), CAP, CAP, CAP]


def test_a_delivery_failing_all_day_stays_at_the_cap() -> None:
    """A delivery retried all day (some hundred failed attempts) still waits the cap, and nothing overflows."""
    assert delay(124) == CAP


def test_jitter_stays_within_a_fifth_either_way() -> None:
    """The jitter scales the wait by 0.8 to 1.2, capped waits included, so failures that met do not retry together."""
    assert (delay(2, rng=Jitter("low")), delay(2, rng=Jitter("high"))) == (
        timedelta(seconds=96),
        timedelta(seconds=144),
    )
    assert (delay(9, rng=Jitter("low")), delay(9, rng=Jitter("high"))) == (CAP * 0.8, CAP * 1.2)
    rng = random.Random(7)
    drawn = {delay(3, rng=rng) for _ in range(200)}
    assert all(timedelta(seconds=192) <= d <= timedelta(seconds=288) for d in drawn)
    assert len(drawn) > 100


def test_a_longer_retry_after_wins() -> None:
    """A Retry-After longer than the backoff is the wait, even past the cap; a shorter or zero one changes nothing."""
    assert delay(1, retry_after=300.0) == timedelta(seconds=300)
    assert delay(9, retry_after=7200.0) == timedelta(hours=2)
    assert delay(3, retry_after=10.0) == timedelta(seconds=240)
    assert delay(1, retry_after=0.0) == FIRST


def test_never_past_the_expiry_less_the_margin() -> None:
    """A wait that would end after the certificate's expiry less the margin ends at that moment instead."""
    expires_on = NOW + timedelta(minutes=90)
    assert NOW + delay(9, expires_on=expires_on) == expires_on - EXPIRY_MARGIN
    assert NOW + delay(1, retry_after=7200.0, expires_on=expires_on) == expires_on - EXPIRY_MARGIN
    assert delay(1, expires_on=NOW + timedelta(days=30)) == FIRST


def test_never_before_now() -> None:
    """When the expiry less the margin is already past, the next attempt is now, not in the past."""
    assert delay(5, expires_on=NOW + timedelta(minutes=30)) == timedelta(0)
    assert delay(5, expires_on=NOW - timedelta(days=1)) == timedelta(0)


def test_an_absurd_retry_after_is_still_bounded_by_the_expiry() -> None:
    """A garbled Retry-After of a trillion seconds still gives the expiry less the margin, not an overflow."""
    expires_on = NOW + timedelta(days=30)
    assert NOW + delay(1, retry_after=1e12, expires_on=expires_on) == expires_on - EXPIRY_MARGIN
