"""Which Azure resources reference a Key Vault certificate, read from their ARM properties (pure: no I/O).

Each supported resource type names the certificate its own way:

=============================================  ================================================================
resource type                                  where the reference is
=============================================  ================================================================
``Microsoft.Network/applicationGateways``      ``properties.sslCertificates[].properties.keyVaultSecretId``
``Microsoft.ApiManagement/service``            ``properties.hostnameConfigurations[].keyVaultId``
``Microsoft.ApiManagement/service/certificates`` ``properties.keyVault.secretIdentifier``
``Microsoft.Web/certificates``                 ``properties.keyVaultId`` (the vault's ARM id) + ``keyVaultSecretName``
``Microsoft.App/managedEnvironments/certificates`` ``properties.certificateKeyVaultProperties.keyVaultUrl``
=============================================  ================================================================

A secret id that names a version (``.../secrets/{name}/{version}``) is *pinned*: the service keeps that version
for ever, and no push or poll changes it. Vault and certificate names are matched whole, ASCII case-insensitively
(Key Vault's names are case-insensitive), so ``web`` never matches ``web-old``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "KIND_BY_TYPE",
    "SELF_PICKUP",
    "Consumer",
    "SecretReference",
    "classify",
    "parse_secret_reference",
    "references_in",
    "same_name",
]

KIND_BY_TYPE: Mapping[str, str] = {
    "microsoft.network/applicationgateways": "app_gateway",
    "microsoft.apimanagement/service": "api_management",
    "microsoft.apimanagement/service/certificates": "api_management",
    "microsoft.web/certificates": "app_service",
    "microsoft.app/managedenvironments/certificates": "container_apps",
}


# How long the service documents it takes to pick a new version up by itself, without a push (a push that keeps
# failing falls back to this).
SELF_PICKUP: Mapping[str, timedelta] = MappingProxyType(
    {
        "app_gateway": timedelta(hours=4),
        "api_management": timedelta(hours=48),
        "app_service": timedelta(hours=24),
        "container_apps": timedelta(hours=12),
    }
)


@dataclass(frozen=True, slots=True)
class SecretReference:
    """A Key Vault secret as a consumer references it.

    Attributes:
        vault_host: the vault's host name (``kv1.vault.azure.net``), lower-cased, with ``:port`` when one is given.
        vault_name: the vault's name (the host's first label), lower-cased.
        name: the secret's (and so the certificate's) name, as written.
        version: the pinned version, or ``None`` for a versionless reference that rotates.
    """

    vault_host: str
    vault_name: str
    name: str
    version: str | None


@dataclass(frozen=True, slots=True)
class Consumer:
    """One resource that references a certificate of the vault.

    Attributes:
        resource_id: the ARM id of the resource that holds the reference.
        kind: the target kind that can push to it (``app_gateway``, ``api_management``, ``app_service``,
            ``container_apps``).
        certificate_name: the Key Vault certificate's name, as the resource writes it.
        secret_id: the reference as the resource holds it (a Key Vault secret id, or vault id + secret name).
        pinned_version: the version it is pinned to (it will never rotate), or ``None``.
        configured_target: the name of the configured target that pushes to it, or ``None`` when none does.
        where: which part of the resource holds it (the listener certificate's or hostname's name).
    """

    resource_id: str
    kind: str
    certificate_name: str
    secret_id: str
    pinned_version: str | None
    configured_target: str | None
    where: str = ""

    @property
    def pinned(self) -> bool:
        """Whether the reference names one version, so it never rotates."""
        return self.pinned_version is not None


def same_name(left: str, right: str) -> bool:
    """Whether two Key Vault names are equal, whole and ASCII case-insensitively."""
    return left.isascii() and right.isascii() and left.lower() == right.lower()


def parse_secret_reference(url: object) -> SecretReference | None:
    """Read ``https://{vault}/secrets/{name}[/{version}]`` (a trailing slash allowed); ``None`` if it is not one."""
    if not isinstance(url, str) or not url.isascii():
        return None
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() != "https" or not host:
        return None
    segments = [segment for segment in parts.path.split("/") if segment]
    if len(segments) not in (2, 3) or segments[0].lower() != "secrets":
        return None
    netloc = f"{host}:{parts.port}" if parts.port else host
    return SecretReference(
        vault_host=netloc,
        vault_name=host.split(".", 1)[0],
        name=segments[1],
        version=segments[2] if len(segments) == 3 else None,
    )


def references_in(resource: Mapping[str, Any]) -> list[tuple[str, str, SecretReference]]:
    """The Key Vault references in one ARM resource (``id``, ``type``, ``properties``), as
    ``(where, secret_id, reference)``; a resource of another type has none."""
    kind_type = str(resource.get("type", "")).lower()
    properties = resource.get("properties")
    if not isinstance(properties, Mapping):
        return []
    found: list[tuple[str, str, SecretReference]] = []

    def add(where: object, raw: object) -> None:
        reference = parse_secret_reference(raw)
        if reference is not None and isinstance(raw, str):
            found.append((str(where or ""), raw, reference))

    if kind_type == "microsoft.network/applicationgateways":
        for certificate in _objects(properties.get("sslCertificates")):
            inner = certificate.get("properties")
            if isinstance(inner, Mapping):
                add(certificate.get("name"), inner.get("keyVaultSecretId"))
    elif kind_type == "microsoft.apimanagement/service":
        for hostname in _objects(properties.get("hostnameConfigurations")):
            add(hostname.get("hostName"), hostname.get("keyVaultId"))
    elif kind_type == "microsoft.apimanagement/service/certificates":
        key_vault = properties.get("keyVault")
        if isinstance(key_vault, Mapping):
            add(resource.get("name"), key_vault.get("secretIdentifier"))
    elif kind_type == "microsoft.app/managedenvironments/certificates":
        key_vault = properties.get("certificateKeyVaultProperties")
        if isinstance(key_vault, Mapping):
            add(resource.get("name"), key_vault.get("keyVaultUrl"))
    elif kind_type == "microsoft.web/certificates":
        vault_id, secret_name = properties.get("keyVaultId"), properties.get("keyVaultSecretName")
        if isinstance(vault_id, str) and isinstance(secret_name, str) and vault_id.isascii() and secret_name:
            vault_name = vault_id.rstrip("/").rsplit("/", 1)[-1].lower()
            reference = SecretReference(vault_host="", vault_name=vault_name, name=secret_name, version=None)
            found.append((str(resource.get("name") or ""), f"{vault_id}#{secret_name}", reference))
    return found


def classify(
    resources: Iterable[Mapping[str, Any]],
    *,
    vault_name: str,
    certificate_name: str | None = None,
    configured: Sequence[tuple[str, str]] = (),
) -> list[Consumer]:
    """The consumers of ``vault_name``'s certificates (only ``certificate_name``'s when given) among ``resources``.

    ``configured`` holds ``(target name, resource id)`` of the configured targets; a consumer is covered by the
    target whose resource id is its own or its parent's (case-insensitive, as ARM ids are): an API Management
    certificate entity is covered by a target on its service. Ordered by resource id, then by where in it.
    """
    targets = {resource_id.lower().rstrip("/"): name for name, resource_id in configured}
    consumers: list[Consumer] = []
    for resource in resources:
        resource_id = str(resource.get("id", ""))
        kind = KIND_BY_TYPE.get(str(resource.get("type", "")).lower())
        if kind is None:
            continue
        for where, secret_id, reference in references_in(resource):
            if not same_name(reference.vault_name, vault_name):
                continue
            if certificate_name is not None and not same_name(reference.name, certificate_name):
                continue
            consumers.append(
                Consumer(
                    resource_id=resource_id,
                    kind=kind,
                    certificate_name=reference.name,
                    secret_id=secret_id,
                    pinned_version=reference.version,
                    configured_target=_covering(targets, resource_id),
                    where=where,
                )
            )
    return sorted(consumers, key=lambda c: (c.resource_id.lower(), c.where))


def _covering(targets: Mapping[str, str], resource_id: str) -> str | None:
    folded = resource_id.lower().rstrip("/")
    for target_id, name in targets.items():
        if folded == target_id or folded.startswith(target_id + "/"):
            return name
    return None


def _objects(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
