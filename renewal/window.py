"""When a certificate is due for renewal (pure): a fraction of its lifetime, with per-certificate jitter."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

__all__ = ["WINDOW_TAG", "renewal_window_start"]

WINDOW_TAG = "renewal-window"
_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*d\s*$", re.IGNORECASE)


def renewal_window_start(
    *,
    not_before: datetime,
    expires_on: datetime,
    tags: Mapping[str, str],
    fraction: float,
    jitter: float,
    key: str,
) -> datetime:
    """When the sweep should start renewing: ``fraction`` of the lifetime after ``not_before``.

    A ``renewal-window`` tag overrides the fraction, as a fraction (``0.5``) or as days before expiry (``30d``);
    a tag that reads as neither is ignored. Up to ``jitter`` of the lifetime is then taken off, by a hash of
    ``key`` (vault and certificate), so certificates issued together do not all start in the same second, and the
    same certificate always gets the same start. The start never falls before ``not_before``.
    """
    lifetime = max(expires_on - not_before, timedelta(0))
    start = not_before + lifetime * fraction
    override = next((v for k, v in tags.items() if k.strip().lower() == WINDOW_TAG), None)
    if override is not None:
        days = _DAYS.match(override)
        if days:
            start = expires_on - timedelta(days=float(days.group(1)))
        else:
            try:
                tagged = float(override)
            except ValueError:
                tagged = None
            if tagged is not None and 0 < tagged < 1:
                start = not_before + lifetime * tagged
    spread = int.from_bytes(hashlib.sha256(key.lower().encode()).digest()[:8], "big") / 2**64
    start -= lifetime * jitter * spread
    return max(start, not_before)
