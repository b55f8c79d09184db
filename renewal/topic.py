"""Outcome events for Azure-native consumers: CloudEvents published to an Event Grid custom topic (DESIGN §1.7).

Publishing goes through the outbox like a webhook (``renewal.deliveries``), so a topic outage loses nothing.
The publisher is ``azure-eventgrid``'s ``EventGridPublisherClient``, authenticated with the managed identity
(role *EventGrid Data Sender* on the topic) or, when configured, the topic's access key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from renewal.outcome import Delivery

__all__ = ["OutcomeTopic"]


class OutcomeTopic:
    """Publish outcome CloudEvents to one Event Grid topic.

    Args:
        endpoint: the topic endpoint, e.g. ``https://<topic>.<region>-1.eventgrid.azure.net/api/events``.
        credential: a ``TokenCredential`` (managed identity) or ``None`` with ``key``.
        key: the topic's access key (``aeg-sas-key``), or ``None``.
        connection_verify: a CA bundle for the topic's TLS (a local fake), or ``None``.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        credential: Any = None,
        key: str | None = None,
        connection_verify: str | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._credential = credential
        self._key = key
        self._connection_verify = connection_verify
        self._client: Any = None

    def publish(self, payload: Mapping[str, Any], *, webhook_id: str) -> Delivery:
        """Send one outcome (a CloudEvents 1.0 JSON dict) as a CloudEvent; never raises for a failing topic."""
        from azure.core.exceptions import AzureError, HttpResponseError
        from azure.core.messaging import CloudEvent

        event = CloudEvent(
            source=str(payload.get("source", "renewal")),
            type=str(payload.get("type", "com.github.renewal.certificate")),
            data=payload.get("data"),
            subject=payload.get("subject"),
            id=str(payload.get("id") or webhook_id),
            time=_time(payload.get("time")),
            datacontenttype="application/json",
        )
        try:
            # For basic topics, azure-eventgrid 4.22 drops the client's keyword arguments (transport options
            # included); per-call options reach the transport.
            options = {"connection_verify": self._connection_verify} if self._connection_verify else {}
            self._publisher().send([event], **options)
        except HttpResponseError as exc:
            return Delivery(
                "eventgrid-topic", webhook_id, False, 1, exc.status_code, f"topic answered {exc.status_code}"
            )
        except AzureError as exc:
            return Delivery("eventgrid-topic", webhook_id, False, 1, None, f"topic unreachable: {type(exc).__name__}")
        return Delivery("eventgrid-topic", webhook_id, True, 1, 200, None)

    def _publisher(self) -> Any:
        if self._client is None:
            from azure.eventgrid import EventGridPublisherClient

            if self._key:
                from azure.core.credentials import AzureKeyCredential

                credential: Any = AzureKeyCredential(self._key)
            elif self._credential is not None:
                credential = self._credential
            else:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self._client = EventGridPublisherClient(self._endpoint, credential)
        return self._client


def _time(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
