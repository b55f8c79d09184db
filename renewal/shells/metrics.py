"""What the app measures, as one small protocol the flow calls; the OpenTelemetry meters implement it.

The flow reports each fact once, where it already knows it (the sweep's listing, a renewal's end, a CA answer,
a delivery), so metrics cost no request of their own. ``NoMetrics`` is the default: with no exporter configured
nothing is measured and no OpenTelemetry module is imported.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from renewal.outcome import Outcome

__all__ = ["Metrics", "NoMetrics"]


class Metrics(Protocol):
    """The measurements the flow reports; attributes are bounded (names, profiles, closed reasons)."""

    def certificate_listed(
        self,
        *,
        vault: str,
        certificate: str,
        ca_profile: str | None,
        adapter: str | None,
        expires_on: datetime | None,
        not_before: datetime | None,
        window_start: datetime | None,
        ready: bool,
    ) -> None:
        """A certificate the sweep listed: its expiry, window start and not-before, and whether it is ready
        (valid and not at risk)."""

    def renewal_finished(self, outcome: Outcome, *, duration_seconds: float | None, adapter: str | None) -> None:
        """A renewal attempt ended with ``outcome``; ``duration_seconds`` from its start when it completed."""

    def ca_request(self, *, ca_profile: str, adapter: str, result: str) -> None:
        """One request to a CA (submit or poll) and its result: ``issued``, ``pending`` or a closed reason."""

    def delivery(self, *, endpoint: str, kind: str, result: str) -> None:
        """One delivery attempt from the outbox: ``kind`` is webhook, topic, notify, target or revoke; ``result``
        is ``delivered`` or ``failed``."""

    def dead_letter(self, *, endpoint: str, kind: str) -> None:
        """A delivery given up past the maximum age."""

    def flush(self) -> None:
        """Export what was measured now: Functions instances are short-lived."""


class NoMetrics:
    """Measures nothing (no exporter configured)."""

    def certificate_listed(
        self,
        *,
        vault: str,
        certificate: str,
        ca_profile: str | None,
        adapter: str | None,
        expires_on: datetime | None,
        not_before: datetime | None,
        window_start: datetime | None,
        ready: bool,
    ) -> None:
        return None

    def renewal_finished(self, outcome: Outcome, *, duration_seconds: float | None, adapter: str | None) -> None:
        return None

    def ca_request(self, *, ca_profile: str, adapter: str, result: str) -> None:
        return None

    def delivery(self, *, endpoint: str, kind: str, result: str) -> None:
        return None

    def dead_letter(self, *, endpoint: str, kind: str) -> None:
        return None

    def flush(self) -> None:
        return None
