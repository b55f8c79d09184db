"""The rollout of a merged version to its deployment targets, as data and pure transitions (docs/targets.md).

One ``Rollout`` per (vault, certificate, target) holds the latest version pushed to that target and where it got
to::

    pushed ──probe sees the new thumbprint──► serving
      │  └──pickup deadline passes, still something else──► stalled ──probe sees it later──► serving
      └──no probe configured, pickup deadline passes──► unverified

``serving`` is final. ``unverified`` is how a target without a probe ends: nothing can check what it serves, so it
counts as complete once its documented pick-up time has passed, but it never counts as *confirmed*, and only a
confirmed rollout lets the superseded certificate be revoked. A version's rollout is complete when every target it
was queued for is ``serving`` or ``unverified``; it is stalled while any is ``stalled``. Each announcement
(``rollout_complete``, ``rollout_stalled``, the retirement) is made once per version, and the rows remember it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "ANNOUNCE_COMPLETE",
    "ANNOUNCE_RETIRE",
    "ANNOUNCE_STALLED",
    "Progress",
    "Rollout",
    "RolloutState",
    "announcements_due",
    "observed",
    "progress_of",
    "pushed",
    "unprobed",
]

ANNOUNCE_COMPLETE = "rollout_complete"
ANNOUNCE_STALLED = "rollout_stalled"
ANNOUNCE_RETIRE = "retire"


class RolloutState(StrEnum):
    """Where one target's rollout of a version got to."""

    PUSHED = "pushed"
    SERVING = "serving"
    STALLED = "stalled"
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """One target's rollout of one version.

    Attributes:
        vault_name: the vault (the journal partition).
        vault_url: the vault's URL, as configured.
        certificate_name: the Key Vault certificate.
        target: the target's configured name.
        kind: the target's kind (``app_gateway``, ...).
        version: the version pushed.
        thumbprint: that version's leaf thumbprint (lowercase hex SHA-1), what the probe must see.
        previous_version: the version it supersedes, if known (the one a retirement revokes).
        ca_profile: the CA profile that issued it, if known.
        targets: every target the version was queued for, so a version is not complete before each has a row.
        tags: the certificate's tags when it was merged (to choose the webhooks of the announcements).
        state: where it got to.
        pushed_at: when the push succeeded.
        deadline: ``pushed_at`` plus the target's pick-up deadline.
        probe_host: the endpoint to probe, or ``None`` when the target has none.
        probe_port: its port.
        probe_sni: the SNI name to send, if not the host.
        checked_at: when it was last probed.
        seen_thumbprint: what the last probe saw, if it connected.
        last_error: why the last probe failed, if it did (no secrets: a host and an error type).
        announced: the announcements already queued for this version (``ANNOUNCE_*``).
        etag: the stored row's version, for conditional writes (``None`` for a row not stored yet).
    """

    vault_name: str
    vault_url: str
    certificate_name: str
    target: str
    kind: str
    version: str
    thumbprint: str
    previous_version: str | None
    ca_profile: str | None
    targets: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    state: RolloutState = RolloutState.PUSHED
    pushed_at: datetime
    deadline: datetime
    probe_host: str | None = None
    probe_port: int = 443
    probe_sni: str | None = None
    checked_at: datetime | None = None
    seen_thumbprint: str | None = None
    last_error: str | None = None
    announced: tuple[str, ...] = ()
    # Nothing is left to do for this version: every target serves it (or had its time), and what was due was
    # announced. The sweep reads only unsettled rows, so its cost does not grow with finished rollouts.
    settled: bool = False
    etag: str | None = field(default=None, compare=False)

    @property
    def probed(self) -> bool:
        """Whether the target has an endpoint to probe."""
        return self.probe_host is not None

    @property
    def needs_probe(self) -> bool:
        """Whether the sweep should probe it: a probed target not yet seen serving the version."""
        return self.probed and self.state in (RolloutState.PUSHED, RolloutState.STALLED)


def pushed(
    *,
    vault_name: str,
    vault_url: str,
    certificate_name: str,
    target: str,
    kind: str,
    version: str,
    thumbprint: str,
    previous_version: str | None,
    ca_profile: str | None,
    targets: Sequence[str],
    tags: Mapping[str, str],
    now: datetime,
    pickup_deadline: timedelta,
    probe: tuple[str, int, str | None] | None,
) -> Rollout:
    """The row for a push that just succeeded: ``pushed``, due to be served by ``now + pickup_deadline``."""
    host, port, sni = probe if probe is not None else (None, 443, None)
    return Rollout(
        vault_name=vault_name,
        vault_url=vault_url,
        certificate_name=certificate_name,
        target=target,
        kind=kind,
        version=version,
        thumbprint=thumbprint.lower(),
        previous_version=previous_version,
        ca_profile=ca_profile,
        targets=tuple(targets),
        tags=dict(tags),
        pushed_at=now,
        deadline=now + pickup_deadline,
        probe_host=host,
        probe_port=port,
        probe_sni=sni,
    )


def observed(rollout: Rollout, *, seen: str | None, error: str | None, now: datetime) -> Rollout:
    """``rollout`` after a probe at ``now`` saw ``seen`` (a thumbprint) or failed with ``error``.

    The new thumbprint makes it ``serving`` (final); anything else keeps it ``pushed`` until the deadline, then
    ``stalled``. A ``serving`` row does not change.
    """
    if rollout.state is RolloutState.SERVING:
        return rollout
    if seen is not None and seen.lower() == rollout.thumbprint:
        state = RolloutState.SERVING
    elif now >= rollout.deadline:
        state = RolloutState.STALLED
    else:
        state = RolloutState.PUSHED
    return replace(
        rollout, state=state, checked_at=now, seen_thumbprint=seen.lower() if seen else None, last_error=error
    )


def unprobed(rollout: Rollout, *, now: datetime) -> Rollout:
    """A target without a probe at ``now``: ``unverified`` once its pick-up deadline passed, else unchanged."""
    if rollout.probed or rollout.state is not RolloutState.PUSHED or now < rollout.deadline:
        return rollout
    return replace(rollout, state=RolloutState.UNVERIFIED, checked_at=now)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where one version's rollout stands across its targets.

    Attributes:
        serving: targets seen serving it.
        unverified: targets without a probe whose pick-up deadline passed.
        stalled: targets past their deadline still serving something else (or unreachable).
        waiting: targets pushed and within their deadline, or queued and not pushed yet.
        announced: what was already announced for it (``ANNOUNCE_*``), on any of its rows.
    """

    serving: tuple[str, ...]
    unverified: tuple[str, ...]
    stalled: tuple[str, ...]
    waiting: tuple[str, ...]
    announced: frozenset[str]

    @property
    def complete(self) -> bool:
        """Every target serves it, or (without a probe) has had its documented time to."""
        return not self.stalled and not self.waiting

    @property
    def confirmed(self) -> bool:
        """Every target was *seen* serving it: the only state in which the superseded one may be retired."""
        return self.complete and not self.unverified


def progress_of(rows: Iterable[Rollout]) -> Progress:
    """The progress of one version from its rows (all of one vault, certificate and version).

    A target the version was queued for that has no row yet (not pushed, or its push is still being retried)
    counts as waiting.
    """
    rows = list(rows)
    by_target = {row.target: row for row in rows}
    expected = dict.fromkeys(name for row in rows for name in row.targets) or dict.fromkeys(by_target)
    serving: list[str] = []
    unverified: list[str] = []
    stalled: list[str] = []
    waiting: list[str] = []
    for name in [*expected, *(t for t in by_target if t not in expected)]:
        row = by_target.get(name)
        state = row.state if row is not None else RolloutState.PUSHED
        {
            RolloutState.SERVING: serving,
            RolloutState.UNVERIFIED: unverified,
            RolloutState.STALLED: stalled,
            RolloutState.PUSHED: waiting,
        }[state].append(name)
    announced = frozenset(a for row in rows for a in row.announced)
    return Progress(tuple(serving), tuple(unverified), tuple(stalled), tuple(waiting), announced)


def announcements_due(progress: Progress, *, retire: bool) -> tuple[str, ...]:
    """What to announce now for a version, each once: stalled (while any target is), complete (when every target
    is), and, when ``retire`` (the CA profile opted in), the retirement once the rollout is confirmed."""
    due: list[str] = []
    if progress.stalled and ANNOUNCE_STALLED not in progress.announced:
        due.append(ANNOUNCE_STALLED)
    if progress.complete and ANNOUNCE_COMPLETE not in progress.announced:
        due.append(ANNOUNCE_COMPLETE)
    if retire and progress.confirmed and ANNOUNCE_RETIRE not in progress.announced:
        due.append(ANNOUNCE_RETIRE)
    return tuple(due)
