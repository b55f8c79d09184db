"""The journal: what Key Vault cannot hold about a renewal, in Azure Table Storage (docs/architecture.md §4).

One table, partitioned by vault (``PartitionKey`` = the vault's name, lower-cased), holds two kinds of rows::

    r|<certificate>                  the renewal record: one per certificate, read by a point query
    o|<certificate>|<webhook-id>     an outbox row: one per delivery, found by a RowKey prefix range on its
                                     certificate, so a renewal reads its own rows and nobody else's

(``<certificate>`` lower-cased.) The record holds the step, the pending request id and CSR hash, the CA's
reference, the issued certificate once the CA answered, the new version once merged, attempts, next attempt
time, last error, a bounded history of outcomes, and the claim. An outbox row holds the payload to send,
attempts, next attempt time and status (``pending``, ``delivered``, ``dead``); ``trim`` deletes settled rows
(delivered or dead) once they are older than the retention period, so the table stays as large as the fleet.

The record's etag is the lock: every write is conditional on the etag read, so two workers cannot both act on
one renewal. A claim carries an expiry, so a crashed worker's claim is taken over once it lapses. Saving a
record with outbox rows is one entity-group transaction (same partition), so a notification can never be lost
between the two.

The sweep reads only what it must act on, with server-side filters, so its reads are bounded by what is under
way or due and not by the fleet: ``under_way_records`` (a claim, a retry pending, a step not done),
``due_records`` and ``due_outbox``. The filters use the properties every record row has always carried
(``step``, and ``claim_owner``/``next_attempt_at``, written only when set), so rows written before these queries
existed are found without a migration (see ``_UNDER_WAY_FILTER``).

Rows written before this layout are still read: a step under its old name (``Step.stored``), a chain as
concatenated PEM text, and outbox rows keyed ``o|<webhook-id>`` (see ``Journal.outbox``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from renewal.errors import ClaimLostError, ConfigurationError, RetryableError
from renewal.steps import Step

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

__all__ = [
    "HISTORY_LIMIT",
    "OUTBOX_PER_SAVE",
    "RETENTION_SECONDS",
    "Journal",
    "OutboxItem",
    "ReadCount",
    "RenewalJournal",
    "RenewalRecord",
    "TableOnFirstUse",
    "storage_client_from_environ",
    "table_client_from_environ",
]

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 10
# Settled outbox rows are kept this long after they were queued, for the status page and the operator.
RETENTION_SECONDS = 7 * 24 * 3600.0
# An entity-group transaction holds at most 100 operations: the record and up to 99 outbox rows.
OUTBOX_PER_SAVE = 99
_TRIM_LIMIT = 100
# Azurite's documented development account (not a secret) and its default port for each service.
_AZURITE_ACCOUNT = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
)
_AZURITE_PORTS = {"queue": 10001, "table": 10002}
ClientT = TypeVar("ClientT")
_RECORD = "r|"
_OUTBOX = "o|"
# Outbox rows from before the per-certificate keys are "o|<webhook-id>", and every webhook id was "msg_<hex>"
# (flow.deliveries.queue_for). Key Vault names hold only letters, digits and '-', so no "o|<certificate>|" row
# falls in this range.
_LEGACY_OUTBOX = "o|msg_"
_PEM_END = "-----END CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class RenewalRecord:
    """The journal's record of one certificate's renewal.

    Attributes:
        vault_name: the vault (as configured).
        certificate_name: the certificate.
        step: where the renewal stands (``renewal.steps.Step``).
        ca_profile: the CA profile in use.
        previous_version: the version being replaced.
        request_id: Key Vault's pending operation id.
        csr_sha256: hash of the CSR the renewal works with (hex).
        ca_reference: the CA's handle for a deferred request.
        issued_leaf_pem: the CA's answer, kept so that a crash before the merge does not ask the CA again.
        issued_chain: its chain, one PEM certificate each, nearest issuer first.
        new_version: the merged version.
        expires_on: expiry (Unix seconds) of the version being renewed: retries never go past it.
        attempts: failed attempts of the current renewal.
        next_attempt_at: when the sweep should try again (Unix seconds), if at all.
        last_reason: the machine reason of the last failure.
        last_error: its message.
        history: the last ``HISTORY_LIMIT`` outcomes (dicts), newest last.
        claim_owner: the worker holding the claim, if any.
        claim_expires_at: when that claim lapses (Unix seconds).
        etag: the version of the row this was read from.
    """

    vault_name: str
    certificate_name: str
    step: Step = Step.BEGIN
    ca_profile: str | None = None
    previous_version: str | None = None
    request_id: str | None = None
    csr_sha256: str | None = None
    ca_reference: str | None = None
    issued_leaf_pem: str | None = field(default=None, repr=False)
    issued_chain: tuple[str, ...] = field(default=(), repr=False)
    new_version: str | None = None
    expires_on: float | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    last_reason: str | None = None
    last_error: str | None = None
    history: tuple[Mapping[str, object], ...] = ()
    claim_owner: str | None = None
    claim_expires_at: float | None = None
    etag: str | None = field(default=None, compare=False)

    @property
    def under_way(self) -> bool:
        """Whether a renewal holds state in Key Vault or the CA that must be carried on."""
        return self.step.under_way

    def with_outcome(self, outcome: Mapping[str, object]) -> RenewalRecord:
        """Append an outcome to the bounded history."""
        return replace(self, history=(*self.history, dict(outcome))[-HISTORY_LIMIT:])


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One notification to deliver (a webhook, or an outcome event for an Event Grid topic).

    Attributes:
        vault_name: the vault (the partition).
        webhook_id: the delivery's id, the same on every attempt so receivers can deduplicate.
        endpoint: the configured endpoint's name (``RENEWAL_WEBHOOKS``), or ``eventgrid-topic``.
        certificate_name: the certificate it is about.
        version: the version it announces.
        payload: the JSON body (no secrets: endpoints' secrets are looked up at delivery time).
        status: ``pending``, ``delivered`` or ``dead``.
        attempts: deliveries tried so far.
        created_at: when it was queued (Unix seconds); deliveries older than the maximum age are dead-lettered,
            and settled ones older than the retention period are trimmed.
        next_attempt_at: when it is due (Unix seconds).
        last_error: why the last attempt failed.
        etag: the version of the row this was read from.
    """

    vault_name: str
    webhook_id: str
    endpoint: str
    certificate_name: str
    version: str
    payload: str = field(repr=False)
    status: str = "pending"
    attempts: int = 0
    created_at: float = 0.0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    etag: str | None = field(default=None, compare=False)


@dataclass(slots=True)
class ReadCount:
    """The storage reads a journal has made: requests sent, and the entities they brought back."""

    requests: int = 0
    entities: int = 0


class RenewalJournal(Protocol):
    """What the flow needs of a journal: ``Journal`` (Table Storage) and ``renewal.testing.InMemoryJournal``.

    Both pass one contract (``tests/shells/test_journal_contract.py``); see ``Journal`` for each method.
    """

    @property
    def reads(self) -> ReadCount: ...

    def claim(self, vault_name: str, certificate_name: str, owner: str) -> RenewalRecord | None: ...

    def get(self, vault_name: str, certificate_name: str) -> RenewalRecord | None: ...

    def save(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord: ...

    def release(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord: ...

    def add_outbox(self, items: Sequence[OutboxItem]) -> None: ...

    def records(self, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]: ...

    def due_records(self, now: float, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]: ...

    def under_way_records(self, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]: ...

    def due_outbox(self, now: float, vault_names: Iterable[str] | None = None) -> list[OutboxItem]: ...

    def outbox(
        self, vault_names: Iterable[str] | None = None, *, certificate_name: str | None = None
    ) -> list[OutboxItem]: ...

    def save_outbox(self, item: OutboxItem) -> OutboxItem | None: ...

    def trim(self, now: float, *, limit: int = _TRIM_LIMIT) -> int: ...


# The identity-based endpoint settings, spelled out: the infra tests check that the app reads each one it is given.
_SERVICE_URI_SETTINGS = {
    "table": "AzureWebJobsStorage__tableServiceUri",
    "queue": "AzureWebJobsStorage__queueServiceUri",
}


def storage_client_from_environ(
    environ: Mapping[str, str],
    *,
    service: Literal["queue", "table"],
    purpose: str,
    from_connection_string: Callable[[str], ClientT],
    from_identity: Callable[[str, TokenCredential], ClientT],
    own_setting: str | None = None,
) -> ClientT:
    """A storage client as the Function App's storage is configured, as the Functions host connects.

    ``own_setting`` (a connection string) wins when it is set; otherwise ``AzureWebJobsStorage`` as a connection
    string (``UseDevelopmentStorage=true`` means Azurite), or its identity-based form as Flex Consumption uses it
    (``AzureWebJobsStorage__<service>ServiceUri`` or ``__accountName``, with ``__clientId`` for a user-assigned
    identity).

    Args:
        environ: the app settings.
        service: which storage service the client talks to.
        purpose: what the storage is for, as the error for none says it (``the journal``).
        from_connection_string: the client for a connection string.
        from_identity: the client for a service endpoint and the managed identity's credential.
        own_setting: a setting of this client's own that takes precedence over ``AzureWebJobsStorage``.

    Raises:
        ConfigurationError: no storage is configured, or its connection string is malformed (never shown).
    """
    own = environ.get(own_setting, "").strip() if own_setting else ""
    setting = own_setting if own_setting and own else "AzureWebJobsStorage"
    connection = own or environ.get("AzureWebJobsStorage", "").strip()
    if connection.replace(" ", "").lower() == "usedevelopmentstorage=true":
        # Core Tools' shorthand for Azurite on its default ports; the storage SDKs do not expand it.
        endpoint = f"http://127.0.0.1:{_AZURITE_PORTS[service]}/devstoreaccount1"
        connection = f"{_AZURITE_ACCOUNT}{service.capitalize()}Endpoint={endpoint};"
    if connection:
        try:
            # The account key signs every request: it stays with the account's own host.
            return from_connection_string(connection)
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            # Never the text: a connection string holds the account key.
            raise ConfigurationError(setting, "is not a valid storage connection string") from exc
    endpoint = environ.get(_SERVICE_URI_SETTINGS[service], "").strip()
    account = environ.get("AzureWebJobsStorage__accountName", "").strip()
    if not endpoint and account:
        endpoint = f"https://{account}.{service}.core.windows.net"
    if not endpoint:
        raise ConfigurationError(
            "AzureWebJobsStorage",
            f"no storage for {purpose}: set AzureWebJobsStorage (or its identity-based "
            f"__accountName/__{service}ServiceUri form)" + (f" or {own_setting}" if own_setting else ""),
        )
    from azure.identity import DefaultAzureCredential

    client_id = environ.get("AzureWebJobsStorage__clientId", "").strip() or None
    return from_identity(endpoint, DefaultAzureCredential(managed_identity_client_id=client_id))


def table_client_from_environ(environ: Mapping[str, str], table_name: str) -> TableClient:
    """Connect to the journal table as the Function App's storage is configured (``storage_client_from_environ``,
    with ``RENEWAL_JOURNAL_CONNECTION``, a connection string, winning).

    Raises:
        ConfigurationError: no storage is configured, or its connection string is malformed (never shown).
    """
    from azure.data.tables import TableServiceClient

    service = storage_client_from_environ(
        environ,
        service="table",
        purpose="the journal",
        from_connection_string=lambda connection: TableServiceClient.from_connection_string(
            connection, permit_redirects=False
        ),
        from_identity=lambda endpoint, credential: TableServiceClient(
            endpoint, credential=credential, permit_redirects=False
        ),
        own_setting="RENEWAL_JOURNAL_CONNECTION",
    )
    return service.get_table_client(table_name)


class TableOnFirstUse:
    """A table client whose table is created the first time it is asked for (storage refuses every request to a
    table that does not exist, and a new deployment has none).

    Args:
        table: the table client.
    """

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ready = False

    def __call__(self) -> TableClient:
        """The table client, after creating its table if this is the first call.

        Raises:
            RetryableError: storage is unavailable.
        """
        if not self._ready:
            from azure.core.exceptions import ResourceExistsError

            try:
                with _storage("create the journal table"):
                    self._table.create_table()
            except ResourceExistsError:
                pass
            self._ready = True
        return self._table


class Journal:
    """Renewal records and the outbox in Azure Table Storage, with the etag as the lock.

    Args:
        table: the table client (created on first use if the table does not exist).
        clock: Unix seconds now (injected in tests).
        claim_seconds: how long a claim holds before another worker may take it over; well above the longest
            invocation (``functionTimeout``) so a live worker never loses its claim.
        retention_seconds: how long a settled (delivered or dead) outbox row is kept after it was queued, before
            ``trim`` deletes it; keep it above the deliveries' maximum age so a dead letter stays visible.
    """

    def __init__(
        self,
        table: TableClient,
        *,
        clock: Callable[[], float] = time.time,
        claim_seconds: float = 600.0,
        retention_seconds: float = RETENTION_SECONDS,
    ) -> None:
        self._table = table
        self._clock = clock
        self._claim_seconds = claim_seconds
        self._retention_seconds = retention_seconds
        self._ensure_table = TableOnFirstUse(table)
        self._reads = ReadCount()
        # Partitions (None: the whole table) seen without outbox rows of the old layout: this code never writes
        # one, so once a partition has none, reading a certificate's outbox stops looking for them.
        self._no_legacy_rows: set[str | None] = set()

    @property
    def reads(self) -> ReadCount:
        """The storage reads this journal has made so far (point reads and query pages, and their entities)."""
        return self._reads

    # --- renewal records -----------------------------------------------------------------------------------

    def claim(self, vault_name: str, certificate_name: str, owner: str) -> RenewalRecord | None:
        """Take the certificate's claim for ``owner``; ``None`` when another worker holds a live claim.

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        now = self._clock()
        for _ in range(3):
            record = self.get(vault_name, certificate_name)
            if record is None:
                claimed = RenewalRecord(
                    vault_name, certificate_name, claim_owner=owner, claim_expires_at=now + self._claim_seconds
                )
                try:
                    with _storage("create the renewal record"):
                        metadata = self._ensure_table().create_entity(_record_entity(claimed))
                except ResourceExistsError:
                    continue
                return replace(claimed, etag=metadata.get("etag"))
            if _claimed_by_another(record, owner, now):
                return None
            claimed = replace(record, claim_owner=owner, claim_expires_at=now + self._claim_seconds)
            try:
                with _storage("claim the renewal record"):
                    metadata = self._ensure_table().update_entity(
                        _record_entity(claimed),
                        mode="replace",  # type: ignore[arg-type]  # the SDK accepts the enum's value
                        etag=record.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceModifiedError, ResourceNotFoundError):
                return None
            return replace(claimed, etag=metadata.get("etag"))
        return None

    def get(self, vault_name: str, certificate_name: str) -> RenewalRecord | None:
        """Read a certificate's record (one point read), or ``None`` when it has none.

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core.exceptions import ResourceNotFoundError

        self._reads.requests += 1
        try:
            with _storage("read the renewal record"):
                entity = self._ensure_table().get_entity(_partition(vault_name), _record_key(certificate_name))
        except ResourceNotFoundError:
            return None
        self._reads.entities += 1
        return _record_from(entity)

    def save(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord:
        """Write ``record`` if nobody changed it since it was read, with any new outbox rows, atomically.

        Outbox rows replace rows of the same delivery (same certificate and webhook id).

        Raises:
            ClaimLostError: the record changed under us (another worker took over), or was never read.
            ValueError: an outbox row of another vault, or more than ``OUTBOX_PER_SAVE`` of them.
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import TableTransactionError

        _check_batch(record, outbox)
        if record.etag is None:
            raise _claim_lost(record)
        entity = _record_entity(record)
        table = self._ensure_table()
        if not outbox:
            try:
                with _storage("save the renewal record"):
                    metadata = table.update_entity(
                        entity,
                        mode="replace",  # type: ignore[arg-type]
                        etag=record.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceModifiedError, ResourceNotFoundError) as exc:
                raise _claim_lost(record) from exc
            return replace(record, etag=metadata.get("etag"))
        operations: list[Any] = [
            (
                "update",
                entity,
                {"mode": "replace", "etag": record.etag, "match_condition": MatchConditions.IfNotModified},
            )
        ]
        operations.extend(("upsert", _outbox_entity(item), {"mode": "replace"}) for item in outbox)
        try:
            with _storage("save the renewal record and its outbox"):
                results = table.submit_transaction(operations)
        except TableTransactionError as exc:
            # Only the record's update is conditional, and only it can miss: 412 or 404 is the record.
            if _misses(exc):
                raise _claim_lost(record) from exc
            raise RetryableError(
                f"the journal transaction failed: {type(exc).__name__}", reason="journal_unavailable"
            ) from exc
        return replace(record, etag=results[0].get("etag"))

    def release(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord:
        """Save ``record`` without its claim (with any new outbox rows), so the next event or sweep can act.

        Raises:
            ClaimLostError: the record changed under us.
            ValueError: as ``save``.
            RetryableError: storage is unavailable.
        """
        return self.save(replace(record, claim_owner=None, claim_expires_at=None), outbox=outbox)

    def records(self, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Every renewal record (of the given vaults).

        Raises:
            RetryableError: storage is unavailable.
        """
        rows: list[Mapping[str, Any]] = []
        for partition in _partitions(vault_names):
            rows.extend(self._range(partition, _RECORD, "list the renewal records"))
        return [_record_from(row) for row in rows]

    def due_records(self, now: float, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Records the sweep should take up: a scheduled retry whose time has come, or a renewal under way whose
        claim lapsed (its worker crashed). A record with no retry time failed for good (permanent error), or has
        nothing to do: only a new event or a manual renewal takes it up again.

        Raises:
            RetryableError: storage is unavailable.
        """
        rows: list[Mapping[str, Any]] = []
        for partition in _partitions(vault_names):
            rows.extend(self._filtered(partition, _RECORD, _due_filter(now), "find the due renewal records"))
        return _due([_record_from(row) for row in rows], now)

    def under_way_records(self, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Records with something under way: a claim, a retry pending, or a step between ``BEGIN`` and ``DONE``.

        Read with a server-side filter, so the rows read are those records, however many idle ones the vaults
        hold; the sweep passes over the listed certificates these name, and raises its alarms from them.

        Raises:
            RetryableError: storage is unavailable.
        """
        rows: list[Mapping[str, Any]] = []
        for partition in _partitions(vault_names):
            rows.extend(self._filtered(partition, _RECORD, _UNDER_WAY_FILTER, "find the renewals under way"))
        return [record for record in map(_record_from, rows) if _is_under_way(record)]

    # --- outbox --------------------------------------------------------------------------------------------

    def add_outbox(self, items: Sequence[OutboxItem]) -> None:
        """Queue outbox rows on their own (announcements that belong to no claimed renewal).

        Raises:
            RetryableError: storage is unavailable.
        """
        for item in items:
            with _storage("queue an outbox row"):
                self._ensure_table().upsert_entity(_outbox_entity(item), mode="replace")  # type: ignore[arg-type]

    def outbox(
        self, vault_names: Iterable[str] | None = None, *, certificate_name: str | None = None
    ) -> list[OutboxItem]:
        """Every outbox row (of the given vaults, optionally of one certificate), oldest first.

        With ``certificate_name`` this reads only that certificate's rows (a RowKey prefix range), plus any rows
        of the old layout (``o|<webhook-id>``) still in the partition: those are found by their own range and
        disappear as ``trim`` deletes them; once a partition has none, it is not asked again.

        Raises:
            RetryableError: storage is unavailable.
        """
        rows: list[Mapping[str, Any]] = []
        for partition in _partitions(vault_names):
            if certificate_name is None:
                rows.extend(self._range(partition, _OUTBOX, "list the outbox"))
                continue
            rows.extend(self._range(partition, _outbox_prefix(certificate_name), "read a certificate's outbox"))
            if partition not in self._no_legacy_rows:
                legacy = [
                    row
                    for row in self._range(partition, _LEGACY_OUTBOX, "read the outbox of the old layout")
                    if _is_legacy_outbox_key(str(row["RowKey"]))
                ]
                if not legacy:
                    self._no_legacy_rows.add(partition)
                rows.extend(legacy)
        return _outbox_items(rows, certificate_name)

    def due_outbox(self, now: float, vault_names: Iterable[str] | None = None) -> list[OutboxItem]:
        """Pending outbox rows whose next attempt has come (of the given vaults), oldest first; read with a
        server-side filter, so delivered and dead rows kept for the retention period are not read.

        Raises:
            RetryableError: storage is unavailable.
        """
        rows: list[Mapping[str, Any]] = []
        for partition in _partitions(vault_names):
            rows.extend(self._filtered(partition, _OUTBOX, _due_outbox_filter(now), "find the due deliveries"))
        return [item for item in _outbox_items(rows, None) if _is_due_delivery(item, now)]

    def save_outbox(self, item: OutboxItem) -> OutboxItem | None:
        """Update an outbox row if nobody changed it since it was read; ``None`` when someone did (or it is gone).

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        if item.etag is None:
            return None
        entity = _outbox_entity(item)
        # A row of the old layout is updated where it is; ``trim`` removes it once it is settled.
        for row_key in (entity["RowKey"], _OUTBOX + item.webhook_id):
            try:
                with _storage("save an outbox row"):
                    metadata = self._ensure_table().update_entity(
                        {**entity, "RowKey": row_key},
                        mode="replace",  # type: ignore[arg-type]
                        etag=item.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except ResourceModifiedError:
                return None
            except ResourceNotFoundError:
                continue
            return replace(item, etag=metadata.get("etag"))
        return None

    def trim(self, now: float, *, limit: int = _TRIM_LIMIT) -> int:
        """Delete up to ``limit`` settled outbox rows (delivered or dead) queued more than the retention period
        before ``now``; return how many this call deleted. Pending rows and records are never trimmed.

        Raises:
            RetryableError: storage is unavailable.
        """
        low, high = _prefix_range(_OUTBOX)
        rows = self._rows(
            "find settled outbox rows",
            "RowKey ge @low and RowKey lt @high and created_at lt @cutoff and "
            "( status eq @delivered or status eq @dead )",
            {"low": low, "high": high, "cutoff": float(now - self._retention_seconds)}
            | {"delivered": "delivered", "dead": "dead"},
            limit=limit,
        )
        by_partition: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            by_partition[str(row["PartitionKey"])].append(row)
        deleted = 0
        for partition_rows in by_partition.values():
            for start in range(0, len(partition_rows), 100):
                deleted += self._delete(partition_rows[start : start + 100])
        return deleted

    # --- plumbing ------------------------------------------------------------------------------------------

    def _range(self, partition: str | None, prefix: str, action: str) -> list[Mapping[str, Any]]:
        """The rows whose RowKey starts with ``prefix``, in one partition or (``None``) the whole table."""
        low, high = _prefix_range(prefix)
        query = "RowKey ge @low and RowKey lt @high"
        parameters: dict[str, Any] = {"low": low, "high": high}
        if partition is not None:
            query = "PartitionKey eq @pk and " + query
            parameters["pk"] = partition
        return self._rows(action, query, parameters)

    def _filtered(self, partition: str | None, prefix: str, condition: str, action: str) -> list[Mapping[str, Any]]:
        """The rows whose RowKey starts with ``prefix`` that also meet the OData ``condition`` (server-side)."""
        low, high = _prefix_range(prefix)
        query = f"RowKey ge @low and RowKey lt @high and {condition}"
        parameters: dict[str, Any] = {"low": low, "high": high}
        if partition is not None:
            query = "PartitionKey eq @pk and " + query
            parameters["pk"] = partition
        return self._rows(action, query, parameters)

    def _rows(
        self, action: str, query: str, parameters: Mapping[str, Any], *, limit: int | None = None
    ) -> list[Mapping[str, Any]]:
        # Parameters, not formatted text: the SDK quotes them for OData (a quote is doubled).
        rows: list[Mapping[str, Any]] = []
        with _storage(action):
            pages = self._ensure_table().query_entities(query, parameters=dict(parameters), results_per_page=limit)
            for page in pages.by_page():
                self._reads.requests += 1
                for row in page:
                    self._reads.entities += 1
                    rows.append(row)
                    if limit is not None and len(rows) >= limit:
                        return rows
        return rows

    def _delete(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Delete rows of one partition unless they changed since read; the number deleted."""
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError

        def operation(row: Mapping[str, Any]) -> Any:
            etag = (getattr(row, "metadata", {}) or {}).get("etag")
            keys = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]}
            return ("delete", keys, {"etag": etag, "match_condition": MatchConditions.IfNotModified})

        try:
            with _storage("trim the outbox"):
                self._ensure_table().submit_transaction([operation(row) for row in rows])
            return len(rows)
        except TableTransactionError as exc:
            if not _misses(exc):
                raise RetryableError(
                    f"the journal could not trim the outbox: {type(exc).__name__}", reason="journal_unavailable"
                ) from exc
            if len(rows) == 1:
                return 0
        # A row was re-queued or deleted by another sweep meanwhile: the others go one by one.
        return sum(self._delete([row]) for row in rows)


def _partition(vault_name: str) -> str:
    return vault_name.lower()


def _partitions(vault_names: Iterable[str] | None) -> list[str | None]:
    if vault_names is None:
        return [None]
    return list(dict.fromkeys(_partition(name) for name in vault_names))


def _record_key(certificate_name: str) -> str:
    return _RECORD + certificate_name.lower()


def _outbox_prefix(certificate_name: str) -> str:
    return f"{_OUTBOX}{certificate_name.lower()}|"


def _outbox_key(item: OutboxItem) -> str:
    return _outbox_prefix(item.certificate_name) + item.webhook_id


def _is_legacy_outbox_key(row_key: str) -> bool:
    return row_key.startswith(_OUTBOX) and row_key.count("|") == 1


def _prefix_range(prefix: str) -> tuple[str, str]:
    """The RowKey range ``[low, high)`` holding exactly the keys that start with ``prefix``."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _claimed_by_another(record: RenewalRecord, owner: str, now: float) -> bool:
    return bool(record.claim_owner) and record.claim_owner != owner and (record.claim_expires_at or 0) > now


# Server-side filters and their exact meaning in Python (``renewal.testing.InMemoryJournal`` evaluates the
# latter). Table Storage compares only properties an entity has: a comparison on a missing one is false. The
# journal writes ``claim_owner`` and ``next_attempt_at`` only when set, and every record row has always had
# ``step``, so rows of every age are found. A step is under way unless it is BEGIN or DONE, or one of their old
# names (``Step.stored``); an unknown step is fetched and then judged by ``Step.stored``, which reads it as
# BEGIN. Numbers are formatted here because the SDK's parameters turn 0.0 and 1.0 into false and true.
_IDLE_STEPS = ("begin", "done", "idle", "failed")
_UNDER_WAY_FILTER = (
    "( claim_owner gt '' or next_attempt_at lt 10000000000000.0 or ( "
    + " and ".join(f"step ne '{step}'" for step in _IDLE_STEPS)
    + " ) )"
)


def _due_filter(now: float) -> str:
    moment = repr(float(now))
    return f"( ( claim_owner gt '' and claim_expires_at le {moment} ) or next_attempt_at le {moment} )"


def _due_outbox_filter(now: float) -> str:
    return f"status eq 'pending' and next_attempt_at le {float(now)!r}"


def _matches_under_way_filter(entity: Mapping[str, Any]) -> bool:
    """``_UNDER_WAY_FILTER`` as Table Storage evaluates it on one row."""
    step = entity.get("step")
    return (
        str(entity.get("claim_owner") or "") > ""
        or entity.get("next_attempt_at") is not None
        or (step is not None and str(step) not in _IDLE_STEPS)
    )


def _matches_due_filter(entity: Mapping[str, Any], now: float) -> bool:
    """``_due_filter(now)`` as Table Storage evaluates it on one row."""
    claim_expires_at = entity.get("claim_expires_at")
    next_attempt_at = entity.get("next_attempt_at")
    claim_lapsed = claim_expires_at is not None and float(claim_expires_at) <= now
    retry_due = next_attempt_at is not None and float(next_attempt_at) <= now
    return (str(entity.get("claim_owner") or "") > "" and claim_lapsed) or retry_due


def _matches_due_outbox_filter(entity: Mapping[str, Any], now: float) -> bool:
    """``_due_outbox_filter(now)`` as Table Storage evaluates it on one row."""
    next_attempt_at = entity.get("next_attempt_at")
    return entity.get("status") == "pending" and next_attempt_at is not None and float(next_attempt_at) <= now


def _is_under_way(record: RenewalRecord) -> bool:
    return bool(record.claim_owner) or record.next_attempt_at is not None or record.under_way


def _is_due_delivery(item: OutboxItem, now: float) -> bool:
    return item.status == "pending" and item.next_attempt_at <= now


def _due(records: Iterable[RenewalRecord], now: float) -> list[RenewalRecord]:
    def is_due(record: RenewalRecord) -> bool:
        if record.claim_owner:
            return record.under_way and (record.claim_expires_at or 0) <= now
        return record.next_attempt_at is not None and record.next_attempt_at <= now

    return sorted((r for r in records if is_due(r)), key=lambda r: r.next_attempt_at or 0)


def _outbox_items(rows: Iterable[Mapping[str, Any]], certificate_name: str | None) -> list[OutboxItem]:
    """Outbox items from rows, oldest first, of one certificate if named; where a delivery has a row of each
    layout, the new one wins."""
    items: dict[tuple[str, str], OutboxItem] = {}
    for row in sorted(rows, key=lambda r: not _is_legacy_outbox_key(str(r["RowKey"]))):
        item = _outbox_from(row)
        if certificate_name is None or item.certificate_name.lower() == certificate_name.lower():
            items[(item.vault_name.lower(), item.webhook_id)] = item
    return sorted(items.values(), key=lambda i: (i.created_at, i.webhook_id))


def _check_batch(record: RenewalRecord, outbox: Sequence[OutboxItem]) -> None:
    """An entity-group transaction is one partition and at most 100 operations."""
    if len(outbox) > OUTBOX_PER_SAVE:
        raise ValueError(f"at most {OUTBOX_PER_SAVE} outbox rows can be saved with a record, not {len(outbox)}")
    if any(_partition(item.vault_name) != _partition(record.vault_name) for item in outbox):
        raise ValueError(f"outbox rows saved with a record of vault {record.vault_name} must be of that vault")


def _claim_lost(record: RenewalRecord) -> ClaimLostError:
    return ClaimLostError(f"the record of {record.certificate_name} changed under this worker", reason="claim_lost")


def _misses(exc: BaseException) -> bool:
    """Whether a failed transaction failed on a conditional operation: its row changed (412) or is gone (404)."""
    code = str(getattr(exc, "error_code", "") or "")
    return getattr(exc, "status_code", None) in (404, 412) or code in (
        "UpdateConditionNotSatisfied",
        "ResourceNotFound",
    )


def _record_entity(record: RenewalRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _partition(record.vault_name),
        "RowKey": _record_key(record.certificate_name),
        "vault_name": record.vault_name,
        "certificate_name": record.certificate_name,
        "step": record.step.value,
        "attempts": record.attempts,
        "history": json.dumps(list(record.history), separators=(",", ":"), default=str),
    }
    if record.issued_chain:
        entity["issued_chain"] = json.dumps(list(record.issued_chain), separators=(",", ":"))
    for name in (
        "ca_profile",
        "previous_version",
        "request_id",
        "csr_sha256",
        "ca_reference",
        "issued_leaf_pem",
        "new_version",
        "last_reason",
        "last_error",
        "claim_owner",
    ):
        value = getattr(record, name)
        if value is not None:
            entity[name] = value
    for name in ("expires_on", "next_attempt_at", "claim_expires_at"):
        value = getattr(record, name)
        if value is not None:
            entity[name] = float(value)
    return entity


def _record_from(entity: Mapping[str, Any]) -> RenewalRecord:
    def text(name: str) -> str | None:
        value = entity.get(name)
        return str(value) if value not in (None, "") else None

    def number(name: str) -> float | None:
        value = entity.get(name)
        return float(value) if value is not None else None

    try:
        history = tuple(json.loads(entity.get("history") or "[]"))
    except ValueError:
        history = ()
    metadata = getattr(entity, "metadata", {}) or {}
    return RenewalRecord(
        vault_name=str(entity.get("vault_name") or entity["PartitionKey"]),
        certificate_name=str(entity.get("certificate_name") or str(entity["RowKey"])[len(_RECORD) :]),
        step=Step.stored(text("step")),
        ca_profile=text("ca_profile"),
        previous_version=text("previous_version"),
        request_id=text("request_id"),
        csr_sha256=text("csr_sha256"),
        ca_reference=text("ca_reference"),
        issued_leaf_pem=text("issued_leaf_pem"),
        issued_chain=_chain_from(entity),
        new_version=text("new_version"),
        expires_on=number("expires_on"),
        attempts=int(entity.get("attempts") or 0),
        next_attempt_at=number("next_attempt_at"),
        last_reason=text("last_reason"),
        last_error=text("last_error"),
        history=history,
        claim_owner=text("claim_owner"),
        claim_expires_at=number("claim_expires_at"),
        etag=metadata.get("etag"),
    )


def _chain_from(entity: Mapping[str, Any]) -> tuple[str, ...]:
    stored = entity.get("issued_chain")
    if stored:
        return tuple(str(pem) for pem in json.loads(stored))
    # Rows written before the chain was a list hold its certificates concatenated, under issued_chain_pem.
    bundle = str(entity.get("issued_chain_pem") or "")
    return tuple(part.strip() + "\n" + _PEM_END + "\n" for part in bundle.split(_PEM_END) if part.strip())


def _outbox_entity(item: OutboxItem) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _partition(item.vault_name),
        "RowKey": _outbox_key(item),
        "vault_name": item.vault_name,
        "webhook_id": item.webhook_id,
        "endpoint": item.endpoint,
        "certificate_name": item.certificate_name,
        "version": item.version,
        "payload": item.payload,
        "status": item.status,
        "attempts": item.attempts,
        "created_at": float(item.created_at),
        "next_attempt_at": float(item.next_attempt_at),
    }
    if item.last_error is not None:
        entity["last_error"] = item.last_error
    return entity


def _outbox_from(entity: Mapping[str, Any]) -> OutboxItem:
    metadata = getattr(entity, "metadata", {}) or {}
    return OutboxItem(
        vault_name=str(entity.get("vault_name") or entity["PartitionKey"]),
        webhook_id=str(entity.get("webhook_id") or str(entity["RowKey"]).rsplit("|", 1)[-1]),
        endpoint=str(entity.get("endpoint") or ""),
        certificate_name=str(entity.get("certificate_name") or ""),
        version=str(entity.get("version") or ""),
        payload=str(entity.get("payload") or "{}"),
        status=str(entity.get("status") or "pending"),
        attempts=int(entity.get("attempts") or 0),
        created_at=float(entity.get("created_at") or 0.0),
        next_attempt_at=float(entity.get("next_attempt_at") or 0.0),
        last_error=(str(entity["last_error"]) if entity.get("last_error") else None),
        etag=metadata.get("etag"),
    )


@contextmanager
def _storage(action: str) -> Iterator[None]:
    """Translate storage outages into ``RetryableError``; let the status errors callers handle pass through."""
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
        raise
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise RetryableError(
            f"the journal could not {action}: storage unreachable", reason="journal_unavailable"
        ) from exc
    except HttpResponseError as exc:
        if _is_transaction_error(exc) or exc.status_code == 412:
            raise
        raise RetryableError(
            f"the journal could not {action}: HTTP {exc.status_code}", reason="journal_unavailable"
        ) from exc


def _is_transaction_error(exc: BaseException) -> bool:
    from azure.data.tables import TableTransactionError

    return isinstance(exc, TableTransactionError)


if TYPE_CHECKING:

    def _conforms(journal: Journal) -> RenewalJournal:
        return journal
