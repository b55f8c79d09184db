"""The journal: what Key Vault cannot hold about a renewal, in Azure Table Storage (DESIGN §2).

One table, partitioned by vault, holds two kinds of rows:

- a **renewal record** per (vault, certificate), ``RowKey = "r|<certificate>"``: the current step, the pending
  request id and CSR hash, the CA's reference, the issued certificate once the CA answered, the new version once
  merged, attempts, next attempt time, last error, a bounded history of outcomes, and the claim;
- an **outbox row** per delivery, ``RowKey = "o|<webhook-id>"``: the payload to send, attempts, next attempt time,
  status (``pending``, ``delivered``, ``dead``).

The record's etag is the lock: every write is conditional on the etag read, so two workers cannot both act on
one renewal. A claim carries an expiry, so a crashed worker's claim is taken over once it lapses. Merging a new
version writes the record and its outbox rows in one entity-group transaction (same partition), so a
notification can never be lost between the two.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from renewal.errors import ConfigurationError, RetryableError

if TYPE_CHECKING:
    from azure.data.tables import TableClient

__all__ = [
    "HISTORY_LIMIT",
    "ClaimLostError",
    "Journal",
    "OutboxItem",
    "RenewalRecord",
    "table_client_from_environ",
]

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 10
# Azurite's documented development account and default Table endpoint (not a secret).
_AZURITE_DEFAULT = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
_RECORD = "r|"
_OUTBOX = "o|"

# Steps a renewal moves through; "done" and "idle" mean nothing is under way.
STEPS = ("idle", "begun", "submitting", "pending_ca", "issued", "merged", "done", "failed")
UNDER_WAY = frozenset({"begun", "submitting", "pending_ca", "issued", "merged", "failed"})


class ClaimLostError(RetryableError):
    """Another worker changed the record since this one read it: stop, it owns the renewal now."""

    reason = "claim_lost"


@dataclass(frozen=True, slots=True)
class RenewalRecord:
    """The journal's record of one certificate's renewal.

    Attributes:
        vault_name: the vault (as configured).
        certificate_name: the certificate.
        step: one of ``STEPS``.
        ca_profile: the CA profile in use.
        previous_version: the version being replaced.
        request_id: Key Vault's pending operation id.
        csr_sha256: hash of the CSR the renewal works with (hex).
        ca_reference: the CA's handle for a deferred request.
        issued_leaf_pem: the CA's answer, kept so that a crash before the merge does not ask the CA again.
        issued_chain_pem: its chain, PEM certificates concatenated.
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
    step: str = "idle"
    ca_profile: str | None = None
    previous_version: str | None = None
    request_id: str | None = None
    csr_sha256: str | None = None
    ca_reference: str | None = None
    issued_leaf_pem: str | None = field(default=None, repr=False)
    issued_chain_pem: str | None = field(default=None, repr=False)
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
        """Whether a renewal is in progress (or failed and waiting for a retry)."""
        return self.step in UNDER_WAY

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
        created_at: when it was queued (Unix seconds); deliveries older than the maximum age are dead-lettered.
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


def table_client_from_environ(environ: Mapping[str, str], table_name: str) -> TableClient:
    """Connect to the journal table as the Function App's storage is configured.

    ``RENEWAL_JOURNAL_CONNECTION`` (a connection string) wins; otherwise ``AzureWebJobsStorage`` as a connection
    string (``UseDevelopmentStorage=true`` means Azurite), or its identity-based form as Flex Consumption uses it
    (``AzureWebJobsStorage__tableServiceUri`` or ``__accountName``, with ``__clientId`` for a user-assigned
    identity).

    Raises:
        ConfigurationError: no storage is configured, or its connection string is malformed (never shown).
    """
    from azure.data.tables import TableServiceClient

    connection = environ.get("RENEWAL_JOURNAL_CONNECTION", "").strip() or environ.get("AzureWebJobsStorage", "").strip()
    if connection.replace(" ", "").lower() == "usedevelopmentstorage=true":
        # Core Tools' shorthand for Azurite on its default ports; azure-data-tables does not expand it.
        connection = _AZURITE_DEFAULT
    if connection:
        own = environ.get("RENEWAL_JOURNAL_CONNECTION", "").strip()
        setting = "RENEWAL_JOURNAL_CONNECTION" if own else "AzureWebJobsStorage"
        try:
            # The account key signs every request: it stays with the account's own host.
            service = TableServiceClient.from_connection_string(connection, permit_redirects=False)
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            # Never the text: a connection string holds the account key.
            raise ConfigurationError(setting, "is not a valid storage connection string") from exc
    else:
        endpoint = environ.get("AzureWebJobsStorage__tableServiceUri", "").strip()
        account = environ.get("AzureWebJobsStorage__accountName", "").strip()
        if not endpoint and account:
            endpoint = f"https://{account}.table.core.windows.net"
        if not endpoint:
            raise ConfigurationError(
                "AzureWebJobsStorage",
                "no storage for the journal: set AzureWebJobsStorage (or its identity-based "
                "__accountName/__tableServiceUri form) or RENEWAL_JOURNAL_CONNECTION",
            )
        from azure.identity import DefaultAzureCredential

        client_id = environ.get("AzureWebJobsStorage__clientId", "").strip() or None
        service = TableServiceClient(
            endpoint,
            credential=DefaultAzureCredential(managed_identity_client_id=client_id),
            permit_redirects=False,
        )
    return service.get_table_client(table_name)


class Journal:
    """Renewal records and the outbox, with the etag as the lock.

    Args:
        table: the table client (created on first use if the table does not exist).
        clock: Unix seconds now (injected in tests).
        claim_seconds: how long a claim holds before another worker may take it over; well above the longest
            invocation (``functionTimeout``) so a live worker never loses its claim.
    """

    def __init__(
        self,
        table: TableClient,
        *,
        clock: Callable[[], float] = time.time,
        claim_seconds: float = 600.0,
    ) -> None:
        self._table = table
        self._clock = clock
        self._claim_seconds = claim_seconds
        self._table_ready = False

    # --- renewal records -----------------------------------------------------------------------------------

    def claim(self, vault_name: str, certificate_name: str, owner: str) -> RenewalRecord | None:
        """Take the certificate's claim for ``owner``; ``None`` when another worker holds a live claim.

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        now = self._clock()
        for _ in range(3):
            record = self.get(vault_name, certificate_name)
            if record is None:
                fresh = RenewalRecord(vault_name, certificate_name, claim_owner=owner, claim_expires_at=now + 1)
                claimed = replace(fresh, claim_expires_at=now + self._claim_seconds)
                try:
                    with _storage("create the renewal record"):
                        metadata = self._ensure_table().create_entity(_record_entity(claimed))
                except ResourceExistsError:
                    continue
                return replace(claimed, etag=metadata.get("etag"))
            live = record.claim_owner and (record.claim_expires_at or 0) > now and record.claim_owner != owner
            if live:
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
            except ResourceModifiedError:
                return None
            return replace(claimed, etag=metadata.get("etag"))
        return None

    def get(self, vault_name: str, certificate_name: str) -> RenewalRecord | None:
        """Read a certificate's record, or ``None`` when it has none.

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core.exceptions import ResourceNotFoundError

        try:
            with _storage("read the renewal record"):
                entity = self._ensure_table().get_entity(_partition(vault_name), _RECORD + certificate_name.lower())
        except ResourceNotFoundError:
            return None
        return _record_from(entity)

    def save(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord:
        """Write ``record`` if nobody changed it since it was read, with any new outbox rows, atomically.

        Raises:
            ClaimLostError: the record changed under us (another worker took over).
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError
        from azure.data.tables import TableTransactionError

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
            except ResourceModifiedError as exc:
                raise ClaimLostError(
                    f"the record of {record.certificate_name} changed under this worker", reason="claim_lost"
                ) from exc
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
            if getattr(exc, "status_code", None) == 412 or "UpdateConditionNotSatisfied" in str(exc):
                raise ClaimLostError(
                    f"the record of {record.certificate_name} changed under this worker", reason="claim_lost"
                ) from exc
            raise RetryableError(
                f"the journal transaction failed: {type(exc).__name__}", reason="journal_unavailable"
            ) from exc
        return replace(record, etag=results[0].get("etag"))

    def release(self, record: RenewalRecord, *, outbox: Sequence[OutboxItem] = ()) -> RenewalRecord:
        """Save ``record`` without its claim (with any new outbox rows), so the next event or sweep can act.

        Raises:
            ClaimLostError: the record changed under us.
            RetryableError: storage is unavailable.
        """
        return self.save(replace(record, claim_owner=None, claim_expires_at=None), outbox=outbox)

    def add_outbox(self, items: Sequence[OutboxItem]) -> None:
        """Queue outbox rows on their own (announcements that belong to no claimed renewal).

        Raises:
            RetryableError: storage is unavailable.
        """
        for item in items:
            with _storage("queue an outbox row"):
                self._ensure_table().upsert_entity(_outbox_entity(item), mode="replace")  # type: ignore[arg-type]

    def records(self, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Every renewal record (of the given vaults).

        Raises:
            RetryableError: storage is unavailable.
        """
        return [_record_from(e) for e in self._query(_RECORD, vault_names)]

    def due_records(self, now: float, vault_names: Iterable[str] | None = None) -> list[RenewalRecord]:
        """Records with a renewal under way that is due: its retry time has come, or its claim lapsed.

        A record with no retry time failed for good (permanent error): only a new event or a manual renewal
        takes it up again.
        """
        due = []
        for record in self.records(vault_names):
            if not record.under_way:
                continue
            claim_lapsed = record.claim_owner and (record.claim_expires_at or 0) <= now
            unclaimed_and_due = (
                not record.claim_owner and record.next_attempt_at is not None and record.next_attempt_at <= now
            )
            if claim_lapsed or unclaimed_and_due:
                due.append(record)
        return sorted(due, key=lambda r: r.next_attempt_at or 0)

    # --- outbox --------------------------------------------------------------------------------------------

    def outbox(
        self, vault_names: Iterable[str] | None = None, *, certificate_name: str | None = None
    ) -> list[OutboxItem]:
        """Every outbox row (of the given vaults, optionally of one certificate).

        Raises:
            RetryableError: storage is unavailable.
        """
        items = [_outbox_from(e) for e in self._query(_OUTBOX, vault_names)]
        if certificate_name is not None:
            items = [i for i in items if i.certificate_name.lower() == certificate_name.lower()]
        return sorted(items, key=lambda i: (i.created_at, i.webhook_id))

    def save_outbox(self, item: OutboxItem) -> OutboxItem | None:
        """Update an outbox row if nobody changed it since it was read; ``None`` when someone did.

        Raises:
            RetryableError: storage is unavailable.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            with _storage("save an outbox row"):
                metadata = self._ensure_table().update_entity(
                    _outbox_entity(item),
                    mode="replace",  # type: ignore[arg-type]
                    etag=item.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return replace(item, etag=metadata.get("etag"))

    # --- plumbing ------------------------------------------------------------------------------------------

    def _ensure_table(self) -> TableClient:
        if not self._table_ready:
            from azure.core.exceptions import ResourceExistsError

            try:
                with _storage("create the journal table"):
                    self._table.create_table()
            except ResourceExistsError:
                pass
            self._table_ready = True
        return self._table

    def _query(self, prefix: str, vault_names: Iterable[str] | None) -> list[Mapping[str, Any]]:
        # RowKey range on the prefix: "r|" <= RowKey < "r}" ('}' follows '|' in ASCII).
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        query = "RowKey ge @low and RowKey lt @high"
        parameters: dict[str, Any] = {"low": prefix, "high": upper}
        entities: list[Mapping[str, Any]] = []
        with _storage("query the journal"):
            table = self._ensure_table()
            if vault_names is None:
                entities.extend(table.query_entities(query, parameters=parameters))
            else:
                for name in vault_names:
                    entities.extend(
                        table.query_entities(
                            "PartitionKey eq @pk and " + query, parameters={**parameters, "pk": _partition(name)}
                        )
                    )
        return entities


def _partition(vault_name: str) -> str:
    return vault_name.lower()


def _record_entity(record: RenewalRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _partition(record.vault_name),
        "RowKey": _RECORD + record.certificate_name.lower(),
        "vault_name": record.vault_name,
        "certificate_name": record.certificate_name,
        "step": record.step,
        "attempts": record.attempts,
        "history": json.dumps(list(record.history), separators=(",", ":"), default=str),
    }
    for name in (
        "ca_profile",
        "previous_version",
        "request_id",
        "csr_sha256",
        "ca_reference",
        "issued_leaf_pem",
        "issued_chain_pem",
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
        step=str(entity.get("step") or "idle"),
        ca_profile=text("ca_profile"),
        previous_version=text("previous_version"),
        request_id=text("request_id"),
        csr_sha256=text("csr_sha256"),
        ca_reference=text("ca_reference"),
        issued_leaf_pem=text("issued_leaf_pem"),
        issued_chain_pem=text("issued_chain_pem"),
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


def _outbox_entity(item: OutboxItem) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _partition(item.vault_name),
        "RowKey": _OUTBOX + item.webhook_id,
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
        webhook_id=str(entity.get("webhook_id") or str(entity["RowKey"])[len(_OUTBOX) :]),
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
