"""Deployment webhooks: the CloudEvents payload, Standard Webhooks signing, and a sender with quick retries.

DESIGN §4: the body is a CloudEvents 1.0 JSON event; requests carry ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` (HMAC-SHA256, Standard Webhooks) with a secret per endpoint. HTTPS only (plain http only on
loopback), no redirects followed, tight timeouts, a few quick retries. A failed delivery is returned as a
``Delivery``, never raised; the durable outbox takes over from there. Neither the secret nor the body is logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import requests
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from renewal.config import WebhookEndpoint, url_problem
from renewal.outcome import Delivery, Outcome, to_dict
from renewal.verify import VerifiedCertificate

__all__ = ["EVENT_TYPE_PREFIX", "WebhookSender", "build_payload", "endpoints_for"]

EVENT_TYPE_PREFIX = "com.github.renewal.certificate."
_logger = logging.getLogger(__name__)
# 408 and 429 say "try again" as plainly as a 5xx does; every other 4xx is the receiver refusing this request.
_RETRY_STATUSES = frozenset({408, 429})


def build_payload(
    outcome: Outcome, *, verified: VerifiedCertificate | None, vault_url: str, now: datetime, event_id: str
) -> dict[str, object]:
    """Build the CloudEvents 1.0 event announcing ``outcome`` (type ``...certificate.renewed``, ``.failed``, ...).

    ``vault_url`` must be the configured one; the ids in the payload are built from it.
    """
    rendered = to_dict(outcome)
    name, version = outcome.certificate_name, outcome.new_version
    vault_url = vault_url.rstrip("/")
    data: dict[str, object] = {
        "status": rendered["status"],
        "reason": rendered["reason"],
        "message": rendered["message"],
        "certificate_name": name,
        "vault_name": rendered["vault_name"],
        "vault_url": vault_url,
        "new_version": version,
        "previous_version": rendered["previous_version"],
        "certificate_id": f"{vault_url}/certificates/{name}/{version}" if name and version else None,
        # The secret URI is what consumers (App Service, Application Gateway, AKS CSI) fetch the PFX/PEM from.
        "secret_id": f"{vault_url}/secrets/{name}/{version}" if name and version else None,
        "ca_profile": rendered["ca_profile"],
        "x5t": None,
        "thumbprint_sha1": None,
        "serial_number": None,
        "not_before": None,
        "not_after": None,
    }
    if verified is not None:
        data.update(
            {
                "x5t": _x5t(verified.thumbprint_sha1),
                "thumbprint_sha1": verified.thumbprint_sha1,
                "serial_number": verified.serial_number,
                "not_before": _iso(verified.not_before),
                "not_after": _iso(verified.not_after),
            }
        )
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": vault_url,
        "type": EVENT_TYPE_PREFIX + outcome.status,
        "subject": name,
        "time": _iso(now),
        "datacontenttype": "application/json",
        "data": data,
    }


def endpoints_for(endpoints: Sequence[WebhookEndpoint], tags: Mapping[str, str]) -> tuple[WebhookEndpoint, ...]:
    """The endpoints that apply to a certificate with ``tags``: those without a tag filter, and those whose
    ``key=value`` the tags contain (key compared case-insensitively, value exactly, both trimmed)."""
    folded = {key.strip().lower(): value.strip() for key, value in tags.items()}
    return tuple(
        endpoint
        for endpoint in endpoints
        if endpoint.match_tag is None or folded.get(endpoint.match_tag[0].lower()) == endpoint.match_tag[1]
    )


class WebhookSender:
    """Sends signed webhook deliveries with a few quick retries; never raises for a failed endpoint."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``clock`` gives the ``webhook-timestamp``; ``backoff`` doubles after each failed attempt."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._session = session or requests.Session()
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
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

        status: int | None = None
        error: str | None = None
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff * 2 ** (attempt - 2))
            # Signed per attempt: the timestamp must be fresh (receivers reject old ones), the id stays the same.
            timestamp = self._clock().astimezone(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(timestamp.timestamp())),
                "webhook-signature": signer.sign(webhook_id, timestamp, body),
                "user-agent": "keyvault-private-ca-renewal",
            }
            try:
                response = self._session.post(
                    endpoint.url,
                    data=body.encode("utf-8"),
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except requests.Timeout:
                status, error, retry = None, f"timed out after {self._timeout:g}s", True
            except requests.RequestException as exc:
                # The exception text repeats the URL, which may carry a token in its path or query: keep its kind only.
                status, error, retry = None, f"connection failed ({type(exc).__name__})", True
            else:
                status = response.status_code
                response.close()
                if 200 <= status < 300:
                    _logger.debug("webhook %s delivered id=%s attempt=%d", endpoint.name, webhook_id, attempt)
                    return Delivery(endpoint.name, webhook_id, True, attempt, status, None)
                if 300 <= status < 400:
                    error, retry = f"HTTP {status}: redirects are not followed", False
                else:
                    error, retry = f"HTTP {status}", status >= 500 or status in _RETRY_STATUSES
            _logger.debug("webhook %s attempt %d failed: %s", endpoint.name, attempt, error)
            if not retry:
                return Delivery(endpoint.name, webhook_id, False, attempt, status, error)
        return Delivery(endpoint.name, webhook_id, False, self._attempts, status, error)


def _x5t(thumbprint_hex: str) -> str:
    # Key Vault's x5t: "base64url without padding of SHA-1 over the DER certificate".
    return base64.urlsafe_b64encode(bytes.fromhex(thumbprint_hex)).rstrip(b"=").decode("ascii")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
