"""The rollout's pure transitions: pushed, serving, stalled at the deadline, unverified without a probe, and
which announcements are due, each once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from renewal.pure.rollout import (
    ANNOUNCE_COMPLETE,
    ANNOUNCE_RETIRE,
    ANNOUNCE_STALLED,
    RolloutState,
    announcements_due,
    observed,
    progress_of,
    unprobed,
)
from tests.rollout.conftest import a_rollout

NEW = "ab" * 20
OLD = "cd" * 20


def test_a_probe_that_sees_the_new_thumbprint_makes_the_target_serving() -> None:
    """Seeing the new version's thumbprint (any case) is serving, final."""
    row = a_rollout()
    after = observed(row, seen=NEW.upper(), error=None, now=row.pushed_at + timedelta(minutes=1))
    assert after.state is RolloutState.SERVING
    later = observed(after, seen=OLD, error=None, now=row.deadline + timedelta(hours=1))
    assert later.state is RolloutState.SERVING


def test_the_old_thumbprint_before_the_deadline_is_still_pushed() -> None:
    """Within its pick-up deadline a target serving the old version is waiting, not stalled."""
    row = a_rollout()
    after = observed(row, seen=OLD, error=None, now=row.deadline - timedelta(seconds=1))
    assert after.state is RolloutState.PUSHED
    assert after.seen_thumbprint == OLD


def test_the_old_thumbprint_at_the_deadline_is_stalled() -> None:
    """At the deadline exactly, a target not serving the new version is stalled."""
    row = a_rollout()
    assert observed(row, seen=OLD, error=None, now=row.deadline).state is RolloutState.STALLED


def test_an_unreachable_endpoint_past_the_deadline_is_stalled_with_the_error_kept() -> None:
    """A failed probe counts as not serving; past the deadline it is stalled and the error is kept."""
    row = a_rollout()
    after = observed(row, seen=None, error="unreachable", now=row.deadline + timedelta(minutes=1))
    assert (after.state, after.last_error) == (RolloutState.STALLED, "unreachable")


def test_a_stalled_target_that_picks_the_version_up_later_becomes_serving() -> None:
    """Stalled is not final: the sweep keeps probing, and a late pick-up is serving."""
    row = observed(a_rollout(), seen=OLD, error=None, now=a_rollout().deadline)
    assert row.needs_probe
    assert observed(row, seen=NEW, error=None, now=row.deadline + timedelta(hours=2)).state is RolloutState.SERVING


def test_a_target_without_probe_is_unverified_only_after_its_pickup_deadline() -> None:
    """No probe: it waits out the documented pick-up time, then counts as unverified."""
    row = a_rollout(probe=None)
    assert not row.needs_probe
    assert unprobed(row, now=row.deadline - timedelta(seconds=1)).state is RolloutState.PUSHED
    assert unprobed(row, now=row.deadline).state is RolloutState.UNVERIFIED


def test_a_version_is_complete_only_when_every_queued_target_has_a_finished_row() -> None:
    """A target queued but not pushed yet (no row) keeps the rollout waiting."""
    both = ("edge", "api")
    edge = replace(a_rollout(target="edge", targets=both), state=RolloutState.SERVING)
    progress = progress_of([edge])
    assert progress.waiting == ("api",)
    assert not progress.complete
    api = replace(a_rollout(target="api", targets=both), state=RolloutState.SERVING)
    assert progress_of([edge, api]).confirmed


def test_unverified_targets_complete_a_rollout_but_do_not_confirm_it() -> None:
    """Only targets seen serving confirm a rollout; so only they allow retirement."""
    both = ("edge", "api")
    edge = replace(a_rollout(target="edge", targets=both), state=RolloutState.SERVING)
    api = replace(a_rollout(target="api", targets=both, probe=None), state=RolloutState.UNVERIFIED)
    progress = progress_of([edge, api])
    assert progress.complete
    assert not progress.confirmed
    assert announcements_due(progress, retire=True) == (ANNOUNCE_COMPLETE,)


def test_each_announcement_is_due_once() -> None:
    """Complete and retire are due once; once the rows say so, nothing more is."""
    row = replace(a_rollout(), state=RolloutState.SERVING)
    assert announcements_due(progress_of([row]), retire=True) == (ANNOUNCE_COMPLETE, ANNOUNCE_RETIRE)
    announced = replace(row, announced=(ANNOUNCE_COMPLETE, ANNOUNCE_RETIRE))
    assert announcements_due(progress_of([announced]), retire=True) == ()


def test_stalled_is_announced_once_while_the_others_still_wait() -> None:
    """One stalled target is announced at once, even while another is within its deadline; then not again."""
    both = ("edge", "api")
    edge = replace(a_rollout(target="edge", targets=both), state=RolloutState.STALLED)
    api = a_rollout(target="api", targets=both)
    assert announcements_due(progress_of([edge, api]), retire=False) == (ANNOUNCE_STALLED,)
    marked = replace(edge, announced=(ANNOUNCE_STALLED,))
    assert announcements_due(progress_of([marked, api]), retire=False) == ()


def test_retirement_is_never_due_before_every_target_is_seen_serving() -> None:
    """With the profile opted in, a rollout still waiting or stalled never makes the retirement due."""
    for state in (RolloutState.PUSHED, RolloutState.STALLED):
        row = replace(a_rollout(), state=state)
        assert ANNOUNCE_RETIRE not in announcements_due(progress_of([row]), retire=True)
