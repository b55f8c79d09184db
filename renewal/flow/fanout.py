"""Fan-out of the sweep through the work queue: the timer plans, the queue-triggered function works.

With ``RENEWAL_SWEEP_FANOUT=queue`` the timer no longer sweeps every vault in turn: it sends one message per
allow-listed vault to the work queue (``RENEWAL_WORK_QUEUE``, in the Function App's own storage account) and
trims the outbox, and the Functions host runs the queue function (``sweep_vault``, the same unit ``sweep`` runs)
on as many instances as the backlog calls for. Key Vault throttles per vault, so the vault is the unit of work.
A vault's listing is not split into pages: Key Vault chains its pages by ``nextLink``, so no planner can address
page *n* without reading the ones before it, and a page's link is a URL that a worker would have to check
before sending its token there; a vault's listing is 25 certificates per request, cheap next to its renewals.

The same queue may carry Key Vault's events, written by Event Grid's Storage-queue handler (``infra``'s
``eventDelivery = 'queue'``), for Function Apps that Event Grid cannot reach. ``read_message`` tells the two
apart.

A work message is JSON with exactly these fields, and carries no secret::

    {"kind": "renewal.sweep-vault", "version": 1, "vault": "<vault name>", "planned_at": "<ISO 8601, UTC>"}

Redelivery is harmless: a second delivery of a message finds the renewals it started claimed or done in the
journal, and renews nothing twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from renewal.errors import ConfigurationError, PermanentError, RenewalError, RetryableError
from renewal.flow.runtime import Runtime
from renewal.flow.sweep import trim_settled
from renewal.outcome import Outcome, log_outcome
from renewal.settings import VAULT_NAME
from renewal.shells.queue import MAX_MESSAGE_BYTES, MessageQueue

__all__ = [
    "DEFAULT_WORK_QUEUE",
    "FANOUT",
    "MESSAGE_VERSION",
    "MIN_TIME_TO_LIVE",
    "WORK_KIND",
    "WORK_QUEUE",
    "FanoutOptions",
    "KeyVaultEvents",
    "PlanReport",
    "VaultWork",
    "encode_work",
    "plan_sweep",
    "read_message",
]

logger = logging.getLogger("renewal")

FANOUT = "RENEWAL_SWEEP_FANOUT"
WORK_QUEUE = "RENEWAL_WORK_QUEUE"
DEFAULT_WORK_QUEUE = "renewal-work"
WORK_KIND = "renewal.sweep-vault"
MESSAGE_VERSION = 1
_POISON_SUFFIX = "-poison"
# Storage queue names: 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or a
# digit (learn: rest/api/storageservices/naming-queues-and-metadata); the host's poison queue adds "-poison".
_QUEUE_NAME = re.compile(rf"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){{2,{62 - len(_POISON_SUFFIX)}}}")
# A message must outlive its retries, or a unit that keeps failing expires instead of reaching the poison queue:
# host.json's maxDequeueCount x (functionTimeout + visibilityTimeout) is 5 x 5.5 min (tests/fleet/test_host_json.py).
MIN_TIME_TO_LIVE = timedelta(hours=1)
_WORK_FIELDS = frozenset({"kind", "version", "vault", "planned_at"})


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutOptions:
    """How the sweep is spread, from the app settings.

    Attributes:
        enabled: the timer plans onto the queue (``RENEWAL_SWEEP_FANOUT=queue``) instead of sweeping every vault
            in its own invocation (``off``, the default).
        queue_name: the work queue (``RENEWAL_WORK_QUEUE``); the queue functions' bindings read the same setting.
    """

    enabled: bool = False
    queue_name: str = DEFAULT_WORK_QUEUE

    @property
    def poison_queue_name(self) -> str:
        """Where the Functions host moves a message that failed ``maxDequeueCount`` times."""
        return self.queue_name + _POISON_SUFFIX

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> FanoutOptions:
        """Read the options.

        Raises:
            ConfigurationError: a setting is malformed (the message names it).
        """
        mode = environ.get(FANOUT, "").strip().lower() or "off"
        if mode not in ("off", "queue"):
            raise ConfigurationError(FANOUT, "must be 'off' or 'queue'")
        name = environ.get(WORK_QUEUE, "").strip() or DEFAULT_WORK_QUEUE
        if not _QUEUE_NAME.fullmatch(name):
            raise ConfigurationError(
                WORK_QUEUE,
                f"is not a Storage queue name of at most {63 - len(_POISON_SUFFIX)} characters (lower-case "
                "letters, digits, single hyphens inside)",
            )
        return cls(enabled=mode == "queue", queue_name=name)


@dataclass(frozen=True, slots=True)
class VaultWork:
    """One unit of the sweep: sweep one vault.

    Attributes:
        vault_name: the vault, as the allow-list names it.
        planned_at: when the planner sent it.
    """

    vault_name: str
    planned_at: datetime


@dataclass(frozen=True, slots=True)
class KeyVaultEvents:
    """Key Vault events Event Grid wrote to the queue, in its dict form (either schema) for the event intake.

    Attributes:
        envelopes: the events, one per message as Event Grid writes them (an array is read whole).
    """

    envelopes: tuple[Mapping[str, object], ...]


@dataclass
class PlanReport:
    """What one planning run did.

    Attributes:
        queued: the vaults whose unit of work was sent.
        failed: outcomes of the vaults whose unit could not be sent (the next run sends them again).
        trimmed: outbox rows deleted past their retention.
    """

    queued: list[str] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    trimmed: int = 0


def encode_work(work: VaultWork) -> str:
    """The message text for ``work``."""
    return json.dumps(
        {
            "kind": WORK_KIND,
            "version": MESSAGE_VERSION,
            "vault": work.vault_name,
            "planned_at": work.planned_at.astimezone(UTC).isoformat(timespec="seconds"),
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def read_message(body: bytes | str) -> VaultWork | KeyVaultEvents:
    """Read one queue message: a unit of work from the planner, or Key Vault events from Event Grid.

    The body is JSON text, or base64 of it: the queue functions read messages as written
    (``messageEncoding: none``), and Event Grid's Storage-queue handler has written both in its time
    (MicrosoftDocs/azure-docs #69702, #102923).

    Raises:
        PermanentError: reason ``malformed_event``, when the message is neither (the message names what is wrong,
            never the body).
    """
    document = _decode(body)
    if isinstance(document, list):
        if not document or not all(isinstance(e, dict) and _is_event(e) for e in document):
            raise _malformed("an array message must hold Event Grid events only")
        return KeyVaultEvents(tuple(document))
    if not isinstance(document, dict):
        raise _malformed(f"a message must be a JSON object, not {type(document).__name__}")
    if _is_event(document):
        return KeyVaultEvents((document,))
    if document.get("kind") == WORK_KIND:
        return _work(document)
    raise _malformed("the message is neither a unit of the sweep nor an Event Grid event")


def plan_sweep(
    runtime: Runtime,
    queue: MessageQueue,
    *,
    budget_seconds: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> PlanReport:
    """Send one unit of work per allow-listed vault to ``queue`` and trim the outbox; never raises for one vault.

    The vaults go in a random order, so that when the queue cannot keep up the same vaults do not always wait
    longest. A message lives two sweep intervals (by then the next plan has sent a fresh one for its vault), and
    never less than ``MIN_TIME_TO_LIVE``.

    Raises:
        RetryableError: the journal is unreachable while trimming (the next run tries again).
    """
    report = PlanReport()
    now = runtime.clock()
    interval = runtime.settings.sweep_interval
    time_to_live = int(max(2 * interval, MIN_TIME_TO_LIVE).total_seconds()) if interval else None
    vaults = list(runtime.settings.vaults.values())
    runtime.rng.shuffle(vaults)
    unavailable: RenewalError | None = None
    for vault in vaults:
        if unavailable is None:
            try:
                queue.send(encode_work(VaultWork(vault.name, now)), time_to_live_seconds=time_to_live)
            except RetryableError as exc:
                # The queue is down for every vault alike: the others are not tried, and the next run sends all.
                unavailable = exc
                report.failed.append(_not_queued(vault.name, queue.name, exc))
                continue
            except RenewalError as exc:
                report.failed.append(_not_queued(vault.name, queue.name, exc))
                continue
            report.queued.append(vault.name)
        else:
            report.failed.append(_not_queued(vault.name, queue.name, unavailable))
    report.trimmed = trim_settled(runtime, budget_seconds=budget_seconds, monotonic=monotonic)
    logger.info(
        "sweep planned queue=%s queued=%d failed=%d trimmed=%d",
        queue.name,
        len(report.queued),
        len(report.failed),
        report.trimmed,
    )
    return report


def _not_queued(vault_name: str, queue_name: str, exc: RenewalError) -> Outcome:
    outcome = Outcome(
        status="failed",
        reason=exc.reason,
        message=f"the sweep could not queue the work of this vault on {queue_name}: {exc.message}",
        vault_name=vault_name,
        trigger="sweep",
        retryable=isinstance(exc, RetryableError),
    )
    log_outcome(outcome, logger)
    return outcome


def _decode(body: bytes | str) -> object:
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if len(raw) > 2 * MAX_MESSAGE_BYTES:
        raise _malformed(f"the message is {len(raw)} bytes, more than a queue message holds")
    text = _text(raw).strip()
    if text[:1] not in ("{", "["):
        try:
            text = _text(base64.b64decode(text, validate=True)).strip()
        except (binascii.Error, ValueError) as exc:
            raise _malformed(f"the message ({len(raw)} bytes) is neither JSON nor base64 of JSON") from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _malformed(f"the message ({len(raw)} bytes) is not valid JSON") from exc


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("the message is not UTF-8 text") from exc


def _is_event(document: Mapping[str, object]) -> bool:
    return "eventType" in document or "specversion" in document


def _work(document: Mapping[str, object]) -> VaultWork:
    unknown = sorted(set(document) - _WORK_FIELDS)
    missing = sorted(_WORK_FIELDS - set(document))
    if unknown or missing:
        names = ", ".join(n[:40] for n in unknown[:5])
        raise _malformed(
            f"a unit of the sweep has exactly the fields {', '.join(sorted(_WORK_FIELDS))}"
            + (f"; unknown: {names}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    version = document["version"]
    if type(version) is not int or version != MESSAGE_VERSION:
        raise _malformed(f"a unit of the sweep of version {str(version)[:20]!r} is not understood (this app reads 1)")
    vault = document["vault"]
    if not isinstance(vault, str) or not VAULT_NAME.fullmatch(vault):
        raise _malformed("the unit's vault is not a Key Vault name")
    planned = document["planned_at"]
    try:
        planned_at = datetime.fromisoformat(planned) if isinstance(planned, str) else None
    except ValueError:
        planned_at = None
    if planned_at is None or planned_at.tzinfo is None:
        raise _malformed("the unit's planned_at is not an ISO 8601 time with its offset")
    return VaultWork(vault, planned_at.astimezone(UTC))


def _malformed(message: str) -> PermanentError:
    return PermanentError(f"unreadable queue message: {message}", reason="malformed_event")
