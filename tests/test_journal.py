"""The journal on Azurite: claims by etag, lapsed claims, atomic outbox, bounded history."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from devstack.azurite import Azurite
from renewal.journal import HISTORY_LIMIT, ClaimLostError, Journal, OutboxItem, table_client_from_environ


class Clock:
    """A settable clock in Unix seconds."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def journal(azurite: Azurite) -> tuple[Journal, Clock]:
    """A journal in a fresh table of the session's Azurite, with a settable clock."""
    clock = Clock()
    table = table_client_from_environ(
        {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}, f"t{uuid.uuid4().hex[:12]}"
    )
    return Journal(table, clock=clock, claim_seconds=60), clock


def test_first_claim_creates_the_record(journal: tuple[Journal, Clock]) -> None:
    """Claiming an unknown certificate creates its record, held by the claimer."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    assert (record.step, record.claim_owner) == ("idle", "worker-a")
    assert j.get("kv1", "web") == record


def test_a_live_claim_keeps_others_out(journal: tuple[Journal, Clock]) -> None:
    """A second worker cannot claim while the first's claim is live, and can once it lapses."""
    j, clock = journal
    assert j.claim("kv1", "web", "worker-a") is not None
    assert j.claim("kv1", "web", "worker-b") is None
    clock.now += 61
    taken = j.claim("kv1", "web", "worker-b")
    assert taken is not None
    assert taken.claim_owner == "worker-b"


def test_a_stale_write_is_refused(journal: tuple[Journal, Clock]) -> None:
    """A worker writing a record another worker has changed since gets ClaimLostError."""
    j, clock = journal
    first = j.claim("kv1", "web", "worker-a")
    assert first is not None
    clock.now += 61
    assert j.claim("kv1", "web", "worker-b") is not None
    with pytest.raises(ClaimLostError):
        j.save(replace(first, step="begun"))


def test_merge_writes_record_and_outbox_together(journal: tuple[Journal, Clock]) -> None:
    """The merged step and its outbox rows land in one transaction."""
    j, clock = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    items = [
        OutboxItem(
            "kv1", f"msg_v2_{name}", name, "web", "v2", '{"x":1}', created_at=clock.now, next_attempt_at=clock.now
        )
        for name in ("a", "b")
    ]
    saved = j.save(replace(record, step="merged", new_version="v2"), outbox=items)
    assert j.get("kv1", "web") == saved
    assert [i.webhook_id for i in j.outbox(["kv1"])] == ["msg_v2_a", "msg_v2_b"]
    with pytest.raises(ClaimLostError):
        j.save(replace(record, step="merged"), outbox=items)


def test_outbox_updates_are_conditional(journal: tuple[Journal, Clock]) -> None:
    """Two workers updating one delivery: only the first write wins."""
    j, clock = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    item = OutboxItem("kv1", "msg_1", "a", "web", "v2", "{}", created_at=clock.now, next_attempt_at=clock.now)
    j.save(record, outbox=[item])
    [stored] = j.outbox(["kv1"])
    assert j.save_outbox(replace(stored, status="delivered")) is not None
    assert j.save_outbox(replace(stored, attempts=5)) is None
    assert j.outbox(["kv1"])[0].status == "delivered"


def test_history_is_bounded(journal: tuple[Journal, Clock]) -> None:
    """The record keeps only the newest outcomes."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    for index in range(HISTORY_LIMIT + 5):
        record = j.save(record.with_outcome({"status": "failed", "n": index}))
    history = j.get("kv1", "web").history  # type: ignore[union-attr]
    assert len(history) == HISTORY_LIMIT
    assert history[-1]["n"] == HISTORY_LIMIT + 4


def test_due_records_are_those_waiting_or_abandoned(journal: tuple[Journal, Clock]) -> None:
    """Due: an unclaimed renewal whose retry time came, or one whose claim lapsed; not done ones."""
    j, clock = journal
    waiting = j.claim("kv1", "waiting", "w")
    crashed = j.claim("kv1", "crashed", "w")
    finished = j.claim("kv1", "finished", "w")
    later = j.claim("kv1", "later", "w")
    assert waiting is not None
    assert crashed is not None
    assert finished is not None
    assert later is not None
    j.release(replace(waiting, step="pending_ca", next_attempt_at=clock.now - 1))
    j.save(replace(crashed, step="issued"))
    j.release(replace(finished, step="done"))
    j.release(replace(later, step="failed", next_attempt_at=clock.now + 3600))
    assert [r.certificate_name for r in j.due_records(clock.now)] == ["waiting"]
    clock.now += 61
    assert sorted(r.certificate_name for r in j.due_records(clock.now)) == ["crashed", "waiting"]


def test_development_storage_shorthand_means_azurite() -> None:
    """AzureWebJobsStorage=UseDevelopmentStorage=true points at Azurite's default Table endpoint."""
    client = table_client_from_environ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "renewals")
    assert client.url.startswith("http://127.0.0.1:10002/devstoreaccount1")
