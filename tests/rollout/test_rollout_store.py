"""The rollout rows' contract, kept by the Table Storage store (in the journal's table, on Azurite) and the
in-memory one: conditional writes, announcements saved with their row, and keys that never meet the journal's."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from renewal.pure.rollout import RolloutState
from renewal.shells.journal import Journal, OutboxItem, RenewalJournal, table_client_from_environ
from renewal.shells.rollouts import InMemoryRollouts, RolloutStore, TableRollouts
from renewal.testing import InMemoryJournal
from tests.rollout.conftest import a_rollout


@pytest.fixture(params=["table", "memory"])
def stores(request: pytest.FixtureRequest) -> tuple[RolloutStore, RenewalJournal]:
    """An empty rollout store and the journal beside it: in a fresh table of the session's Azurite, or in memory."""
    if request.param == "memory":
        journal = InMemoryJournal(clock=lambda: 1_800_000_000.0)
        return InMemoryRollouts(journal), journal
    azurite = request.getfixturevalue("azurite")
    environ = {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}
    name = f"t{uuid.uuid4().hex[:16]}"
    return (
        TableRollouts(table_client_from_environ(environ, name)),
        Journal(table_client_from_environ(environ, name), clock=lambda: 1_800_000_000.0),
    )


def announcement(vault_name: str = "kv1") -> OutboxItem:
    return OutboxItem(
        vault_name=vault_name,
        webhook_id="msg_" + uuid.uuid4().hex,
        endpoint="eventgrid-topic",
        certificate_name="web",
        version="v2",
        payload="{}",
        created_at=1_800_000_000.0,
        next_attempt_at=1_800_000_000.0,
    )


def test_a_saved_row_reads_back_as_it_was_written(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """Every field survives the store (times to the second, tags, targets, announcements)."""
    store, _ = stores
    row = replace(a_rollout(targets=("edge", "api")), announced=("rollout_stalled",), seen_thumbprint="cd" * 20)
    saved = store.save(row)
    assert saved is not None
    assert saved.etag
    assert store.get("KV1", "Web", "EDGE") == row
    assert store.rollouts(["kv1"]) == [row]


def test_a_row_is_inserted_only_if_none_exists(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """Two pushes recording the same target at once: the second insert loses (None), the first stays."""
    store, _ = stores
    assert store.save(a_rollout(version="v2")) is not None
    assert store.save(a_rollout(version="v3")) is None
    stored = store.get("kv1", "web", "edge")
    assert stored is not None
    assert stored.version == "v2"


def test_a_stale_write_is_refused(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """A row written since it was read is not overwritten: two sweeps cannot both move it."""
    store, _ = stores
    first = store.save(a_rollout())
    assert first is not None
    second = store.save(replace(first, state=RolloutState.SERVING))
    assert second is not None
    assert store.save(replace(first, state=RolloutState.STALLED)) is None
    stored = store.get("kv1", "web", "edge")
    assert stored is not None
    assert stored.state is RolloutState.SERVING


def test_announcements_are_saved_with_their_row_or_not_at_all(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """The outbox rows a save carries are queued with it; a refused save queues none."""
    store, journal = stores
    first = store.save(a_rollout())
    assert first is not None
    queued = announcement()
    assert store.save(replace(first, announced=("rollout_complete",)), outbox=[queued]) is not None
    assert [item.webhook_id for item in journal.outbox(["kv1"])] == [queued.webhook_id]
    assert store.save(replace(first, announced=("rollout_stalled",)), outbox=[announcement()]) is None
    assert len(journal.outbox(["kv1"])) == 1


def test_announcements_of_another_vault_are_refused(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """A transaction is one partition: an outbox row of another vault is a programming error."""
    store, _ = stores
    with pytest.raises(ValueError, match="vault"):
        store.save(a_rollout(), outbox=[announcement("kv2")])


def test_rollout_rows_are_not_journal_records_or_outbox_rows(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """The t| range never meets r| or o|: the journal lists no rollout row as a record or a delivery."""
    store, journal = stores
    store.save(a_rollout())
    assert journal.records(["kv1"]) == []
    assert journal.outbox(["kv1"]) == []
    assert journal.outbox(["kv1"], certificate_name="web") == []


def test_rows_are_listed_per_vault(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """Each vault is its own partition; listing one vault reads only its rows."""
    store, _ = stores
    store.save(a_rollout(vault_name="kv1"))
    store.save(a_rollout(vault_name="kv2", now=a_rollout().pushed_at + timedelta(seconds=1)))
    assert [row.vault_name for row in store.rollouts(["kv2"])] == ["kv2"]
    assert len(store.rollouts()) == 2


def test_only_unsettled_rows_are_read_for_the_sweep(stores: tuple[RolloutStore, RenewalJournal]) -> None:
    """A settled row is left out by the store itself (a server-side filter in Table Storage), not after reading."""
    store, _ = stores
    waiting = store.save(a_rollout(target="edge", targets=("edge", "api")))
    done = store.save(replace(a_rollout(certificate_name="api", target="api"), settled=True))
    assert waiting is not None
    assert done is not None
    assert [row.certificate_name for row in store.unsettled(["kv1"])] == ["web"]
    assert {row.certificate_name for row in store.rollouts(["kv1"])} == {"web", "api"}
