"""The body of a deployment notification (pure): a CloudEvents 1.0 event about one outcome, and which endpoints get it.

The event names the certificate, the vault, the new version and its ids, thumbprint, validity, and the Key Vault
secret URI consumers fetch from. Receivers get it in CloudEvents structured mode (``application/cloudevents+json``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from renewal.outcome import Outcome, to_dict
from renewal.pure.verify import VerifiedCertificate
from renewal.settings import WebhookEndpoint

__all__ = ["EVENT_TYPE_PREFIX", "build_payload", "endpoints_for"]

EVENT_TYPE_PREFIX = "com.github.renewal.certificate."


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


def _x5t(thumbprint_hex: str) -> str:
    # Key Vault's x5t: "base64url without padding of SHA-1 over the DER certificate".
    return base64.urlsafe_b64encode(bytes.fromhex(thumbprint_hex)).rstrip(b"=").decode("ascii")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
