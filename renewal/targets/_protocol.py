"""The deployment-target contract: what a target is told (``NewVersion``), what it answers (``PushResult``), how it
is configured (``TargetConfig``), and the one method every kind implements (``DeploymentTarget.push``).

A push asks an Azure service to serve the new Key Vault version now rather than on its own schedule. It says
nothing about what is served: the TLS probe checks that, until ``pickup_deadline`` has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = ["DeploymentTarget", "NewVersion", "ProbeEndpoint", "PushResult", "TargetConfig"]


@dataclass(frozen=True, slots=True)
class NewVersion:
    """The certificate version a target should serve.

    Attributes:
        vault_name: the vault's name as configured.
        vault_url: ``https://<vault>.vault.azure.net``, without a trailing slash.
        certificate_name: the Key Vault certificate's name.
        version: the new version's id.
        thumbprint: lowercase hex SHA-1 of the new leaf's DER (what a TLS probe compares).
        key_curve: the key's curve (``P-256``, ``P-384``, ``P-521``, ``P-256K``) for an EC key, else ``None``.
    """

    vault_name: str
    vault_url: str
    certificate_name: str
    version: str
    thumbprint: str
    key_curve: str | None = None

    @property
    def secret_id(self) -> str:
        """The versionless secret id that rotating consumers reference."""
        return f"{self.vault_url.rstrip('/')}/secrets/{self.certificate_name}"

    @property
    def versioned_secret_id(self) -> str:
        """The secret id of exactly this version."""
        return f"{self.secret_id}/{self.version}"


class PushResult(StrEnum):
    """What a push did: told the service to re-read Key Vault, or found nothing it could tell it."""

    PUSHED = "pushed"
    NOTHING_TO_DO = "nothing_to_do"


@dataclass(frozen=True, slots=True)
class ProbeEndpoint:
    """Where the TLS probe connects to see what a target serves.

    Attributes:
        host: a DNS name or IP address.
        port: the TCP port.
        sni: the TLS server name to send; ``host`` when ``None``.
    """

    host: str
    port: int = 443
    sni: str | None = None


@runtime_checkable
class DeploymentTarget(Protocol):
    """One configured consumer of a Key Vault certificate that can be told to pick up a new version.

    Attributes:
        name: the target's name from configuration.
        kind: its kind (``app_gateway``, ``api_management``, ``app_service``, ``container_apps``).
        pickup_deadline: how long the service may take to serve a pushed version (its documented maximum).
    """

    name: str
    kind: str
    pickup_deadline: timedelta

    def push(self, new_version: NewVersion) -> PushResult:
        """Make the service re-read Key Vault now.

        Raises:
            RetryableError: ARM is busy (409), throttles, fails or is unreachable; a later push may succeed.
            PermanentError: the target cannot rotate (a pinned version, a refused key type), is missing, or the
                identity lacks the role.
        """
        ...


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """A target as configured in ``RENEWAL_TARGETS``.

    Attributes:
        name: its name (ASCII letters, digits, ``_ . -``).
        kind: ``app_gateway``, ``api_management``, ``app_service`` or ``container_apps``.
        resource_id: the ARM id of the gateway, the API Management service, the ``Microsoft.Web/certificates``
            resource, or the managed environment certificate.
        probe: the endpoint that serves the certificate, to verify the rollout; ``None`` for push only.
        match_tag: ``(key, value)`` a certificate's tags must contain, or ``None`` for every certificate.
        options: the kind's own frozen options dataclass.
    """

    name: str
    kind: str
    resource_id: str
    probe: ProbeEndpoint | None
    match_tag: tuple[str, str] | None
    options: object
