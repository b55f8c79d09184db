"""Outcome events for Azure-native consumers: CloudEvents published to an Event Grid custom topic
(docs/architecture.md §1).

Publishing goes through the outbox like a webhook (``renewal.flow.deliveries``), so a topic outage loses nothing.
The publisher is ``azure-eventgrid``'s ``EventGridPublisherClient``, authenticated with the managed identity
(role *EventGrid Data Sender* on the topic) or, when configured, the topic's access key. The token or key never
follows a redirect (a 3xx is a failed delivery), and the development static token (``StaticTokenCredential``,
from ``RENEWAL_KEYVAULT_STATIC_TOKEN``) is only ever given to a topic on loopback: ``Runtime.from_settings``
uses ``DefaultAzureCredential`` for any other topic, and ``OutcomeTopic`` refuses the static token for one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from renewal._shared.http import redirect_refused, tls_verification_failed
from renewal._shared.urls import host_of
from renewal.errors import ConfigurationError
from renewal.outcome import Delivery
from renewal.settings import OUTCOME_TOPIC
from renewal.shells.keyvault import StaticTokenCredential, is_loopback_url

__all__ = ["OutcomeTopic"]


_SERIALIZER_LOGGER = "azure.eventgrid._legacy._generated._serialization"


class OutcomeTopic:
    """Publish outcome CloudEvents to one Event Grid topic.

    Args:
        endpoint: the topic endpoint, e.g. ``https://<topic>.<region>-1.eventgrid.azure.net/api/events``.
        credential: a ``TokenCredential`` (managed identity) or ``None`` with ``key``; a ``StaticTokenCredential``
            only for a topic on loopback.
        key: the topic's access key (``aeg-sas-key``), or ``None``.
        connection_verify: a CA bundle for the topic's TLS (a local fake), or ``None``.

    Raises:
        ConfigurationError: the development static token is given for a topic that is not on loopback (names
            ``RENEWAL_OUTCOME_TOPIC_ENDPOINT``).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        credential: Any = None,
        key: str | None = None,
        connection_verify: str | None = None,
    ) -> None:
        if isinstance(credential, StaticTokenCredential) and not is_loopback_url(endpoint):
            raise ConfigurationError(
                OUTCOME_TOPIC,
                f"is on {host_of(endpoint)}; the development static token is only sent to a topic on loopback",
            )
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
            # included); per-call options reach the transport and its RedirectPolicy. azure-core follows
            # redirects by default, carrying aeg-sas-key (only Authorization is dropped on a domain change).
            options: dict[str, Any] = {"permit_redirects": False}
            if self._connection_verify:
                options["connection_verify"] = self._connection_verify
            # The per-call options also reach the event's serializer, which warns that it does not know them
            # (twice per publish): expected, so that one logger is kept to errors.
            logging.getLogger(_SERIALIZER_LOGGER).setLevel(logging.ERROR)
            self._publisher().send([event], **options)
        except HttpResponseError as exc:
            status = exc.status_code
            if status is not None and 300 <= status < 400:
                headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
                refused = redirect_refused(
                    "the topic", status, headers.get("Location"), self._endpoint, reason="topic_redirect_refused"
                )
                return Delivery("eventgrid-topic", webhook_id, False, 1, status, refused.message)
            return Delivery("eventgrid-topic", webhook_id, False, 1, status, f"topic answered {status}")
        except AzureError as exc:
            if tls_verification_failed(exc):
                problem = f"the TLS certificate of the topic at {host_of(self._endpoint)} is not trusted"
                return Delivery("eventgrid-topic", webhook_id, False, 1, None, problem)
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
