"""API Management: refresh the custom hostnames and certificate entities that use the Key Vault secret.

API Management picks a new version up by itself only after up to 1-2 days (learn: api-management/
configure-custom-domain). Two documented calls refresh at once:

- ``POST .../service/{name}/refreshHostnames`` (``ApiManagementService_RefreshHostnames``, api-version
  ``2025-09-01-preview``; 200, or 202 with ``Location`` and ``Retry-After``: a long-running operation) for the
  ``hostnameConfigurations[]`` whose ``keyVaultId`` names the secret;
- ``POST .../service/{name}/certificates/{id}/refreshSecret`` (``Certificate_RefreshSecret``) for each certificate
  entity whose ``properties.keyVault.secretIdentifier`` names it.

A push reads the service and its certificate entities (two GETs), refuses a reference that pins a version
(``version_pinned``), then sends the refreshes it needs: ``2 + (1 if a hostname uses it) + entities`` requests,
plus the polls of a 202.

Role: **API Management Service Contributor** on the service (``infra/app/target-api-management.bicep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from renewal.targets._common import ArmTarget, properties_of
from renewal.targets._protocol import NewVersion, PushResult

__all__ = ["API_VERSION", "REFRESH_HOSTNAMES_API_VERSION", "ApiManagement", "ApiManagementOptions"]

API_VERSION = "2024-05-01"
REFRESH_HOSTNAMES_API_VERSION = "2025-09-01-preview"
ROLE = "API Management Service Contributor on the API Management service"
_PAGES = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiManagementOptions:
    """The ``options`` of an ``api_management`` target.

    Attributes:
        api_version: the ``Microsoft.ApiManagement`` api-version for reads and ``refreshSecret``.
        refresh_hostnames_api_version: the api-version of ``refreshHostnames`` (preview when written).
        certificate_entities: also refresh certificate entities (``.../certificates``); off skips one GET.
    """

    api_version: str = API_VERSION
    refresh_hostnames_api_version: str = REFRESH_HOSTNAMES_API_VERSION
    certificate_entities: bool = True


class ApiManagement(ArmTarget[ApiManagementOptions]):
    """A push to one API Management service."""

    kind = "api_management"
    label = "API Management service"

    def push(self, new_version: NewVersion) -> PushResult:
        """Refresh what of the service uses the certificate.

        Raises:
            PermanentError: ``version_pinned``, ``certificate_not_referenced``, or as ``ArmClient.send``.
            RetryableError: as ``ArmClient.send``.
        """
        api_version = self._options.api_version
        service = self._arm.get(self.resource_id, api_version=api_version, role=ROLE)
        hostnames = False
        for hostname in properties_of(service).get("hostnameConfigurations") or []:
            if not isinstance(hostname, dict):
                continue
            where = f"hostname {hostname.get('hostName', '')!r}"
            if self._uses_new_version(hostname.get("keyVaultId"), new_version, where=where):
                hostnames = True
        entities = self._certificate_entities(new_version) if self._options.certificate_entities else []
        if not hostnames and not entities:
            raise self._not_referenced(new_version)
        if hostnames:
            self._arm.send(
                "POST",
                f"{self.resource_id}/refreshHostnames",
                api_version=self._options.refresh_hostnames_api_version,
                role=ROLE,
            )
        for entity_id in entities:
            self._arm.send("POST", f"{entity_id}/refreshSecret", api_version=api_version, role=ROLE)
        return PushResult.PUSHED

    def _certificate_entities(self, new_version: NewVersion) -> list[str]:
        found: list[str] = []
        page = self._arm.get(f"{self.resource_id}/certificates", api_version=self._options.api_version, role=ROLE)
        for _ in range(_PAGES):
            for entity in _values(page):
                key_vault = properties_of(entity).get("keyVault")
                raw = key_vault.get("secretIdentifier") if isinstance(key_vault, dict) else None
                where = f"certificate {entity.get('name', '')!r}"
                if self._uses_new_version(raw, new_version, where=where):
                    found.append(f"{self.resource_id}/certificates/{entity.get('name', '')}")
            next_link = page.get("nextLink")
            if not isinstance(next_link, str) or not next_link:
                break
            page = self._arm.get_link(next_link, role=ROLE)
        return found


def _values(page: dict[str, Any]) -> list[dict[str, Any]]:
    values = page.get("value")
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []
