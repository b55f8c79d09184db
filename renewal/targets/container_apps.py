"""Container Apps: put the managed environment certificate that points at Key Vault again.

A managed environment certificate imported from Key Vault (``properties.certificateKeyVaultProperties``:
``identity`` + ``keyVaultUrl``) is refreshed by the platform within 12 hours; no refresh call is documented
(learn: container-apps/key-vault-certificates-manage). With ``refresh`` on (the default) a push re-puts the
certificate with the same Key Vault properties, which the API allows (``Certificates_CreateOrUpdate``; the
answer's ``provisioningState`` is followed until terminal), and the probe tells whether it was served sooner;
with ``refresh`` off it is ``nothing_to_do``: wait and verify only.

Container Apps refuse ECDSA P-384 and P-521 keys: such a version is refused before any request
(``key_type_unsupported``). A ``keyVaultUrl`` that pins a version is refused (``version_pinned``).

Role: the custom role **Container Apps Environment Certificate Writer** (``Microsoft.App/managedEnvironments/
certificates/read|write``), on the managed environment (``infra/app/target-container-apps.bicep``).
"""

from __future__ import annotations

from dataclasses import dataclass

from renewal.errors import PermanentError
from renewal.targets._common import ArmTarget, properties_of, reput_body
from renewal.targets._protocol import NewVersion, PushResult

__all__ = ["API_VERSION", "UNSUPPORTED_CURVES", "ContainerApps", "ContainerAppsOptions"]

API_VERSION = "2025-01-01"
ROLE = "Container Apps Environment Certificate Writer on the managed environment"
UNSUPPORTED_CURVES = frozenset({"P-384", "P-521"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerAppsOptions:
    """The ``options`` of a ``container_apps`` target.

    Attributes:
        api_version: the ``Microsoft.App`` api-version (one with ``certificateKeyVaultProperties``).
        refresh: re-put the certificate on a push; off waits for the platform's own refresh (up to 12 hours).
    """

    api_version: str = API_VERSION
    refresh: bool = True


class ContainerApps(ArmTarget[ContainerAppsOptions]):
    """A push to one managed environment certificate."""

    kind = "container_apps"
    label = "Container Apps environment certificate"

    def push(self, new_version: NewVersion) -> PushResult:
        """Re-put the environment certificate (or do nothing when ``refresh`` is off).

        Raises:
            PermanentError: ``key_type_unsupported``, ``version_pinned``, ``certificate_not_referenced``, or as
                ``ArmClient.send``.
            RetryableError: as ``ArmClient.send``.
        """
        if (new_version.key_curve or "").upper() in UNSUPPORTED_CURVES:
            raise PermanentError(
                f"Container Apps do not accept ECDSA {new_version.key_curve} certificates; give "
                f"{new_version.certificate_name} an RSA or P-256 key to serve it from {self.resource_id}",
                reason="key_type_unsupported",
            )
        if not self._options.refresh:
            return PushResult.NOTHING_TO_DO
        api_version = self._options.api_version
        current = self._arm.get(self.resource_id, api_version=api_version, role=ROLE)
        key_vault = properties_of(current).get("certificateKeyVaultProperties")
        raw = key_vault.get("keyVaultUrl") if isinstance(key_vault, dict) else None
        if not isinstance(key_vault, dict) or not self._uses_new_version(raw, new_version, where="keyVaultUrl"):
            raise self._not_referenced(new_version)
        kept = {key: key_vault[key] for key in ("identity", "keyVaultUrl") if key in key_vault}
        body = reput_body(current, {"certificateKeyVaultProperties": kept})
        self._arm.send("PUT", self.resource_id, api_version=api_version, role=ROLE, body=body)
        return PushResult.PUSHED
