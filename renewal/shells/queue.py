"""The work queue: an Azure Storage queue in the Function App's own storage account (Azurite locally).

The sweep's planner sends one message per unit of work and the queue-triggered function does it
(``renewal.flow.fanout``); Event Grid may write Key Vault's events to the same queue. Messages go out as plain
JSON text: ``host.json`` sets ``extensions.queues.messageEncoding`` to ``none`` so that the app reads both what
it sent and what Event Grid wrote, whichever encoding Event Grid used (``renewal.flow.fanout.decode_body``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from renewal.errors import PermanentError, RetryableError
from renewal.shells.journal import storage_client_from_environ

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

__all__ = ["MessageQueue", "StorageQueue", "queue_client_from_environ"]

# A Storage queue message is at most 64 KiB (learn: storage/queues/storage-queues-introduction).
MAX_MESSAGE_BYTES = 64 * 1024
# The storage SDK's own default waits 15 s, then 15+3^1 s... per retry; a planner sending one message per vault
# must fail fast instead, well inside functionTimeout: two quick retries, about 1 and 3 seconds apart.
_CLIENT_OPTIONS: dict[str, Any] = {
    "permit_redirects": False,
    "retry_total": 2,
    "initial_backoff": 1,
    "increment_base": 2,
}


class MessageQueue(Protocol):
    """Where the planner sends units of work."""

    @property
    def name(self) -> str:
        """The queue's name (its poison queue is ``<name>-poison``)."""

    def send(self, body: str, *, time_to_live_seconds: int | None = None) -> None:
        """Send one message; ``time_to_live_seconds`` lets a message nobody took in time expire.

        Raises:
            RetryableError: storage is unreachable or answered 5xx/429 (reason ``queue_unavailable``).
            PermanentError: storage refused the message or the credential (reason ``queue_refused``).
        """


def queue_client_from_environ(environ: Mapping[str, str], queue_name: str) -> QueueClient:
    """Connect to ``queue_name`` as the Function App's storage is configured, as the queue trigger connects.

    ``AzureWebJobsStorage`` as a connection string (``UseDevelopmentStorage=true`` means Azurite), or its
    identity-based form as Flex Consumption uses it (``AzureWebJobsStorage__queueServiceUri`` or
    ``__accountName``, with ``__clientId`` for a user-assigned identity).

    Raises:
        ConfigurationError: no storage is configured, or its connection string is malformed (never shown).
    """
    from azure.storage.queue import QueueClient

    return storage_client_from_environ(
        environ,
        service="queue",
        purpose="the work queue",
        from_connection_string=lambda connection: QueueClient.from_connection_string(
            connection, queue_name, **_CLIENT_OPTIONS
        ),
        from_identity=lambda endpoint, credential: QueueClient(
            endpoint, queue_name, credential=credential, **_CLIENT_OPTIONS
        ),
    )


class StorageQueue:
    """A ``MessageQueue`` on an Azure Storage queue, created on first use if it does not exist.

    Args:
        client: the queue client (``queue_client_from_environ``), with no message encode policy: plain text.
    """

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._created = False

    @property
    def name(self) -> str:
        """The queue's name."""
        return str(self._client.queue_name)

    def send(self, body: str, *, time_to_live_seconds: int | None = None) -> None:
        """Send one message; see ``MessageQueue.send``.

        Raises:
            PermanentError: the body is over the queue's 64 KiB (reason ``queue_refused``), or as ``MessageQueue``.
            RetryableError: as ``MessageQueue``.
        """
        if len(body.encode("utf-8")) > MAX_MESSAGE_BYTES:
            raise PermanentError("the message is larger than a queue message may be (64 KiB)", reason="queue_refused")
        self._ensure_queue()
        with _storage("send a message"):
            self._client.send_message(body, time_to_live=time_to_live_seconds)

    def _ensure_queue(self) -> None:
        if self._created:
            return
        from azure.core.exceptions import ResourceExistsError

        try:
            with _storage("create the queue"):
                self._client.create_queue()
        except ResourceExistsError:
            pass
        self._created = True


@contextmanager
def _storage(action: str) -> Iterator[None]:
    """Translate storage answers into the app's errors, saying by type whether retrying may help."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ServiceRequestError,
        ServiceResponseError,
        TooManyRedirectsError,
    )

    try:
        yield
    except ResourceExistsError:
        raise
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise RetryableError(
            f"the work queue could not {action}: storage unreachable", reason="queue_unavailable"
        ) from exc
    except (ClientAuthenticationError, TooManyRedirectsError) as exc:
        raise PermanentError(
            f"the work queue could not {action}: storage refused the credential", reason="queue_refused"
        ) from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if 300 <= status < 400:
            raise PermanentError(
                f"the work queue could not {action}: storage answered a redirect, which is not followed",
                reason="queue_refused",
            ) from exc
        if status == 429 or status >= 500:
            raise RetryableError(
                f"the work queue could not {action}: HTTP {status}", reason="queue_unavailable"
            ) from exc
        raise PermanentError(f"the work queue could not {action}: HTTP {status}", reason="queue_refused") from exc


if TYPE_CHECKING:

    def _conforms(queue: StorageQueue) -> MessageQueue:
        return queue
