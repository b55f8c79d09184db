"""Where each target's rollout is kept: rows in the journal's table, next to the renewal records (docs/targets.md).

The rows share the journal's partition (the vault's name, lower-cased) under their own RowKey prefix::

    t|<certificate>|<target>     one target's rollout of the certificate's latest pushed version

(``<certificate>`` and ``<target>`` lower-cased; the journal's ``r|`` and ``o|`` ranges never meet ``t|``, and its
trim reads only ``o|``.) Every write is conditional: a new row is inserted only if none exists, a stored one is
replaced only if its etag is the one read, so two sweeps probing at once cannot both announce. A write may carry
outbox rows (the announcements it makes), saved with it in one entity-group transaction, as the journal saves a
record with its notifications. ``InMemoryRollouts`` keeps the same rules in a dict, for fast tests; both pass one
contract (tests/rollout/test_rollout_store.py).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from renewal.errors import RetryableError
from renewal.pure.rollout import Rollout, RolloutState
from renewal.shells.journal import (
    OUTBOX_PER_SAVE,
    OutboxItem,
    RenewalJournal,
    TableOnFirstUse,
    _misses,
    _outbox_entity,
    _partition,
    _partitions,
    _prefix_range,
    _storage,
)

if TYPE_CHECKING:
    from azure.data.tables import TableClient

__all__ = ["InMemoryRollouts", "RolloutStore", "TableRollouts"]

_ROLLOUT = "t|"


class RolloutStore(Protocol):
    """The rollout rows: read them, and write one only if nobody wrote it since it was read."""

    def get(self, vault_name: str, certificate_name: str, target: str) -> Rollout | None: ...

    def rollouts(self, vault_names: Iterable[str] | None = None) -> list[Rollout]: ...

    def unsettled(self, vault_names: Iterable[str] | None = None) -> list[Rollout]: ...

    def save(self, rollout: Rollout, *, outbox: Sequence[OutboxItem] = ()) -> Rollout | None: ...


class TableRollouts:
    """Rollout rows in the journal's Azure Table (the client ``table_client_from_environ`` gives).

    Args:
        table: the journal's table client (the table is created on first use if it does not exist).
    """

    def __init__(self, table: TableClient) -> None:
        self._ensure_table = TableOnFirstUse(table)

    def get(self, vault_name: str, certificate_name: str, target: str) -> Rollout | None:
        """The target's rollout row for the certificate, or ``None``.

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core.exceptions import ResourceNotFoundError

        try:
            with _storage("read a rollout row"):
                entity = self._ensure_table().get_entity(_partition(vault_name), _row_key(certificate_name, target))
        except ResourceNotFoundError:
            return None
        return _rollout_from(entity, (getattr(entity, "metadata", {}) or {}).get("etag"))

    def rollouts(self, vault_names: Iterable[str] | None = None) -> list[Rollout]:
        """Every rollout row (of the given vaults).

        Raises:
            RetryableError: storage is unavailable.
        """
        return self._query(vault_names, unsettled=False)

    def unsettled(self, vault_names: Iterable[str] | None = None) -> list[Rollout]:
        """The rollout rows with something left to do (a server-side filter: settled rows are not read).

        Raises:
            RetryableError: storage is unavailable.
        """
        return self._query(vault_names, unsettled=True)

    def _query(self, vault_names: Iterable[str] | None, *, unsettled: bool) -> list[Rollout]:
        low, high = _prefix_range(_ROLLOUT)
        found: list[Rollout] = []
        for partition in _partitions(vault_names):
            query = "RowKey ge @low and RowKey lt @high" + (" and settled eq false" if unsettled else "")
            parameters: dict[str, Any] = {"low": low, "high": high}
            if partition is not None:
                query = "PartitionKey eq @pk and " + query
                parameters["pk"] = partition
            with _storage("list the rollout rows"):
                for entity in self._ensure_table().query_entities(query, parameters=parameters):
                    found.append(_rollout_from(entity, (getattr(entity, "metadata", {}) or {}).get("etag")))
        return found

    def save(self, rollout: Rollout, *, outbox: Sequence[OutboxItem] = ()) -> Rollout | None:
        """Insert ``rollout`` (no etag: only if no row exists) or replace it (only if unchanged since read), with
        ``outbox`` rows in the same transaction; ``None`` when someone else wrote the row first.

        Raises:
            ValueError: an outbox row of another vault, or more than ``OUTBOX_PER_SAVE`` of them.
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import TableTransactionError

        _check_outbox(rollout, outbox)
        entity = _rollout_entity(rollout)
        table = self._ensure_table()
        if rollout.etag is None:
            operation: Any = ("create", entity)
        else:
            conditions = {"mode": "replace", "etag": rollout.etag, "match_condition": MatchConditions.IfNotModified}
            operation = ("update", entity, conditions)
        if not outbox:
            try:
                with _storage("save a rollout row"):
                    if rollout.etag is None:
                        metadata = table.create_entity(entity)
                    else:
                        metadata = table.update_entity(entity, **operation[2])
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                return None
            return replace(rollout, etag=metadata.get("etag"))
        operations = [operation, *(("upsert", _outbox_entity(item), {"mode": "replace"}) for item in outbox)]
        try:
            with _storage("save a rollout row and its announcements"):
                results = table.submit_transaction(operations)
        except TableTransactionError as exc:
            if _misses(exc) or getattr(exc, "status_code", None) == 409:
                return None
            raise RetryableError(
                f"the journal transaction failed: {type(exc).__name__}", reason="journal_unavailable"
            ) from exc
        return replace(rollout, etag=results[0].get("etag"))


class InMemoryRollouts:
    """The rollout rows in a dict, with the Table store's rules (conditional writes, announcements saved with
    them); its outbox rows go to ``journal``.

    Args:
        journal: where the outbox rows a save carries are queued (an ``InMemoryJournal`` in tests).
    """

    def __init__(self, journal: RenewalJournal) -> None:
        self._journal = journal
        self._rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, vault_name: str, certificate_name: str, target: str) -> Rollout | None:
        """As ``TableRollouts.get``."""
        with self._lock:
            stored = self._rows.get((_partition(vault_name), _row_key(certificate_name, target)))
        return None if stored is None else _rollout_from(*stored)

    def rollouts(self, vault_names: Iterable[str] | None = None) -> list[Rollout]:
        """As ``TableRollouts.rollouts``."""
        wanted = None if vault_names is None else {_partition(name) for name in vault_names}
        with self._lock:
            rows = sorted(self._rows.items())
        return [_rollout_from(*stored) for (pk, _), stored in rows if wanted is None or pk in wanted]

    def unsettled(self, vault_names: Iterable[str] | None = None) -> list[Rollout]:
        """As ``TableRollouts.unsettled``."""
        return [row for row in self.rollouts(vault_names) if not row.settled]

    def save(self, rollout: Rollout, *, outbox: Sequence[OutboxItem] = ()) -> Rollout | None:
        """As ``TableRollouts.save``."""
        _check_outbox(rollout, outbox)
        entity = _rollout_entity(rollout)
        key = (entity["PartitionKey"], entity["RowKey"])
        with self._lock:
            stored = self._rows.get(key)
            if (rollout.etag is None) != (stored is None) or (stored is not None and stored[1] != rollout.etag):
                return None
            etag = f'W/"{next(self._etags)}"'
            self._rows[key] = (entity, etag)
            if outbox:
                self._journal.add_outbox(outbox)
        return replace(rollout, etag=etag)


def _row_key(certificate_name: str, target: str) -> str:
    return f"{_ROLLOUT}{certificate_name.lower()}|{target.lower()}"


def _check_outbox(rollout: Rollout, outbox: Sequence[OutboxItem]) -> None:
    if len(outbox) > OUTBOX_PER_SAVE:
        raise ValueError(f"at most {OUTBOX_PER_SAVE} outbox rows go with one rollout row")
    if any(_partition(item.vault_name) != _partition(rollout.vault_name) for item in outbox):
        raise ValueError("outbox rows saved with a rollout row must be of its vault")


def _moment(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _rollout_entity(rollout: Rollout) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _partition(rollout.vault_name),
        "RowKey": _row_key(rollout.certificate_name, rollout.target),
        "vault_name": rollout.vault_name,
        "vault_url": rollout.vault_url,
        "certificate_name": rollout.certificate_name,
        "target": rollout.target,
        "kind": rollout.kind,
        "version": rollout.version,
        "thumbprint": rollout.thumbprint,
        "previous_version": rollout.previous_version or "",
        "ca_profile": rollout.ca_profile or "",
        "targets": json.dumps(list(rollout.targets)),
        "tags": json.dumps(dict(rollout.tags), sort_keys=True),
        "state": str(rollout.state),
        "pushed_at": rollout.pushed_at.timestamp(),
        "deadline": rollout.deadline.timestamp(),
        "probe_host": rollout.probe_host or "",
        "probe_port": rollout.probe_port,
        "probe_sni": rollout.probe_sni or "",
        "seen_thumbprint": rollout.seen_thumbprint or "",
        "last_error": rollout.last_error or "",
        "announced": ",".join(rollout.announced),
        "settled": rollout.settled,
    }
    checked = _moment(rollout.checked_at)
    if checked is not None:
        entity["checked_at"] = checked
    return entity


def _rollout_from(entity: Mapping[str, Any], etag: str | None) -> Rollout:
    def text(name: str) -> str | None:
        value = entity.get(name)
        return str(value) if value else None

    def moment(name: str) -> datetime | None:
        value = entity.get(name)
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    pushed_at = datetime.fromtimestamp(float(entity["pushed_at"]), UTC)
    deadline = datetime.fromtimestamp(float(entity["deadline"]), UTC)
    return Rollout(
        vault_name=str(entity["vault_name"]),
        vault_url=str(entity.get("vault_url") or ""),
        certificate_name=str(entity["certificate_name"]),
        target=str(entity["target"]),
        kind=str(entity.get("kind") or ""),
        version=str(entity["version"]),
        thumbprint=str(entity["thumbprint"]),
        previous_version=text("previous_version"),
        ca_profile=text("ca_profile"),
        targets=tuple(json.loads(str(entity.get("targets") or "[]"))),
        tags=json.loads(str(entity.get("tags") or "{}")),
        state=RolloutState(str(entity.get("state") or RolloutState.PUSHED)),
        pushed_at=pushed_at,
        deadline=deadline,
        probe_host=text("probe_host"),
        probe_port=int(entity.get("probe_port") or 443),
        probe_sni=text("probe_sni"),
        checked_at=moment("checked_at"),
        seen_thumbprint=text("seen_thumbprint"),
        last_error=text("last_error"),
        announced=tuple(a for a in str(entity.get("announced") or "").split(",") if a),
        settled=bool(entity.get("settled", False)),
        etag=etag,
    )


if TYPE_CHECKING:

    def _conforms(table: TableRollouts, memory: InMemoryRollouts) -> tuple[RolloutStore, RolloutStore]:
        return table, memory
