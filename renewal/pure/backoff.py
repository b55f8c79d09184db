"""When to try again, over hours (pure): the sweep's long-horizon backoff for renewals and deliveries alike.

Within one invocation the shells retry for seconds (``stamina``); past that, the journal and the outbox record a
next attempt time and the sweep comes back then. The delay doubles from ``first`` up to ``cap``, with ±20 %
jitter so that failures that happened together do not retry together, never shorter than what the other side
asked for (``Retry-After``), and never past the certificate's expiry: cert-manager's users were bitten by a
backoff that outlived the certificate.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

__all__ = ["EXPIRY_MARGIN", "next_attempt"]

# Retries aim to finish this long before the certificate expires.
EXPIRY_MARGIN = timedelta(hours=1)
# However long the other side asks for, a retry is looked at again within a year.
_LONGEST_WAIT_SECONDS = 365 * 86400.0


def next_attempt(
    attempts: int,
    *,
    now: datetime,
    first: timedelta,
    cap: timedelta,
    rng: random.Random,
    retry_after: float | None = None,
    expires_on: datetime | None = None,
) -> datetime:
    """The time of the next attempt after ``attempts`` failed ones (1 for the first failure).

    The result is never before ``now``, and never after ``expires_on`` less ``EXPIRY_MARGIN`` (then it is as
    late as that allows, or ``now`` when that is already past).
    """
    # In float seconds, capped before it becomes a timedelta: 2 ** attempts overflows one within a day of failures.
    seconds = min(first.total_seconds() * 2.0 ** min(max(attempts - 1, 0), 64), cap.total_seconds())
    seconds *= rng.uniform(0.8, 1.2)
    if retry_after:
        seconds = max(seconds, retry_after)
    latest = expires_on - EXPIRY_MARGIN if expires_on is not None else None
    if latest is not None:
        # Bounded before it is added to now, so an absurd Retry-After cannot overflow the datetime either.
        seconds = min(seconds, max((latest - now).total_seconds(), 0.0))
    return now + timedelta(seconds=min(seconds, _LONGEST_WAIT_SECONDS))
