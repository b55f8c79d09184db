"""Test helpers for users of the renewal app, as structlog ships ``structlog.testing``.

``InMemoryJournal`` is the journal without storage: the same methods and the same semantics as the Table Storage
``Journal`` (etag claims that lapse on the injected clock, a record and its outbox rows written atomically,
``ClaimLostError`` for a stale write, trimming of settled outbox rows). Both pass one contract
(``tests/shells/test_journal_contract.py``), so a flow step tested against it behaves the same on Table Storage::

    journal = InMemoryJournal(clock=lambda: now, claim_seconds=60)  # the clock returns Unix seconds
    record = journal.claim("kv1", "web", "worker-a")
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from renewal.shells.journal import (
    _OUTBOX,
    _RECORD,
    _TRIM_LIMIT,
    RETENTION_SECONDS,
    OutboxItem,
    ReadCount,
    RenewalRecord,
    _check_batch,
    _claim_lost,
    _claimed_by_another,
    _due,
    _is_due_delivery,
    _is_under_way,
    _matches_due_filter,
    _matches_due_outbox_filter,
    _matches_under_way_filter,
    _outbox_entity,
    _outbox_items,
    _outbox_prefix,
    _partition,
    _partitions,
    _prefix_range,
    _record_entity,
    _record_from,
    _record_key,
)

# The Table Storage journal's own entity mapping and rules, so what round-trips through one round-trips through
# the other (a history entry that is not JSON comes back as text from both, a step under its stored name).
from renewal.shells.pacing import InMemoryPacer

if TYPE_CHECKING:
    from renewal.shells.journal import RenewalJournal

__all__ = ["InMemoryJournal", "InMemoryPacer"]

_SETTLED = frozenset({"delivered", "dead"})


class InMemoryJournal:
    """The journal in a dict: renewal records and the outbox, with an etag per row as the lock.

    Rows are kept as the Table Storage journal writes them (``PartitionKey``, ``RowKey`` and properties), and
    ``reads`` counts point reads and range reads as that journal's requests would.

    Args:
        clock: Unix seconds now (injected in tests).
        claim_seconds: how long a claim holds before another worker may take it over.
        retention_seconds: how long a settled outbox row is kept after it was queued, before ``trim`` deletes it.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        claim_seconds: float = 600.0,
        retention_seconds: float = RETENTION_SECONDS,
    ) -> None:
        self._clock = clock
        self._claim_seconds = claim_seconds
        self._retention_seconds = retention_seconds
        self._rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._etags = itertools.count(1)
        self._reads = ReadCount()
        # Workers in tests may be threads: each method is one atomic step, as one storage request is.
        self._lock = threading.RLock()

    @property
    def reads(self) -> ReadCount:
        """The reads this journal has made so far, counted as the Table Storage journal counts its requests."""
        return self._reads

    # --- renewal records -----------------------------------------------------------------------------------

    def claim(self, vault_name: str, certificate_name: str, owner: str) -> RenewalRecord | None:
        """Take the certificate's claim for ``owner``; ``None`` when another worker holds a live claim."""
        now = self._clock()
        with self._lock:
            record = self.get(vault_name, certificate_name)
            if record is None:
                record = RenewalRecord(vault_name, certificate_name)
            elif _claimed_by_another(record, owner, now):
                return None
            claimed = replace(record, claim_owner=owner, claim_expires_at=now + self._claim_seconds)
            return replace(claimed, etag=self._write(_record_entity(claimed)))

    def get(self, vault_name: str, certificate_name: str) -> RenewalRecord | None:
        """Read a certificate's record, or ``None`` when it has none."""
        with self._lock:
            self._reads.requests += 1
            stored = self._rows.get((_partition(vault_name), _record_key(certificate_name)))
            if stored is None:
                return None
            self._reads.entities += 1
            return replace(_record_from(stored[0]), etag=stored[1])

    def save(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord:
        """Write ``record`` if nobody changed it since it was read, with any new outbox rows, atomically.

        Raises:
            ClaimLostError: the record changed under us (another worker took over), or was never read.
            ValueError: an outbox row of another vault, or more than ``OUTBOX_PER_SAVE`` of them.
        """
        _check_batch(record, outbox)
        entity = _record_entity(record)
        with self._lock:
            stored = self._rows.get((entity["PartitionKey"], entity["RowKey"]))
            if record.etag is None or stored is None or stored[1] != record.etag:
                raise _claim_lost(record)
            etag = self._write(entity)
            for item in outbox:
                self._write(_outbox_entity(item))
        return replace(record, etag=etag)

    def release(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord:
        """Save ``record`` without its claim (with any new outbox rows).

        Raises:
            ClaimLostError: the record changed under us.
            ValueError: as ``save``.
        """
        return self.save(replace(record, claim_owner=None, claim_expires_at=None), outbox=outbox)

    def records(self, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Every renewal record (of the given vaults)."""
        with self._lock:
            rows = [row for partition in _partitions(vault_names) for row in self._range(partition, _RECORD)]
        return [_record_from(row) for row in rows]

    def due_records(self, now: float, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Records the sweep should take up: a retry whose time has come, or a lapsed claim under way.

        Only the rows the Table Storage journal's server-side filter returns are read (and counted)."""
        with self._lock:
            rows = [
                row
                for partition in _partitions(vault_names)
                for row in self._filtered(partition, _RECORD, lambda e: _matches_due_filter(e, now))
            ]
        return _due([_record_from(row) for row in rows], now)

    def under_way_records(self, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Records with a claim, a retry pending, or a step not done; only those rows are read (and counted)."""
        with self._lock:
            rows = [
                row
                for partition in _partitions(vault_names)
                for row in self._filtered(partition, _RECORD, _matches_under_way_filter)
            ]
        return [record for record in map(_record_from, rows) if _is_under_way(record)]

    # --- outbox --------------------------------------------------------------------------------------------

    def add_outbox(self, items: Sequence[OutboxItem]) -> None:
        """Queue outbox rows on their own (announcements that belong to no claimed renewal)."""
        with self._lock:
            for item in items:
                self._write(_outbox_entity(item))

    def outbox(
        self, vault_names: Iterable[str] | None = None, *, certificate_name: str | None = None
    ) -> list[OutboxItem]:
        """Every outbox row (of the given vaults, optionally of one certificate), oldest first."""
        prefix = _OUTBOX if certificate_name is None else _outbox_prefix(certificate_name)
        with self._lock:
            rows = [row for partition in _partitions(vault_names) for row in self._range(partition, prefix)]
        return _outbox_items(rows, certificate_name)

    def due_outbox(self, now: float, vault_names: Iterable[str] | None = None) -> list[OutboxItem]:
        """Pending outbox rows whose next attempt has come, oldest first; only those rows are read (and counted)."""
        with self._lock:
            rows = [
                row
                for partition in _partitions(vault_names)
                for row in self._filtered(partition, _OUTBOX, lambda e: _matches_due_outbox_filter(e, now))
            ]
        return [item for item in _outbox_items(rows, None) if _is_due_delivery(item, now)]

    def save_outbox(self, item: OutboxItem) -> OutboxItem | None:
        """Update an outbox row if nobody changed it since it was read; ``None`` when someone did (or it is gone)."""
        entity = _outbox_entity(item)
        with self._lock:
            stored = self._rows.get((entity["PartitionKey"], entity["RowKey"]))
            if item.etag is None or stored is None or stored[1] != item.etag:
                return None
            return replace(item, etag=self._write(entity))

    def trim(self, now: float, *, limit: int = _TRIM_LIMIT) -> int:
        """Delete up to ``limit`` settled outbox rows queued more than the retention period before ``now``;
        return how many were deleted."""
        cutoff = now - self._retention_seconds
        with self._lock:
            settled = [
                row
                for row in self._range(None, _OUTBOX, count=False)
                if row["status"] in _SETTLED and row["created_at"] < cutoff
            ][:limit]
            self._reads.requests += 1
            self._reads.entities += len(settled)
            for row in settled:
                del self._rows[(row["PartitionKey"], row["RowKey"])]
        return len(settled)

    # --- plumbing ------------------------------------------------------------------------------------------

    def _write(self, entity: Mapping[str, Any]) -> str:
        etag = f'W/"{next(self._etags)}"'
        self._rows[(entity["PartitionKey"], entity["RowKey"])] = (dict(entity), etag)
        return etag

    def _range(self, partition: str | None, prefix: str, *, count: bool = True) -> list[_Row]:
        """Rows whose RowKey starts with ``prefix``, in Table Storage's order (partition, then row key)."""
        low, high = _prefix_range(prefix)
        rows = [
            _Row(entity, etag)
            for (pk, rk), (entity, etag) in sorted(self._rows.items())
            if (partition is None or pk == partition) and low <= rk < high
        ]
        if count:
            self._reads.requests += 1
            self._reads.entities += len(rows)
        return rows

    def _filtered(
        self, partition: str | None, prefix: str, condition: Callable[[Mapping[str, Any]], bool]
    ) -> list[_Row]:
        """Rows of a prefix range that meet a server-side filter: one request, and only the matching rows read."""
        rows = [row for row in self._range(partition, prefix, count=False) if condition(row)]
        self._reads.requests += 1
        self._reads.entities += len(rows)
        return rows


class _Row(dict[str, Any]):
    """A stored row as the Table SDK hands it out: its properties, and its etag under ``metadata``."""

    def __init__(self, entity: Mapping[str, Any], etag: str) -> None:
        super().__init__(entity)
        self.metadata = {"etag": etag}


if TYPE_CHECKING:

    def _conforms(journal: InMemoryJournal) -> RenewalJournal:
        return journal
