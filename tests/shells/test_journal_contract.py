"""The journal's contract, which the Table Storage journal (on Azurite) and the in-memory one both keep.

Claims by etag that lapse on the clock, stale writes refused, a record and its outbox rows written together,
outbox rows read per certificate, settled rows trimmed after the retention period, bounded history, due
records, and journal reads that do not grow with the vault.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from renewal.errors import ClaimLostError
from renewal.shells.journal import (
    HISTORY_LIMIT,
    OUTBOX_PER_SAVE,
    Journal,
    OutboxItem,
    RenewalJournal,
    table_client_from_environ,
)
from renewal.steps import Step
from renewal.testing import InMemoryJournal

START = 1_800_000_000.0
RETENTION = 7 * 24 * 3600.0
LEAF = "-----BEGIN CERTIFICATE-----\nTEVBRg==\n-----END CERTIFICATE-----\n"
CHAIN = (
    "-----BEGIN CERTIFICATE-----\nSU5URVJNRURJQVRF\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nUk9PVA==\n-----END CERTIFICATE-----\n",
)


class Clock:
    """A settable clock in Unix seconds."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


JournalMaker = Callable[[], tuple[RenewalJournal, Clock]]


@pytest.fixture(params=["table", "memory"])
def make_journal(request: pytest.FixtureRequest) -> JournalMaker:
    """A maker of empty journals of each kind, each with its own settable clock: in a fresh table of the
    session's Azurite, or in memory."""

    def make() -> tuple[RenewalJournal, Clock]:
        clock = Clock()
        if request.param == "memory":
            return InMemoryJournal(clock=clock, claim_seconds=60, retention_seconds=RETENTION), clock
        azurite = request.getfixturevalue("azurite")
        table = table_client_from_environ(
            {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}, f"t{uuid.uuid4().hex[:12]}"
        )
        return Journal(table, clock=clock, claim_seconds=60, retention_seconds=RETENTION), clock

    return make


@pytest.fixture
def journal(make_journal: JournalMaker) -> tuple[RenewalJournal, Clock]:
    """An empty journal of each kind, with a settable clock."""
    return make_journal()


def delivery(
    webhook_id: str,
    *,
    certificate: str = "web",
    vault: str = "kv1",
    status: str = "pending",
    created_at: float = START,
    endpoint: str = "a",
) -> OutboxItem:
    """An outbox row for ``certificate``'s version v2."""
    return OutboxItem(
        vault,
        webhook_id,
        endpoint,
        certificate,
        "v2",
        '{"x":1}',
        status=status,
        created_at=created_at,
        next_attempt_at=created_at,
    )


# --- claims and records ------------------------------------------------------------------------------------


def test_first_claim_creates_the_record(journal: tuple[RenewalJournal, Clock]) -> None:
    """Claiming an unknown certificate creates its record at BEGIN, held by the claimer."""
    j, clock = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    assert (record.step, record.claim_owner, record.claim_expires_at) == (Step.BEGIN, "worker-a", clock.now + 60)
    assert not record.under_way
    assert j.get("kv1", "web") == record


def test_a_live_claim_keeps_others_out(journal: tuple[RenewalJournal, Clock]) -> None:
    """A second worker cannot claim while the first's claim is live, and can once it lapses."""
    j, clock = journal
    assert j.claim("kv1", "web", "worker-a") is not None
    assert j.claim("kv1", "web", "worker-b") is None
    clock.now += 61
    taken = j.claim("kv1", "web", "worker-b")
    assert taken is not None
    assert taken.claim_owner == "worker-b"


def test_the_holder_may_claim_again(journal: tuple[RenewalJournal, Clock]) -> None:
    """The worker that holds a live claim gets it again, with a fresh expiry."""
    j, clock = journal
    assert j.claim("kv1", "web", "worker-a") is not None
    clock.now += 30
    again = j.claim("kv1", "web", "worker-a")
    assert again is not None
    assert again.claim_expires_at == clock.now + 60


def test_certificate_names_are_case_insensitive(journal: tuple[RenewalJournal, Clock]) -> None:
    """A certificate's record is the same whatever the case of its vault's or its own name."""
    j, _ = journal
    assert j.claim("KV1", "Web", "worker-a") is not None
    assert j.claim("kv1", "web", "worker-b") is None
    assert j.get("kv1", "WEB") is not None


def test_a_stale_write_is_refused(journal: tuple[RenewalJournal, Clock]) -> None:
    """A worker writing a record another worker has changed since gets ClaimLostError."""
    j, clock = journal
    first = j.claim("kv1", "web", "worker-a")
    assert first is not None
    clock.now += 61
    assert j.claim("kv1", "web", "worker-b") is not None
    with pytest.raises(ClaimLostError):
        j.save(replace(first, step=Step.SUBMIT))
    assert j.get("kv1", "web").claim_owner == "worker-b"  # type: ignore[union-attr]


def test_a_record_never_read_cannot_be_saved(journal: tuple[RenewalJournal, Clock]) -> None:
    """Saving a record without the etag of a read raises ClaimLostError and writes nothing."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    with pytest.raises(ClaimLostError):
        j.save(replace(record, step=Step.SUBMIT, etag=None))
    assert j.get("kv1", "web") == record


def test_release_drops_the_claim_and_keeps_the_rest(journal: tuple[RenewalJournal, Clock]) -> None:
    """A released record has no claim, so any worker may claim it at once, and keeps what was saved."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    released = j.release(replace(record, step=Step.POLL, ca_reference="req-7"))
    assert (released.claim_owner, released.claim_expires_at) == (None, None)
    assert j.get("kv1", "web") == released
    taken = j.claim("kv1", "web", "worker-b")
    assert taken is not None
    assert (taken.step, taken.ca_reference) == (Step.POLL, "req-7")


def test_every_field_round_trips(journal: tuple[RenewalJournal, Clock]) -> None:
    """A saved record reads back field for field: the step as a Step, the chain as one PEM certificate each."""
    j, clock = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    full = replace(
        record,
        step=Step.MERGE,
        ca_profile="corp",
        previous_version="v1",
        request_id="op-1",
        csr_sha256="ab" * 32,
        ca_reference="ref-1",
        issued_leaf_pem=LEAF,
        issued_chain=CHAIN,
        new_version="v2",
        expires_on=clock.now + 86400,
        attempts=2,
        next_attempt_at=clock.now + 30,
        last_reason="ca_unavailable",
        last_error="the CA answered 503",
    ).with_outcome({"status": "failed", "reason": "ca_unavailable"})
    saved = j.save(full)
    stored = j.get("kv1", "web")
    assert stored == saved
    assert stored is not None
    assert stored.step is Step.MERGE
    assert stored.issued_chain == CHAIN
    assert stored.under_way


def test_an_empty_chain_reads_back_empty(journal: tuple[RenewalJournal, Clock]) -> None:
    """A record whose chain was cleared reads back with no chain at all."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    record = j.save(replace(record, step=Step.MERGE, issued_leaf_pem=LEAF, issued_chain=CHAIN))
    j.save(replace(record, step=Step.DELIVER, issued_leaf_pem=None, issued_chain=()))
    stored = j.get("kv1", "web")
    assert stored is not None
    assert (stored.issued_leaf_pem, stored.issued_chain) == (None, ())


def test_history_is_bounded(journal: tuple[RenewalJournal, Clock]) -> None:
    """The record keeps only the newest outcomes."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    for index in range(HISTORY_LIMIT + 5):
        record = j.save(record.with_outcome({"status": "failed", "n": index}))
    history = j.get("kv1", "web").history  # type: ignore[union-attr]
    assert len(history) == HISTORY_LIMIT
    assert history[-1]["n"] == HISTORY_LIMIT + 4


def test_records_are_listed_per_vault(journal: tuple[RenewalJournal, Clock]) -> None:
    """Records lists the named vaults' records, or every vault's when none is named."""
    j, _ = journal
    for vault, name in (("kv1", "a"), ("kv1", "b"), ("kv2", "c")):
        assert j.claim(vault, name, "w") is not None
    assert sorted(r.certificate_name for r in j.records(["kv1"])) == ["a", "b"]
    assert sorted(r.certificate_name for r in j.records(["KV2"])) == ["c"]
    assert sorted(r.certificate_name for r in j.records()) == ["a", "b", "c"]


def test_due_records_are_those_waiting_or_abandoned(journal: tuple[RenewalJournal, Clock]) -> None:
    """Due: an unclaimed renewal whose retry time came (at any step), or one under way whose claim lapsed."""
    j, clock = journal
    names = ("waiting", "retry_begin", "crashed", "finished", "later", "crashed_idle")
    claimed = {name: j.claim("kv1", name, "w") for name in names}
    records = {name: record for name, record in claimed.items() if record is not None}
    assert len(records) == len(names)
    j.release(replace(records["waiting"], step=Step.POLL, next_attempt_at=clock.now - 1))
    j.release(replace(records["retry_begin"], step=Step.BEGIN, next_attempt_at=clock.now - 2, last_reason="throttled"))
    j.save(replace(records["crashed"], step=Step.MERGE))
    j.release(replace(records["finished"], step=Step.DONE))
    j.release(replace(records["later"], step=Step.SUBMIT, next_attempt_at=clock.now + 3600))
    assert [r.certificate_name for r in j.due_records(clock.now)] == ["retry_begin", "waiting"]
    clock.now += 61
    due = j.due_records(clock.now)
    assert sorted(r.certificate_name for r in due) == ["crashed", "retry_begin", "waiting"]
    assert j.due_records(clock.now, ["kv2"]) == []


# --- the outbox ----------------------------------------------------------------------------------------------


def test_merge_writes_record_and_outbox_together(journal: tuple[RenewalJournal, Clock]) -> None:
    """The merged step and its outbox rows land in one transaction: a stale save writes neither."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    items = [delivery(f"msg_v2_{name}", endpoint=name) for name in ("a", "b")]
    saved = j.save(replace(record, step=Step.DELIVER, new_version="v2"), outbox=items)
    assert j.get("kv1", "web") == saved
    assert [i.webhook_id for i in j.outbox(["kv1"])] == ["msg_v2_a", "msg_v2_b"]
    with pytest.raises(ClaimLostError):
        j.save(replace(record, step=Step.DELIVER), outbox=[delivery("msg_v2_c")])
    assert [i.webhook_id for i in j.outbox(["kv1"])] == ["msg_v2_a", "msg_v2_b"]
    assert j.get("kv1", "web") == saved


def test_release_with_outbox_writes_both(journal: tuple[RenewalJournal, Clock]) -> None:
    """Releasing with outbox rows writes the unclaimed record and the rows."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    j.release(record, outbox=[delivery("msg_failed")])
    assert j.get("kv1", "web").claim_owner is None  # type: ignore[union-attr]
    assert [i.webhook_id for i in j.outbox(["kv1"], certificate_name="web")] == ["msg_failed"]


def test_outbox_rows_must_share_the_records_vault(journal: tuple[RenewalJournal, Clock]) -> None:
    """Saving outbox rows of another vault with a record (or more than one transaction holds) is refused."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    with pytest.raises(ValueError, match="vault"):
        j.save(record, outbox=[delivery("msg_1", vault="kv2")])
    too_many = [delivery(f"msg_{n}") for n in range(OUTBOX_PER_SAVE + 1)]
    with pytest.raises(ValueError, match="at most"):
        j.save(record, outbox=too_many)
    assert j.outbox() == []


def test_outbox_of_one_certificate_holds_only_its_rows(journal: tuple[RenewalJournal, Clock]) -> None:
    """A certificate's outbox has its own rows only: not those of a name it prefixes, nor of another vault."""
    j, clock = journal
    j.add_outbox(
        [
            delivery("msg_web_2", created_at=clock.now + 2),
            delivery("msg_web_1", created_at=clock.now + 1),
            delivery("msg_webx", certificate="webx"),
            delivery("msg_web_2nd", certificate="web-2"),
            delivery("msg_we", certificate="we"),
            delivery("msg_other_vault", vault="kv2"),
        ]
    )
    assert [i.webhook_id for i in j.outbox(["kv1"], certificate_name="WEB")] == ["msg_web_1", "msg_web_2"]
    assert [i.webhook_id for i in j.outbox(certificate_name="web")] == ["msg_other_vault", "msg_web_1", "msg_web_2"]
    assert len(j.outbox(["kv1"])) == 5
    assert len(j.outbox()) == 6


def test_a_quote_in_a_name_is_no_query_syntax(journal: tuple[RenewalJournal, Clock]) -> None:
    """Names with a quote are matched as text (OData quoting), for records and outbox rows alike."""
    j, _ = journal
    record = j.claim("kv'1", "it's", "worker-a")
    assert record is not None
    j.save(record, outbox=[delivery("msg_q", vault="kv'1", certificate="it's")])
    j.add_outbox([delivery("msg_plain", vault="kv'1", certificate="it")])
    assert [i.webhook_id for i in j.outbox(["kv'1"], certificate_name="it's")] == ["msg_q"]
    assert [r.certificate_name for r in j.records(["kv'1"])] == ["it's"]


def test_queuing_a_delivery_again_replaces_its_row(journal: tuple[RenewalJournal, Clock]) -> None:
    """The same delivery queued twice is one row, as the later write left it."""
    j, _ = journal
    j.add_outbox([delivery("msg_1")])
    j.add_outbox([replace(delivery("msg_1"), attempts=3)])
    assert [(i.webhook_id, i.attempts) for i in j.outbox(["kv1"])] == [("msg_1", 3)]


def test_outbox_updates_are_conditional(journal: tuple[RenewalJournal, Clock]) -> None:
    """Two workers updating one delivery: only the first write wins."""
    j, _ = journal
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    j.save(record, outbox=[delivery("msg_1")])
    [stored] = j.outbox(["kv1"])
    first = j.save_outbox(replace(stored, status="delivered"))
    assert first is not None
    assert j.save_outbox(replace(stored, attempts=5)) is None
    assert j.outbox(["kv1"])[0].status == "delivered"
    assert j.save_outbox(replace(first, attempts=1)) is not None
    assert j.save_outbox(replace(first, etag=None)) is None


# --- trimming ------------------------------------------------------------------------------------------------


def test_trim_deletes_settled_rows_past_retention(journal: tuple[RenewalJournal, Clock]) -> None:
    """Trim deletes delivered and dead rows queued before the retention period, and nothing else."""
    j, clock = journal
    old = clock.now - RETENTION - 1
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    j.add_outbox(
        [
            delivery("msg_old_delivered", status="delivered", created_at=old),
            delivery("msg_old_dead", status="dead", created_at=old, vault="kv2"),
            delivery("msg_old_pending", status="pending", created_at=old),
            delivery("msg_recent_delivered", status="delivered", created_at=clock.now - RETENTION + 1),
        ]
    )
    assert j.trim(clock.now) == 2
    assert [i.webhook_id for i in j.outbox()] == ["msg_old_pending", "msg_recent_delivered"]
    assert j.trim(clock.now) == 0
    assert j.get("kv1", "web") == record
    clock.now += 2
    assert j.trim(clock.now) == 1
    assert [i.webhook_id for i in j.outbox()] == ["msg_old_pending"]


def test_trim_is_bounded_per_call(journal: tuple[RenewalJournal, Clock]) -> None:
    """Each trim deletes at most its limit, and later calls take the rest."""
    j, clock = journal
    old = clock.now - RETENTION - 1
    j.add_outbox([delivery(f"msg_{n}", certificate=f"c{n}", status="delivered", created_at=old) for n in range(3)])
    assert j.trim(clock.now, limit=2) == 2
    assert len(j.outbox()) == 1
    assert j.trim(clock.now, limit=2) == 1
    assert j.outbox() == []


def test_a_trimmed_row_cannot_be_saved(journal: tuple[RenewalJournal, Clock]) -> None:
    """Saving an outbox row that was trimmed since it was read writes nothing and returns None."""
    j, clock = journal
    j.add_outbox([delivery("msg_1", status="dead", created_at=clock.now - RETENTION - 1)])
    [stored] = j.outbox(["kv1"], certificate_name="web")
    assert j.trim(clock.now) == 1
    assert j.save_outbox(replace(stored, status="pending")) is None
    assert j.outbox() == []


# --- reads at scale ------------------------------------------------------------------------------------------


def renewal_reads(j: RenewalJournal) -> tuple[int, int]:
    """The (requests, entities) a renewal-shaped sequence reads: claim, save with outbox, its outbox, release."""
    before = (j.reads.requests, j.reads.entities)
    record = j.claim("kv1", "web", "worker-a")
    assert record is not None
    record = j.save(
        replace(record, step=Step.DELIVER, new_version="v2"),
        outbox=[delivery("msg_web_a"), delivery("msg_web_b", endpoint="b")],
    )
    mine = j.outbox(["kv1"], certificate_name="web")
    assert [i.webhook_id for i in mine] == ["msg_web_a", "msg_web_b"]
    assert all(j.save_outbox(replace(i, status="delivered")) for i in mine)
    j.release(replace(record, step=Step.DONE))
    return j.reads.requests - before[0], j.reads.entities - before[1]


def test_a_renewal_reads_the_same_whatever_the_vault_holds(make_journal: JournalMaker) -> None:
    """A renewal's journal reads are the same whether its vault has 1 or 500 other certificates with deliveries."""
    reads = {}
    for others in (1, 500):
        j, _ = make_journal()
        previous = j.claim("kv1", "web", "worker-0")
        assert previous is not None
        j.release(replace(previous, step=Step.DONE))
        # Half of them share the renewal's name as a prefix ("web0", "web2", ...), the rest do not.
        j.add_outbox([delivery(f"msg_{n}", certificate=f"{('web', 'cert')[n % 2]}{n}") for n in range(others)])
        reads[others] = renewal_reads(j)
    assert reads[500] == reads[1]
    # Its own record (one point read) and its own two outbox rows: nothing of the other certificates.
    assert reads[1][1] == 3


# --- what the sweep reads -------------------------------------------------------------------------------------


def fill_vault(j: RenewalJournal, clock: Clock, *, idle: int) -> None:
    """``idle`` finished renewals in kv1 and kv2, plus in kv1 one renewal of each kind that is under way."""
    for vault in ("kv1", "kv2"):
        for n in range(idle):
            record = j.claim(vault, f"idle{n}", "w")
            assert record is not None
            j.release(replace(record, step=Step.DONE if n % 2 else Step.BEGIN))
    claimed = j.claim("kv1", "claimed", "w")
    assert claimed is not None
    for name, changes in (
        ("polling", {"step": Step.POLL, "next_attempt_at": clock.now + 600}),
        ("retrying", {"step": Step.BEGIN, "next_attempt_at": clock.now - 5, "last_reason": "keyvault_throttled"}),
        ("merging", {"step": Step.MERGE}),
    ):
        record = j.claim("kv1", name, "w")
        assert record is not None
        j.release(replace(record, **changes))


def test_under_way_records_are_claims_retries_and_steps_not_done(journal: tuple[RenewalJournal, Clock]) -> None:
    """Under way: a live claim, a retry pending (even at BEGIN), or a step between BEGIN and DONE; not the idle."""
    j, clock = journal
    fill_vault(j, clock, idle=4)
    names = sorted(r.certificate_name for r in j.under_way_records(["kv1"]))
    assert names == ["claimed", "merging", "polling", "retrying"]
    assert j.under_way_records(["kv2"]) == []
    assert sorted(r.certificate_name for r in j.under_way_records()) == names


def test_the_sweeps_reads_do_not_grow_with_idle_records(make_journal: JournalMaker) -> None:
    """Records under way, due records and due deliveries read the same rows beside 2 or 100 idle records."""
    reads = {}
    for idle in (2, 100):
        j, clock = make_journal()
        fill_vault(j, clock, idle=idle)
        j.add_outbox(
            [delivery(f"msg_done{n}", certificate=f"idle{n}", status="delivered") for n in range(idle)]
            + [delivery("msg_due", certificate="merging"), delivery("msg_later", created_at=clock.now + 60)]
        )
        before = (j.reads.requests, j.reads.entities)
        assert len(j.under_way_records(["kv1", "kv2"])) == 4
        assert [r.certificate_name for r in j.due_records(clock.now, ["kv1", "kv2"])] == ["retrying"]
        assert [i.webhook_id for i in j.due_outbox(clock.now, ["kv1", "kv2"])] == ["msg_due"]
        reads[idle] = (j.reads.requests - before[0], j.reads.entities - before[1])
    assert reads[100] == reads[2]
    # One query per vault for each; the rows read are the 4 under way, the 1 due record and the 1 due delivery.
    assert reads[2] == (6, 6)


def test_due_records_include_a_lapsed_claim_under_way_but_not_a_live_one(journal: tuple[RenewalJournal, Clock]) -> None:
    """A claim whose worker died is due once it lapses; a claim at BEGIN with nothing pending never is."""
    j, clock = journal
    crashed = j.claim("kv1", "crashed", "w")
    idle_claim = j.claim("kv1", "idle", "w")
    assert crashed is not None
    assert idle_claim is not None
    j.save(replace(crashed, step=Step.SUBMIT))
    assert j.due_records(clock.now) == []
    clock.now += 61
    assert [r.certificate_name for r in j.due_records(clock.now)] == ["crashed"]


def test_due_deliveries_are_pending_rows_whose_time_came(journal: tuple[RenewalJournal, Clock]) -> None:
    """Due deliveries leave out delivered and dead rows and pending ones not yet due, oldest first."""
    j, clock = journal
    j.add_outbox(
        [
            delivery("msg_b", created_at=clock.now - 10),
            delivery("msg_a", created_at=clock.now - 20, certificate="api"),
            delivery("msg_sent", status="delivered"),
            delivery("msg_dead", status="dead"),
            delivery("msg_later", created_at=clock.now + 1),
            delivery("msg_other_vault", vault="kv2"),
        ]
    )
    assert [i.webhook_id for i in j.due_outbox(clock.now, ["kv1"])] == ["msg_a", "msg_b"]
    assert [i.webhook_id for i in j.due_outbox(clock.now)] == ["msg_a", "msg_b", "msg_other_vault"]
