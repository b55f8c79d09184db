"""App Service (and Functions): re-put the ``Microsoft.Web/certificates`` resource so it syncs from Key Vault now.

App Service syncs a Key Vault certificate by itself within 24 hours (learn: app-service/configure-ssl-certificate).
Putting the certificate resource again with the same ``keyVaultId``, ``keyVaultSecretName`` and ``serverFarmId``
makes it fetch the current version at once (App Service team blog, "Rotating certificate"; azure-cli #15412);
this is not formally documented, so the answer's ``thumbprint`` is checked: an older one is retried later
(``target_not_synced``). A push is two ARM requests: ``GET`` then ``PUT``.

Role: **Website Contributor** scoped to the certificate resource itself (``infra/app/target-app-service.bicep``):
no narrower built-in role writes ``Microsoft.Web/certificates``.
"""

from __future__ import annotations

from dataclasses import dataclass

from renewal.errors import PermanentError, RetryableError
from renewal.pure.consumers import same_name
from renewal.targets._common import ArmTarget, properties_of, reput_body
from renewal.targets._protocol import NewVersion, PushResult

__all__ = ["API_VERSION", "AppService", "AppServiceOptions"]

API_VERSION = "2024-04-01"
ROLE = "Website Contributor on the Microsoft.Web/certificates resource"
# keyVaultSecretStatus values that say App Service cannot read the secret (Microsoft.Web KeyVaultSecretStatus).
_CANNOT_READ = frozenset(
    {
        "azureserviceunauthorizedtoaccesskeyvault",
        "keyvaultdoesnotexist",
        "keyvaultsecretdoesnotexist",
        "externalprivatekey",
        "unknownerror",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppServiceOptions:
    """The ``options`` of an ``app_service`` target.

    Attributes:
        api_version: the ``Microsoft.Web`` api-version.
        check_thumbprint: treat an answer with another thumbprint as not yet synced (retryable).
    """

    api_version: str = API_VERSION
    check_thumbprint: bool = True


class AppService(ArmTarget[AppServiceOptions]):
    """A push to one ``Microsoft.Web/certificates`` resource."""

    kind = "app_service"
    label = "App Service certificate"

    def push(self, new_version: NewVersion) -> PushResult:
        """Put the certificate resource back unchanged, so App Service fetches the current version.

        Raises:
            PermanentError: ``certificate_not_referenced``, ``target_cannot_read_key_vault``, or as
                ``ArmClient.send``.
            RetryableError: ``target_not_synced`` (the answer still carries another thumbprint), or as
                ``ArmClient.send``.
        """
        api_version = self._options.api_version
        current = self._arm.get(self.resource_id, api_version=api_version, role=ROLE)
        properties = properties_of(current)
        vault_id, secret_name = properties.get("keyVaultId"), properties.get("keyVaultSecretName")
        vault_name = vault_id.rstrip("/").rsplit("/", 1)[-1] if isinstance(vault_id, str) else ""
        if not (
            isinstance(secret_name, str)
            and same_name(vault_name, new_version.vault_name)
            and same_name(secret_name, new_version.certificate_name)
        ):
            raise self._not_referenced(new_version)
        kept = {
            key: properties[key] for key in ("keyVaultId", "keyVaultSecretName", "serverFarmId") if key in properties
        }
        body = reput_body(current, kept)
        answer = self._arm.send("PUT", self.resource_id, api_version=api_version, role=ROLE, body=body).body
        self._check(properties_of(answer), new_version)
        return PushResult.PUSHED

    def _check(self, properties: object, new_version: NewVersion) -> None:
        if not isinstance(properties, dict):
            return
        status = str(properties.get("keyVaultSecretStatus") or "").lower()
        if status in _CANNOT_READ:
            raise PermanentError(
                f"App Service certificate {self.resource_id} cannot read its Key Vault secret ({status}); grant "
                "the App Service resource provider (or the app's identity) Key Vault Secrets User on the vault",
                reason="target_cannot_read_key_vault",
            )
        thumbprint = properties.get("thumbprint")
        stale = isinstance(thumbprint, str) and thumbprint and thumbprint.lower() != new_version.thumbprint.lower()
        if self._options.check_thumbprint and stale:
            raise RetryableError(
                f"App Service certificate {self.resource_id} still holds thumbprint {str(thumbprint).lower()} after "
                f"the sync, not {new_version.thumbprint}; trying again later",
                reason="target_not_synced",
            )
