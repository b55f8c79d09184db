"""Azure DNS, public and private zones, through the ARM record-set REST API with the app's managed identity.

Options (``dns_options`` of an ACME profile with ``"dns_provider": "azure"``):

=============================  ========  =================================  ===========================================
option                         type      default                            meaning
=============================  ========  =================================  ===========================================
``subscription_id``            string    required                           the zone's subscription
``resource_group``             string    required                           the zone's resource group
``zone``                       string    required                           the zone name, e.g. ``corp.example.com``
``private``                    bool      ``false``                          a Private DNS zone (``privateDnsZones``)
``managed_identity_client_id`` string    (system-assigned)                  client id of a user-assigned identity
``ttl_seconds``                integer   60                                 TTL of the challenge records
``arm_endpoint``               string    ``https://management.azure.com``   ARM endpoint (sovereign clouds; tests)
=============================  ========  =================================  ===========================================

The identity needs **DNS Zone Contributor** on a public zone, or **Private DNS Zone Contributor** on a private one
(scoped to the zone). A private zone only helps when the ACME server resolves names through it, i.e. a private
CA (step-ca, Vault, EJBCA) running in a network linked to that zone.

Record sets are read and written with ETags (``If-Match``/``If-None-Match``), so two renewals sharing a name do not
drop each other's values. Every request carries the identity's ARM token, so a redirect is never followed
(``dns_redirect_refused``), and an ARM endpoint whose TLS certificate does not verify is ``dns_tls_untrusted``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import requests

from renewal._shared.http import (
    new_session,
    redirect_refused,
    retry_after_seconds,
    tls_untrusted,
    tls_verification_failed,
)
from renewal.ca._options import HttpsUrl, between, parse_option_object
from renewal.errors import PermanentError, RetryableError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["PRIVATE_ZONE_API_VERSION", "PUBLIC_ZONE_API_VERSION", "AzureDns", "AzureDnsOptions"]

# The ARM API versions of the record-set operations (Microsoft.Network/dnsZones, .../privateDnsZones).
PUBLIC_ZONE_API_VERSION = "2018-05-01"
PRIVATE_ZONE_API_VERSION = "2020-06-01"
_ARM = "https://management.azure.com"
_CONCURRENT_UPDATE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class AzureDnsOptions:
    """The ``dns_options`` of ``"dns_provider": "azure"`` (the table above)."""

    subscription_id: str
    resource_group: str
    zone: str
    private: bool = False
    managed_identity_client_id: str | None = None
    ttl_seconds: Annotated[int, between(1, 3600, whole=True)] = 60
    arm_endpoint: HttpsUrl = _ARM


class AzureDns:
    """Adds and removes TXT values in an Azure DNS zone (public or private) through ARM."""

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        zone: str,
        credential: TokenCredential,
        private: bool = False,
        ttl_seconds: int = 60,
        arm_endpoint: str = _ARM,
        timeout_seconds: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        """Work on ``zone``; ``credential`` gives ARM tokens (the managed identity in Azure)."""
        self._zone = zone.strip().rstrip(".").lower()
        self._private = private
        self._credential = credential
        self._ttl = ttl_seconds
        self._arm = arm_endpoint.rstrip("/")
        self._scope = f"{self._arm}/.default"
        self._timeout = timeout_seconds
        self._session = session or new_session()
        kind = "privateDnsZones" if private else "dnsZones"
        self._zone_url = (
            f"{self._arm}/subscriptions/{quote(subscription_id, safe='')}/resourceGroups/"
            f"{quote(resource_group, safe='')}/providers/Microsoft.Network/{kind}/{quote(self._zone, safe='')}"
        )
        self._api_version = PRIVATE_ZONE_API_VERSION if private else PUBLIC_ZONE_API_VERSION

    @classmethod
    def from_options(cls, options: Mapping[str, object], environ: Mapping[str, str]) -> AzureDns:
        """Build the provider from ``dns_options``, with ``DefaultAzureCredential`` (the managed identity in Azure).

        Raises:
            ConfigurationError: an option is missing, unknown or malformed.
        """
        parsed = parse_option_object(AzureDnsOptions, options, environ, where="dns_options (azure)")
        from azure.identity import DefaultAzureCredential

        return cls(
            subscription_id=parsed.subscription_id,
            resource_group=parsed.resource_group,
            zone=parsed.zone,
            credential=DefaultAzureCredential(managed_identity_client_id=parsed.managed_identity_client_id),
            private=parsed.private,
            ttl_seconds=parsed.ttl_seconds,
            arm_endpoint=parsed.arm_endpoint,
        )

    def set_txt(self, name: str, value: str) -> None:
        """Add ``value`` to the TXT record set ``name``, creating the set if needed.

        Raises:
            PermanentError: ``name`` is outside the zone (``dns_name_outside_zone``), the identity may not write
                the zone (``dns_unauthorized``), the zone does not exist (``dns_zone_not_found``), ARM refused
                (``dns_rejected``), answered a redirect (``dns_redirect_refused``: the token never follows a
                Location), or its TLS certificate does not verify (``dns_tls_untrusted``).
            RetryableError: ARM is unreachable, throttles or fails (``dns_unreachable``, ``dns_unavailable``), or
                the record set kept changing under us (``dns_concurrent_update``).
        """
        self._update(name, lambda values: values if value in values else [*values, value])

    def delete_txt(self, name: str, value: str) -> None:
        """Remove ``value`` from the TXT record set ``name``; the set is deleted when it becomes empty.

        Raises:
            PermanentError, RetryableError: as ``set_txt``.
        """
        self._update(name, lambda values: [v for v in values if v != value])

    def _update(self, name: str, change: Callable[[list[str]], list[str]]) -> None:
        url = f"{self._zone_url}/TXT/{quote(self._relative(name), safe='@')}"
        for _ in range(_CONCURRENT_UPDATE_ATTEMPTS):
            _, current = self._request("GET", url, missing_ok=True)
            etag = current.get("etag")
            values = _txt_values(current, private=self._private)
            wanted = change(values)
            if wanted == values and (current or not wanted):
                return
            # ARM: If-Match makes a write fail with 412 when someone else changed the set since our read.
            headers = {"If-Match": etag} if isinstance(etag, str) else {"If-None-Match": "*"}
            if wanted:
                status, _ = self._request("PUT", url, headers=headers, body=self._record_set(wanted), conflict_ok=True)
            else:
                status, _ = self._request("DELETE", url, headers=headers, missing_ok=True, conflict_ok=True)
            if status != 412:
                return
        raise RetryableError(f"TXT record set {name} kept changing during the update", reason="dns_concurrent_update")

    def _relative(self, name: str) -> str:
        fqdn = name.strip().rstrip(".").lower()
        if fqdn == self._zone:
            return "@"
        if not fqdn.endswith("." + self._zone):
            raise PermanentError(f"{fqdn} is not inside the zone {self._zone}", reason="dns_name_outside_zone")
        return fqdn[: -len(self._zone) - 1]

    def _record_set(self, values: list[str]) -> dict[str, object]:
        records = [{"value": [value]} for value in values]
        if self._private:
            return {"properties": {"ttl": self._ttl, "txtRecords": records}}
        return {"properties": {"TTL": self._ttl, "TXTRecords": records}}

    def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, object] | None = None,
        missing_ok: bool = False,
        conflict_ok: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Send one ARM request; answers the status and the JSON body (empty for 404/412 when allowed)."""
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self._credential.get_token(self._scope).token
        except ClientAuthenticationError as exc:
            raise PermanentError(
                "no Azure credential could get an ARM token (is the managed identity enabled?)",
                reason="dns_credential_unavailable",
            ) from exc
        try:
            response = self._session.request(
                method,
                url,
                params={"api-version": self._api_version},
                headers={"Authorization": f"Bearer {token}", **(headers or {})},
                json=body,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            if tls_verification_failed(exc):
                raise tls_untrusted("Azure DNS (ARM)", url, reason="dns_tls_untrusted") from exc
            raise RetryableError(f"Azure DNS (ARM) is unreachable for {method}", reason="dns_unreachable") from exc
        except requests.RequestException as exc:
            raise RetryableError(f"Azure DNS (ARM) is unreachable for {method}", reason="dns_unreachable") from exc
        status = response.status_code
        if 300 <= status < 400:
            # Record-set calls are not redirected by ARM: a 3xx comes from a proxy or a wrong arm_endpoint.
            response.close()
            location = response.headers.get("Location")
            raise redirect_refused(f"Azure DNS (ARM) {method}", status, location, url, reason="dns_redirect_refused")
        if (status == 412 and conflict_ok) or (status == 404 and missing_ok):
            return status, {}
        if status < 300:
            try:
                answer = response.json() if response.content else {}
            except ValueError:
                answer = {}
            return status, answer if isinstance(answer, dict) else {}
        code, message = _arm_error(response)
        text = f"Azure DNS {method} of a TXT record in {self._zone} failed: HTTP {status} {code} {message}".rstrip()
        if status == 429 or status >= 500:
            raise RetryableError(text, reason="dns_unavailable", retry_after=retry_after_seconds(response))
        if status in (401, 403):
            role = "Private DNS Zone Contributor" if self._private else "DNS Zone Contributor"
            raise PermanentError(f"{text} (the identity needs {role} on the zone)", reason="dns_unauthorized")
        if status == 404:
            raise PermanentError(text, reason="dns_zone_not_found")
        raise PermanentError(text, reason="dns_rejected")


def _txt_values(record_set: Mapping[str, Any], *, private: bool) -> list[str]:
    properties = record_set.get("properties")
    if not isinstance(properties, dict):
        return []
    records = properties.get("txtRecords" if private else "TXTRecords")
    values = []
    for record in records if isinstance(records, list) else []:
        parts = record.get("value") if isinstance(record, dict) else None
        if isinstance(parts, list):
            # RFC 1035 §3.3.14: a TXT record is a sequence of strings; ACME's value is their concatenation.
            values.append("".join(str(part) for part in parts))
    return values


def _arm_error(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "")), str(error.get("message", ""))[:200]
    except (ValueError, AttributeError):
        return "", ""
