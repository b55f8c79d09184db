"""Per-vault pacing of certificate creates, shared by every instance through Azure Table Storage.

Key Vault throttles per vault: a certificate create makes a key, and key CREATE is limited to 20 per 10 s for
software keys and 10 for HSM keys (learn: key-vault/general/service-limits). A fleet spread over many Functions
instances must stay under that limit together, so the 429 stays the last line of defence and not the first.

The pacer hands out *reservations*: a time at which the caller may send one create. All reservations of one
vault live in one table row (``PartitionKey`` = the vault's host, ``RowKey`` = ``create``) as a sorted list of
times, and every change to it is a write conditional on the row's etag, so two instances can never hand out the
same slot. A new reservation goes after every other one, at the first time when the last ``limit`` reservations
before it lie a whole span earlier, so no span of ``window + guard`` seconds ever holds more than ``limit``::

    reserved:  t1 t2 ... t20 | next = max(now, t_last, t1 + span)

Each caller writes once per reservation and then sleeps until its time without touching the row again, so
contention is bounded by how many callers ask at the same moment, not by how long they wait (no thundering herd
when a slot frees). The guard absorbs the gap between a reservation's time and the moment Key Vault sees the
request (sleep overshoot, the request's own latency, clock skew between instances): sends can be up to the guard
late and the vault still sees at most ``limit`` in any window.

A reservation is only made within ``within`` seconds; when the next slot is further away the caller learns how
long to wait and may defer (``ThrottledError`` with ``retry_after``, which the journal's next attempt honours).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from renewal.errors import RetryableError, ThrottledError
from renewal.pure.pacing import CREATE_RATE, CREATE_RATES, DEFAULT_CREATES_PER_WINDOW, PacingOptions

if TYPE_CHECKING:
    from azure.data.tables import TableClient

__all__ = [
    "CREATE_RATE",
    "CREATE_RATES",
    "DEFAULT_CREATES_PER_WINDOW",
    "InMemoryPacer",
    "NoPacing",
    "Pacer",
    "PacingOptions",
    "Reservation",
    "TablePacer",
    "next_slot",
    "vault_key",
    "wait_for_slot",
]

_ROW_KEY = "create"
# Conditional writes lost to other callers before this one reports a short wait instead of trying again.
_WRITE_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Reservation:
    """A pacer's answer.

    Attributes:
        granted: whether a slot was reserved: the caller may send one create after ``delay`` seconds.
        delay: seconds until the reserved slot, or, when not granted, until asking again is worthwhile.
        at: the reserved slot (Unix seconds), when granted.
    """

    granted: bool
    delay: float
    at: float | None = None


class Pacer(Protocol):
    """Hands out per-vault slots for certificate creates; ``TablePacer``, ``InMemoryPacer`` and ``NoPacing``."""

    def reserve(self, key: str, *, within: float) -> Reservation:
        """Reserve the vault's next slot if it is at most ``within`` seconds away.

        Raises:
            RetryableError: the shared state is unavailable.
        """
        ...


class NoPacing:
    """A pacer that always grants at once: Key Vault's 429 and the SDK's retries are all there is."""

    def reserve(self, key: str, *, within: float) -> Reservation:
        """Grant at once."""
        return Reservation(granted=True, delay=0.0)


def vault_key(vault_url: str) -> str:
    """The pacing key of a vault: its host (and port), lower-cased (``kv1.vault.azure.net``)."""
    return (urlsplit(vault_url).netloc or vault_url).lower().rstrip("/")


def next_slot(reserved: list[float], now: float, *, limit: int, span: float) -> tuple[float, list[float]]:
    """The next free slot after the sorted reservations ``reserved``, and those still inside the span.

    The slot goes after every reservation so the list stays sorted, and at least ``span`` after the
    ``limit``-th last, so no half-open interval of ``span`` seconds holds more than ``limit``.
    """
    live = [t for t in reserved if t > now - span]
    slot = max(now, live[-1]) if live else now
    if len(live) >= limit:
        slot = max(slot, live[-limit] + span)
    return slot, live


def wait_for_slot(pacer: Pacer, key: str, *, within: float, sleep: Callable[[float], None]) -> None:
    """Wait (through ``sleep``) for the vault's next create slot, if it comes within ``within`` seconds.

    Raises:
        ThrottledError: the next slot is further away (reason ``keyvault_throttled``, ``retry_after`` the wait),
            so the caller defers the create instead of holding an invocation.
        RetryableError: the pacer's shared state is unavailable.
    """
    waited = 0.0
    while True:
        reservation = pacer.reserve(key, within=max(0.0, within - waited))
        if reservation.granted:
            if reservation.delay > 0:
                sleep(reservation.delay)
            return
        if waited + reservation.delay > within:
            raise ThrottledError(
                f"the create rate of vault {key} is spent for the next {reservation.delay:.1f} s; deferred",
                reason="keyvault_throttled",
                retry_after=reservation.delay,
            )
        # Only when other callers won every write: a short wait, then ask again.
        sleep(reservation.delay)
        waited += reservation.delay


class TablePacer:
    """Per-vault reservations in an Azure Table, shared by every instance (see the module docstring).

    Args:
        table: the table client (the table is created on first use); the journal's storage account.
        clock: Unix seconds now, the same on every instance (wall time, injected).
        options: the rates.
    """

    def __init__(self, table: TableClient, *, clock: Callable[[], float], options: PacingOptions) -> None:
        self._table = table
        self._clock = clock
        self._options = options
        self._table_ready = False
        self.writes = 0
        self.conflicts = 0

    def reserve(self, key: str, *, within: float) -> Reservation:
        """Reserve the vault's next create slot if it is at most ``within`` seconds away.

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            HttpResponseError,
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        limit = self._options.limit_for(key)
        if limit <= 0:
            return Reservation(granted=True, delay=0.0)
        span = self._options.span_seconds
        try:
            table = self._ensure_table()
            for _ in range(_WRITE_ATTEMPTS):
                now = self._clock()
                try:
                    entity: Any = table.get_entity(key, _ROW_KEY)
                    reserved = _times(entity.get("reserved"))
                    etag = entity.metadata.get("etag")
                except ResourceNotFoundError:
                    reserved, etag = [], None
                slot, live = next_slot(reserved, now, limit=limit, span=span)
                if slot - now > within:
                    return Reservation(granted=False, delay=slot - now)
                row = {"PartitionKey": key, "RowKey": _ROW_KEY, "reserved": _text([*live, slot])}
                self.writes += 1
                try:
                    if etag is None:
                        table.create_entity(row)
                    else:
                        table.update_entity(
                            row,
                            mode="replace",  # type: ignore[arg-type]  # the SDK accepts the enum's value
                            etag=etag,
                            match_condition=MatchConditions.IfNotModified,
                        )
                except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                    self.conflicts += 1
                    continue
                return Reservation(granted=True, delay=slot - now, at=slot)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise RetryableError(
                "the pacer could not reserve a create slot: storage unreachable", reason="journal_unavailable"
            ) from exc
        except HttpResponseError as exc:
            raise RetryableError(
                f"the pacer could not reserve a create slot: HTTP {exc.status_code}", reason="journal_unavailable"
            ) from exc
        return Reservation(granted=False, delay=0.05 * _WRITE_ATTEMPTS)

    def _ensure_table(self) -> TableClient:
        if not self._table_ready:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._table_ready = True
        return self._table


class InMemoryPacer:
    """The same reservations in one process's memory, on an injected clock: for tests and benchmarks.

    ``reservations`` records every slot granted, per key, for tests to count.
    """

    def __init__(self, *, clock: Callable[[], float], options: PacingOptions | None = None) -> None:
        self._clock = clock
        self._options = options or PacingOptions()
        self._reserved: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.reservations: dict[str, list[float]] = {}

    def reserve(self, key: str, *, within: float) -> Reservation:
        """Reserve the vault's next create slot if it is at most ``within`` seconds away."""
        limit = self._options.limit_for(key)
        if limit <= 0:
            return Reservation(granted=True, delay=0.0)
        with self._lock:
            now = self._clock()
            slot, live = next_slot(self._reserved.get(key, []), now, limit=limit, span=self._options.span_seconds)
            if slot - now > within:
                return Reservation(granted=False, delay=slot - now)
            self._reserved[key] = [*live, slot]
            self.reservations.setdefault(key, []).append(slot)
            return Reservation(granted=True, delay=slot - now, at=slot)


def _times(stored: object) -> list[float]:
    try:
        return sorted(float(t) for t in json.loads(str(stored or "[]")))
    except (ValueError, TypeError):
        # A row nobody can read holds no reservation anyone honours: start again (the 429 is still there).
        return []


def _text(times: list[float]) -> str:
    return json.dumps(times, separators=(",", ":"))


if TYPE_CHECKING:

    def _conforms(table: TablePacer, memory: InMemoryPacer, none: NoPacing) -> list[Pacer]:
        return [table, memory, none]
