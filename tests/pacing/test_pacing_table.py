"""The pacing rule across instances: several processes, each with several threads and its own table clients,
reserve one vault's create slots in Azurite, and no span ever holds more than the vault's rate."""

from __future__ import annotations

import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

from devstack.azurite import Azurite
from renewal.shells.journal import table_client_from_environ
from renewal.shells.pacing import PacingOptions, TablePacer
from tests.pacing._instance import reserve_from_one_instance
from tests.pacing.test_pacing_rule import most_in_any_span

OPTIONS = PacingOptions(creates_per_window=10, window_seconds=1.0, guard_seconds=0.1)


def test_instances_together_never_exceed_the_vaults_rate(azurite: Azurite) -> None:
    """Three processes of four threads each, racing for 90 slots, never get more than 10 in any 1.1 s span."""
    table = f"pace{uuid.uuid4().hex[:12]}"
    key = "kv1.vault.azure.net"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        results = [
            pool.submit(
                reserve_from_one_instance,
                azurite.connection_string,
                table,
                key,
                threads=4,
                each=8 if index else 6,
                options=OPTIONS,
            )
            for index in range(3)
        ]
        answers = [future.result(timeout=120) for future in results]
    slots = [slot for found, _ in answers for slot in found]
    assert len(slots) == 4 * (6 + 8 + 8)
    assert len(set(slots)) > 1
    assert most_in_any_span(slots, OPTIONS.span_seconds) <= OPTIONS.creates_per_window
    # Contention is bounded: each lost write is another caller's win at the same moment.
    conflicts = sum(lost for _, lost in answers)
    assert conflicts < len(slots) * 12


def test_a_second_instance_sees_the_first_ones_slots(azurite: Azurite) -> None:
    """Reservations live in the table, not in the process: a fresh pacer continues where another stopped."""
    table = f"pace{uuid.uuid4().hex[:12]}"
    environ = {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}
    now = 1_800_000_000.0
    first = TablePacer(table_client_from_environ(environ, table), clock=lambda: now, options=OPTIONS)
    for _ in range(10):
        assert first.reserve("kv1", within=0.0).granted
    second = TablePacer(table_client_from_environ(environ, table), clock=lambda: now, options=OPTIONS)
    refused = second.reserve("kv1", within=0.5)
    assert not refused.granted
    assert abs(refused.delay - OPTIONS.span_seconds) < 1e-6
    assert second.reserve("kv2", within=0.0).granted


def test_the_pacing_rows_live_beside_the_journal_without_showing_in_it(azurite: Azurite) -> None:
    """The app keeps its pacing rows in the journal's table (the role it has there covers them): no journal read
    sees them, and trimming leaves them."""
    from renewal.shells.journal import Journal

    environ = {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}
    table = f"journal{uuid.uuid4().hex[:12]}"
    now = 1_800_000_000.0
    pacer = TablePacer(table_client_from_environ(environ, table), clock=lambda: now, options=OPTIONS)
    assert pacer.reserve("kv1.vault.azure.net", within=0.0).granted
    journal = Journal(table_client_from_environ(environ, table), clock=lambda: now, claim_seconds=60.0)

    assert journal.records() == []
    assert journal.under_way_records() == []
    assert journal.due_records(now + 86400) == []
    assert journal.outbox() == []
    assert journal.trim(now + 86400 * 365) == 0
    assert pacer.reserve("kv1.vault.azure.net", within=60.0).granted, "the row is still there, and read"
