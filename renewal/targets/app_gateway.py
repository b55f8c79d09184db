"""Application Gateway v2: make the gateway re-read Key Vault now.

The gateway polls Key Vault every 4 hours, and only for a *versionless* ``keyVaultSecretId``; "any change to the
Application Gateway resource, including tags" makes it check at once (learn: application-gateway/key-vault-certs).
So a push is two ARM requests:

1. ``GET .../applicationGateways/{name}``: find the ``sslCertificates[]`` whose ``properties.keyVaultSecretId``
   names this certificate; one that pins a version is refused (``version_pinned``: it will never rotate), and a
   gateway that does not reference the certificate is a configuration mistake (``certificate_not_referenced``);
2. ``PATCH`` the gateway's tags (``ApplicationGateways_UpdateTags``, answered 200) with ``renewal-pushed=<version>``,
   keeping every other tag: the smallest change that needs no write on the gateway's subnet or public IP.

Role: **Network Contributor** on the gateway (``infra/app/target-app-gateway.bicep``).
"""

from __future__ import annotations

from dataclasses import dataclass

from renewal.pure.consumers import same_name
from renewal.targets._common import ArmTarget, properties_of, tags_of
from renewal.targets._protocol import NewVersion, PushResult

__all__ = ["API_VERSION", "PUSHED_TAG", "AppGateway", "AppGatewayOptions"]

API_VERSION = "2024-05-01"
PUSHED_TAG = "renewal-pushed"
ROLE = "Network Contributor on the application gateway"


@dataclass(frozen=True, slots=True, kw_only=True)
class AppGatewayOptions:
    """The ``options`` of an ``app_gateway`` target.

    Attributes:
        api_version: the ``Microsoft.Network`` api-version.
        certificate_names: only these ``sslCertificates[]`` entries (by name) are considered; all when empty.
    """

    api_version: str = API_VERSION
    certificate_names: tuple[str, ...] = ()


class AppGateway(ArmTarget[AppGatewayOptions]):
    """A push to one Application Gateway."""

    kind = "app_gateway"
    label = "application gateway"

    def push(self, new_version: NewVersion) -> PushResult:
        """Tag the gateway so it re-reads the versionless secret now.

        Raises:
            PermanentError: ``version_pinned``, ``certificate_not_referenced``, or as ``ArmClient.send``.
            RetryableError: as ``ArmClient.send`` (409 while another gateway update runs, which takes minutes).
        """
        version = self._options.api_version
        gateway = self._arm.get(self.resource_id, api_version=version, role=ROLE)
        wanted = self._options.certificate_names
        found = False
        for certificate in properties_of(gateway).get("sslCertificates") or []:
            if not isinstance(certificate, dict):
                continue
            name = str(certificate.get("name", ""))
            if wanted and not any(same_name(name, w) for w in wanted):
                continue
            raw = properties_of(certificate).get("keyVaultSecretId")
            if self._uses_new_version(raw, new_version, where=f"sslCertificate {name!r}"):
                found = True
        if not found:
            raise self._not_referenced(new_version)
        tags = {**tags_of(gateway), PUSHED_TAG: new_version.version}
        self._arm.send("PATCH", self.resource_id, api_version=version, role=ROLE, body={"tags": tags})
        return PushResult.PUSHED
