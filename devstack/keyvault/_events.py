"""Key Vault certificate events in Event Grid (or CloudEvents 1.0) envelopes, delivered like Event Grid does."""

from __future__ import annotations

import datetime as dt
import heapq
import http.client
import itertools
import json
import logging
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._types import Clock, VaultEvent

__all__ = [
    "EVENT_GRID_RETRY_DELAYS",
    "DeadLetter",
    "DeliveryAttempt",
    "EventDispatcher",
    "EventSchema",
    "Subscriber",
    "vault_resource_id",
]

logger = logging.getLogger(__name__)

EventSchema = Literal["EventGrid", "CloudEvents"]

# "10 seconds, 30 seconds, 1 minute, 5 minutes, 10 minutes, 30 minutes, 1 hour, 3 hours, 6 hours, every 12 hours
# up to 24 hours" (learn.microsoft.com/azure/event-grid/delivery-and-retry).
EVENT_GRID_RETRY_DELAYS: tuple[float, ...] = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600)
_LATER_RETRY_DELAY = 43200.0
# "event TTL 1-1440 min (default 1440 = 24 h)", "max delivery attempts 1-30 (default 30)".
_EVENT_TTL = 86400.0
_MAX_ATTEMPTS = 30
# "Success codes are only 200, 201, 202, 203 and 204."
_SUCCESS = frozenset({200, 201, 202, 203, 204})
# "No retry for webhooks on 400, 413, 401 and 403 (the table in one version also lists 404)."
_NO_RETRY = frozenset({400, 401, 403, 404, 413})

_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
_RESOURCE_GROUP = "devstack"


def vault_resource_id(vault_name: str) -> str:
    """Return the ARM resource id the emulator uses as the Event Grid ``topic`` of ``vault_name``."""
    return (
        f"/subscriptions/{_SUBSCRIPTION}/resourceGroups/{_RESOURCE_GROUP}"
        f"/providers/Microsoft.KeyVault/vaults/{vault_name}"
    )


@dataclass(frozen=True, slots=True)
class Subscriber:
    """An endpoint that receives events.

    Attributes:
        url: ``http://`` or ``https://`` URL events are POSTed to.
        schema: ``EventGrid`` (an array of one event, ``application/json``) or ``CloudEvents`` (one structured
            CloudEvents 1.0 event, ``application/cloudevents+json``).
        vault: only events of this vault, or ``None`` for every vault.
    """

    url: str
    schema: EventSchema = "EventGrid"
    vault: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One attempt to deliver one event to one subscriber.

    Attributes:
        subscriber: the subscriber's URL.
        event_id: the event's ``id``.
        event_type: the event's type.
        attempt: 1 for the first delivery, 2 for the first retry, ...
        status: the HTTP status received, or ``None`` when the request failed.
        error: why the request failed (connection refused, timeout, ...), else ``None``.
        succeeded: whether the status was one Event Grid counts as delivered.
    """

    subscriber: str
    event_id: str
    event_type: str
    attempt: int
    status: int | None
    error: str | None
    succeeded: bool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event Event Grid gave up on.

    Attributes:
        subscriber: the subscriber's URL.
        event: the envelope that was not delivered.
        reason: ``MaxRetryDurationExceeded`` / ``MaxDeliveryAttemptsExceeded`` when retries ran out,
            ``NonRetriableStatus`` when the endpoint answered a status Event Grid does not retry (the last is
            the emulator's own word).
        delivery_attempts: how many attempts were made.
        last_outcome: the last status or error, as text.
    """

    subscriber: str
    event: Mapping[str, object]
    reason: str
    delivery_attempts: int
    last_outcome: str


@dataclass(slots=True)
class _Delivery:
    subscriber: Subscriber
    event: dict[str, object]
    first_attempt_at: float
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class _Source:
    base_url: str
    event_for: Callable[[str, str], VaultEvent]


@dataclass(slots=True)
class _Queue:
    heap: list[tuple[float, int, _Delivery]] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)


class EventDispatcher:
    """Wraps vault events in envelopes and delivers them on a background thread, retrying like Event Grid.

    Retry delays are Event Grid's schedule divided by ``compression`` (``compression=3600`` turns an hour
    into a second); they run on monotonic real time, not the emulator clock.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        compression: float = 1.0,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if compression <= 0:
            raise ValueError(f"compression must be positive, got {compression}")
        self._clock = clock
        self.compression = compression
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._monotonic = monotonic
        self._lock = threading.Condition()
        self._subscribers: list[Subscriber] = []
        self._sources: dict[str, _Source] = {}
        self._queue = _Queue()
        self._published: list[dict[str, object]] = []
        self._deliveries: list[DeliveryAttempt] = []
        self._dead_letters: list[DeadLetter] = []
        self._in_flight = 0
        self._stopping = False
        self._worker: threading.Thread | None = None

    # --- configuration -------------------------------------------------------------------------------------

    def subscribe(self, url: str, *, schema: EventSchema = "EventGrid", vault: str | None = None) -> Subscriber:
        """Deliver every later event (of ``vault``, or of every vault) to ``url``.

        Raises:
            ValueError: the URL is not http(s) or the schema is unknown.
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"subscriber URL must be http(s)://host..., got {url!r}")
        if schema not in ("EventGrid", "CloudEvents"):
            raise ValueError(f"schema must be EventGrid or CloudEvents, got {schema!r}")
        subscriber = Subscriber(url=url, schema=schema, vault=vault)
        with self._lock:
            self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, url: str) -> None:
        """Stop delivering new events to ``url`` (deliveries already queued still run)."""
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s.url != url]

    @property
    def subscribers(self) -> list[Subscriber]:
        """The current subscribers."""
        with self._lock:
            return list(self._subscribers)

    def register_vault(self, name: str, base_url: str, event_for: Callable[[str, str], VaultEvent]) -> None:
        """Make ``name`` a source of events (the emulator calls this for each vault it serves)."""
        with self._lock:
            self._sources[name] = _Source(base_url=base_url, event_for=event_for)

    # --- publishing ----------------------------------------------------------------------------------------

    def emitter(self, vault: str) -> Callable[[VaultEvent], None]:
        """Return the ``EmitEvent`` callback a vault model calls to publish its events."""

        def emit(event: VaultEvent) -> None:
            self.publish(vault, event)

        return emit

    def publish(self, vault: str, event: VaultEvent) -> dict[str, object]:
        """Wrap ``event`` in an Event Grid envelope and queue it for every matching subscriber.

        Never blocks on delivery: the worker thread sends it.

        Raises:
            KeyError: ``vault`` is not registered.
        """
        with self._lock:
            source = self._sources[vault]
        envelope = self._envelope(vault, source.base_url, event)
        now = self._monotonic()
        with self._lock:
            self._published.append(envelope)
            for subscriber in self._subscribers:
                if subscriber.vault in (None, vault):
                    self._push(now, _Delivery(subscriber=subscriber, event=envelope, first_attempt_at=now))
        return envelope

    def fire(self, vault: str, certificate_name: str, event_type: str) -> dict[str, object]:
        """Publish ``event_type`` for the current version of ``certificate_name`` now, and return the envelope.

        ``event_type`` may omit the ``Microsoft.KeyVault.`` prefix (``CertificateNearExpiry``).

        Raises:
            KeyError: the vault or the certificate is unknown.
            ValueError: the vault model does not know ``event_type``.
        """
        if "." not in event_type:
            event_type = f"Microsoft.KeyVault.{event_type}"
        with self._lock:
            source = self._sources[vault]
        return self.publish(vault, source.event_for(certificate_name, event_type))

    def _envelope(self, vault: str, base_url: str, event: VaultEvent) -> dict[str, object]:
        event_time = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        return {
            "id": str(uuid.uuid4()),
            "topic": vault_resource_id(vault),
            "subject": event.certificate_name,
            "eventType": event.event_type,
            "eventTime": event_time.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "data": {
                "Id": f"{base_url}/certificates/{event.certificate_name}/{event.version}",
                "VaultName": vault,
                "ObjectType": "Certificate",
                "ObjectName": event.certificate_name,
                "Version": event.version,
                "NBF": event.nbf,
                "EXP": event.exp,
            },
            "dataVersion": "1",
            "metadataVersion": "1",
        }

    # --- what happened -------------------------------------------------------------------------------------

    @property
    def published(self) -> list[dict[str, object]]:
        """Every envelope published, in order (delivered or not)."""
        with self._lock:
            return list(self._published)

    @property
    def deliveries(self) -> list[DeliveryAttempt]:
        """Every delivery attempt, in order."""
        with self._lock:
            return list(self._deliveries)

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """Events given up on, in order."""
        with self._lock:
            return list(self._dead_letters)

    def clear(self) -> None:
        """Forget published events, delivery attempts and dead letters (queued deliveries still run)."""
        with self._lock:
            self._published.clear()
            self._deliveries.clear()
            self._dead_letters.clear()

    def wait_for_deliveries(
        self, count: int, *, timeout: float = 5.0, succeeded: bool | None = None
    ) -> list[DeliveryAttempt]:
        """Wait until at least ``count`` attempts (only successful/failed ones if ``succeeded`` is set) exist.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """

        def matching() -> list[DeliveryAttempt]:
            return [d for d in self._deliveries if succeeded is None or d.succeeded == succeeded]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise TimeoutError(f"{len(matching())} of {count} delivery attempts within {timeout} s")
            return matching()

    def wait_for_dead_letters(self, count: int, *, timeout: float = 5.0) -> list[DeadLetter]:
        """Wait until at least ``count`` events are dead-lettered.

        Raises:
            TimeoutError: fewer were dead-lettered within ``timeout`` seconds.
        """
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._dead_letters) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self._dead_letters)} of {count} dead letters within {timeout} s")
            return list(self._dead_letters)

    def wait_idle(self, *, timeout: float = 5.0) -> None:
        """Wait until no delivery is queued or in flight.

        Raises:
            TimeoutError: deliveries were still pending after ``timeout`` seconds.
        """
        with self._lock:
            if not self._lock.wait_for(lambda: not self._queue.heap and not self._in_flight, timeout=timeout):
                raise TimeoutError(f"deliveries still pending after {timeout} s")

    # --- the worker ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread (idempotent)."""
        with self._lock:
            if self._worker is not None:
                return
            self._stopping = False
            self._worker = threading.Thread(target=self._run, name="keyvault-emulator-events", daemon=True)
            self._worker.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the delivery thread; queued deliveries are dropped."""
        with self._lock:
            worker, self._worker = self._worker, None
            self._stopping = True
            self._lock.notify_all()
        if worker is not None:
            worker.join(timeout)

    def _push(self, due: float, delivery: _Delivery) -> None:
        heapq.heappush(self._queue.heap, (due, next(self._queue.counter), delivery))
        self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                while True:
                    if self._stopping:
                        return
                    if self._queue.heap:
                        wait = self._queue.heap[0][0] - self._monotonic()
                        if wait <= 0:
                            break
                        self._lock.wait(wait)
                    else:
                        self._lock.wait()
                _, _, delivery = heapq.heappop(self._queue.heap)
                self._in_flight += 1
            try:
                self._attempt(delivery)
            except Exception:
                logger.exception("event delivery failed unexpectedly subscriber=%s", delivery.subscriber.url)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._lock.notify_all()

    def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempt += 1
        status, error = self._post(delivery.subscriber, delivery.event)
        succeeded = status in _SUCCESS
        record = DeliveryAttempt(
            subscriber=delivery.subscriber.url,
            event_id=str(delivery.event["id"]),
            event_type=str(delivery.event["eventType"]),
            attempt=delivery.attempt,
            status=status,
            error=error,
            succeeded=succeeded,
        )
        outcome = str(status) if status is not None else (error or "error")
        with self._lock:
            self._deliveries.append(record)
            self._lock.notify_all()
            if succeeded:
                return
            reason = self._give_up_reason(delivery, status)
            if reason is None:
                delay = self._next_delay(delivery.attempt) / self.compression
                self._push(self._monotonic() + delay, delivery)
                return
            self._dead_letters.append(
                DeadLetter(
                    subscriber=delivery.subscriber.url,
                    event=delivery.event,
                    reason=reason,
                    delivery_attempts=delivery.attempt,
                    last_outcome=outcome,
                )
            )
            self._lock.notify_all()
        logger.warning(
            "event dead-lettered subscriber=%s event_id=%s reason=%s attempts=%d last_outcome=%s",
            delivery.subscriber.url,
            record.event_id,
            reason,
            delivery.attempt,
            outcome,
        )

    @staticmethod
    def _next_delay(attempts_made: int) -> float:
        index = attempts_made - 1
        return EVENT_GRID_RETRY_DELAYS[index] if index < len(EVENT_GRID_RETRY_DELAYS) else _LATER_RETRY_DELAY

    def _give_up_reason(self, delivery: _Delivery, status: int | None) -> str | None:
        if status in _NO_RETRY:
            return "NonRetriableStatus"
        if delivery.attempt >= _MAX_ATTEMPTS:
            return "MaxDeliveryAttemptsExceeded"
        elapsed = (self._monotonic() - delivery.first_attempt_at) * self.compression
        if elapsed + self._next_delay(delivery.attempt) > _EVENT_TTL:
            return "MaxRetryDurationExceeded"
        return None

    def _post(self, subscriber: Subscriber, envelope: dict[str, object]) -> tuple[int | None, str | None]:
        if subscriber.schema == "CloudEvents":
            body = json.dumps(_cloud_event(envelope), separators=(",", ":")).encode()
            content_type = "application/cloudevents+json; charset=utf-8"
        else:
            body = json.dumps([envelope], separators=(",", ":")).encode()
            content_type = "application/json"
        parts = urllib.parse.urlsplit(subscriber.url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self._timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self._timeout)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            connection.request(
                "POST",
                target,
                body=body,
                headers={"Content-Type": content_type, "aeg-event-type": "Notification"},
            )
            response = connection.getresponse()
            response.read()
            return response.status, None
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()


def _cloud_event(envelope: Mapping[str, object]) -> dict[str, object]:
    # Mapping from event-grid-and-limits.md "Envelope": topic → source, eventType → type, eventTime → time.
    return {
        "specversion": "1.0",
        "id": envelope["id"],
        "source": envelope["topic"],
        "subject": envelope["subject"],
        "type": envelope["eventType"],
        "time": envelope["eventTime"],
        "datacontenttype": "application/json",
        "data": envelope["data"],
    }
