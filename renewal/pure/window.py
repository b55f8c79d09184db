"""When a certificate is due for renewal (pure): a fraction of its lifetime, with per-certificate jitter.

The same rule serves the sweep, the event path and the status report, always from the version's own
``nbf``/``exp`` as Key Vault reports them, never from an event.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from renewal.errors import PermanentError
from renewal.pure.tags import WINDOW_TAG, tag_value

__all__ = ["MAX_WINDOW_DAYS", "WINDOW_TAG", "WindowRule", "renewal_window_start", "window_key"]

_DAYS = re.compile(r"(\d{1,5}(?:\.\d{1,6})?)\s*d", re.ASCII | re.IGNORECASE)
_FRACTION = re.compile(r"0?\.\d{1,6}", re.ASCII)
# Ten years before expiry is already "renew at once" for any certificate a CA issues today.
MAX_WINDOW_DAYS = 3650


@dataclass(frozen=True, slots=True)
class WindowRule:
    """The app-wide renewal window.

    Attributes:
        fraction: the share of the lifetime after which a certificate is due.
        jitter: the width of the spread around that point, as a share of the lifetime (half before, half after).
    """

    fraction: float = 2 / 3
    jitter: float = 0.02
    lead: timedelta = timedelta(0)

    def start(self, *, not_before: datetime, expires_on: datetime, tags: Mapping[str, str], key: str) -> datetime:
        """``renewal_window_start`` under this rule, opened earlier when ``lead`` asks for it.

        ``lead`` is the time the slowest consumer and the CA need (docs/targets.md, "The renewal window and the
        slowest consumer"): the window opens no later than ``lead`` before expiry, but never before half the
        lifetime has passed, so a lifetime shorter than twice the lead still renews at most twice per lifetime
        instead of at once after each merge.

        Raises:
            PermanentError: reason ``invalid_tag``, when the ``renewal-window`` tag does not parse.
        """
        start = renewal_window_start(
            not_before=not_before,
            expires_on=expires_on,
            tags=tags,
            fraction=self.fraction,
            jitter=self.jitter,
            key=key,
        )
        if self.lead <= timedelta(0):
            return start
        latest = expires_on - self.lead
        halfway = not_before + (expires_on - not_before) / 2
        return min(start, max(latest, halfway))


def window_key(vault_name: str, certificate_name: str, not_before: datetime) -> str:
    """The jitter key of one version: its vault, its name and its ``nbf``, which a listing shows as well as a read
    (a listing's ids carry no version), so the sweep and the event path compute the same start."""
    return f"{vault_name}/{certificate_name}/{int(not_before.timestamp())}"


def renewal_window_start(
    *,
    not_before: datetime,
    expires_on: datetime,
    tags: Mapping[str, str],
    fraction: float,
    jitter: float,
    key: str,
) -> datetime:
    """When renewing starts: ``fraction`` of the lifetime after ``not_before``.

    A ``renewal-window`` tag overrides the fraction, as a fraction (``0.5``) or as days before expiry (``30d``,
    at most ``MAX_WINDOW_DAYS``). The start then moves by up to half of ``jitter`` of the lifetime either way, by
    a hash of ``key`` (vault, certificate and version), so certificates issued together do not all start in the
    same second, and the same version always gets the same start. The spread is centred: each new version gets
    its own offset, so over many renewals the offsets cancel and a certificate is renewed once per
    ``fraction`` of its lifetime, not more often (an offset that only ever moved the start earlier would add up,
    renewal after renewal: 1 % more renewals for every 1 % of jitter). The start never falls before
    ``not_before`` and never after the window's own end, expiry.

    Raises:
        PermanentError: reason ``invalid_tag``, when the tag reads as neither form, or is out of range.
    """
    lifetime = max(expires_on - not_before, timedelta(0))
    start = not_before + lifetime * fraction
    override = tag_value(tags, WINDOW_TAG)
    if override is not None:
        start = _tagged_start(override, not_before=not_before, expires_on=expires_on, lifetime=lifetime)
    spread = int.from_bytes(hashlib.sha256(key.lower().encode()).digest()[:8], "big") / 2**64 - 0.5
    start += lifetime * jitter * spread
    return min(max(start, not_before), expires_on)


def _tagged_start(value: str, *, not_before: datetime, expires_on: datetime, lifetime: timedelta) -> datetime:
    days = _DAYS.fullmatch(value)
    if days:
        count = float(days.group(1))
        if 0 < count <= MAX_WINDOW_DAYS:
            return max(expires_on - timedelta(days=count), not_before)
    elif _FRACTION.fullmatch(value):
        share = float(value)
        if 0 < share < 1 and math.isfinite(share):
            return not_before + lifetime * share
    shown = value[:24] + ("..." if len(value) > 24 else "")
    raise PermanentError(
        f"tag {WINDOW_TAG}={shown!r} is neither a fraction between 0 and 1 (0.5) "
        f"nor days before expiry up to {MAX_WINDOW_DAYS} (30d)",
        reason="invalid_tag",
    )
