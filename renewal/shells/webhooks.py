"""Deployment webhooks: Standard Webhooks signing and a sender with quick retries (payloads: renewal.pure.payloads).

docs/architecture.md §4: the body is a CloudEvents 1.0 JSON event, sent in structured mode as
``application/cloudevents+json``
(CloudEvents HTTP binding §3.2.1); requests carry ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
(HMAC-SHA256, Standard Webhooks) with a secret per endpoint. HTTPS only (plain http only on loopback), no
redirects followed, tight timeouts, a few quick retries through one ``stamina`` policy. A failed delivery is
returned as a ``Delivery``, never raised; the durable outbox takes over from there. Neither the secret nor the
body is logged.
"""

from __future__ import annotations

import binascii
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import requests
import stamina
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from renewal._shared.http import parse_retry_after
from renewal._shared.urls import url_problem
from renewal.outcome import Delivery
from renewal.settings import WebhookEndpoint

__all__ = ["CONTENT_TYPE", "WebhookSender"]

_logger = logging.getLogger(__name__)
# CloudEvents HTTP binding §3.2.1: a structured-mode message's Content-Type is the event format's media type,
# here the JSON format's (JSON §4). The body is always UTF-8 (RFC 8259 §8.1), so no charset parameter.
CONTENT_TYPE = "application/cloudevents+json"
# 408 and 429 say "try again" as plainly as a 5xx does; every other 4xx is the receiver refusing this request.
_RETRY_STATUSES = frozenset({408, 429})
# A receiver's Retry-After is honoured within the quick retries up to this; one that asks for longer is left to
# the outbox's redelivery from the sweep, instead of holding the invocation.
_LONGEST_RETRY_AFTER = 5.0


class _AttemptFailed(Exception):
    """One failed attempt: what the ``Delivery`` reports, and whether, and when, to try again.

    Its text is only a status or the kind of network error: stamina logs it, and a URL may carry a token.
    """

    def __init__(self, error: str, *, status: int | None, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry = retry
        self.retry_after = retry_after


def _retry_wait(exc: Exception) -> bool | float:
    """stamina's ``on``: retry network errors, 408, 429 and 5xx; after the receiver's Retry-After when given."""
    if not isinstance(exc, _AttemptFailed) or not exc.retry:
        return False
    if exc.retry_after is None:
        return True
    return exc.retry_after if exc.retry_after <= _LONGEST_RETRY_AFTER else False


class WebhookSender:
    """Sends signed webhook deliveries with a few quick retries; never raises for a failed endpoint."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        retry_timeout: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``timeout`` bounds each request and ``retry_timeout`` all attempts of one delivery; ``backoff`` is the
        first wait, doubling after each failed attempt up to four times it, plus up to ``backoff`` of jitter so that
        deliveries failing together do not retry together. ``clock`` gives the ``webhook-timestamp``.

        Raises:
            ValueError: ``attempts`` is less than 1.
        """
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._session = session or requests.Session()
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._retry_timeout = retry_timeout
        self._clock = clock

    def deliver(self, endpoint: WebhookEndpoint, payload: Mapping[str, object], *, webhook_id: str) -> Delivery:
        """POST ``payload`` to ``endpoint``, signed, retrying 5xx, 408, 429, timeouts and connection errors.

        Returns a ``Delivery``; a refused URL, a 3xx (not followed), a 4xx or exhausted retries give
        ``delivered=False`` with the reason in ``error``. Raises nothing for a failing endpoint.
        """
        problem = url_problem(endpoint.url)
        if problem:
            _logger.debug("webhook %s refused: %s", endpoint.name, problem)
            return Delivery(endpoint.name, webhook_id, False, 0, None, f"refused: {problem}")
        try:
            signer = Webhook(endpoint.secret)
        except (EmptyWebhookSecretError, binascii.Error, ValueError, RuntimeError):
            return Delivery(endpoint.name, webhook_id, False, 0, None, "refused: the endpoint's secret is unusable")
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)

        attempts = 0
        try:
            for attempt in stamina.retry_context(
                on=_retry_wait,
                attempts=self._attempts,
                timeout=self._retry_timeout,
                wait_initial=self._backoff,
                wait_max=self._backoff * 4,
                wait_jitter=self._backoff,
            ):
                with attempt:
                    attempts = attempt.num
                    status = self._post(endpoint, signer, body, webhook_id=webhook_id, attempt=attempts)
                    _logger.debug("webhook %s delivered id=%s attempt=%d", endpoint.name, webhook_id, attempts)
                    return Delivery(endpoint.name, webhook_id, True, attempts, status, None)
        except _AttemptFailed as failed:
            return Delivery(endpoint.name, webhook_id, False, attempts, failed.status, failed.error)
        raise AssertionError("unreachable: stamina raises the last error when it stops")

    def _post(self, endpoint: WebhookEndpoint, signer: Webhook, body: str, *, webhook_id: str, attempt: int) -> int:
        """Send one signed attempt; its 2xx status, or raise ``_AttemptFailed``."""
        # Signed per attempt: the timestamp must be fresh (receivers reject old ones), the id stays the same.
        timestamp = self._clock().astimezone(UTC)
        headers = {
            "content-type": CONTENT_TYPE,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signer.sign(webhook_id, timestamp, body),
            "user-agent": "keyvault-private-ca-renewal",
        }
        failure: _AttemptFailed
        try:
            response = self._session.post(
                endpoint.url, data=body.encode("utf-8"), headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except requests.Timeout:
            failure = _AttemptFailed(f"timed out after {self._timeout:g}s", status=None, retry=True)
        except requests.RequestException as exc:
            # The exception text repeats the URL, which may carry a token in its path or query: keep its kind only.
            failure = _AttemptFailed(f"connection failed ({type(exc).__name__})", status=None, retry=True)
        else:
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=timestamp)
            response.close()
            if 200 <= status < 300:
                return status
            if 300 <= status < 400:
                failure = _AttemptFailed(f"HTTP {status}: redirects are not followed", status=status, retry=False)
            else:
                retry = status >= 500 or status in _RETRY_STATUSES
                failure = _AttemptFailed(f"HTTP {status}", status=status, retry=retry, retry_after=retry_after)
        _logger.debug("webhook %s attempt %d failed: %s", endpoint.name, attempt, failure.error)
        raise failure
