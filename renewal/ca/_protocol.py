"""The one small protocol every CA adapter implements, and the values it speaks in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = [
    "CAAdapter",
    "CAProfile",
    "DeferringCAAdapter",
    "HealthChecked",
    "Issued",
    "Pending",
    "RenewalInfoSource",
    "ReplacingCAAdapter",
    "RevokingCAAdapter",
    "SigningRequest",
]


@dataclass(frozen=True, slots=True)
class CAProfile:
    """A named CA profile from configuration.

    Attributes:
        name: the profile's name, as certificates choose it with the ``renewal-ca`` tag.
        adapter: the adapter type (a key of the adapter registry), e.g. ``local``.
        options: adapter-specific options, as configured (never secret values themselves:
            secrets are named by the app setting that holds them).
    """

    name: str
    adapter: str
    options: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SigningRequest:
    """What an adapter is asked to sign.

    Attributes:
        csr_der: the PKCS#10 CSR that Key Vault generated, DER-encoded.
        vault_name: the vault holding the certificate.
        certificate_name: the Key Vault certificate's name.
        validity_months: the validity the certificate's policy asks for, if any.
        key_usage: Key Vault key usage names from the policy (``digitalSignature``, ...).
        ekus: extended key usage OIDs from the policy.
    """

    csr_der: bytes
    vault_name: str
    certificate_name: str
    validity_months: int | None = None
    key_usage: tuple[str, ...] = ()
    ekus: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Issued:
    """The CA issued the certificate.

    Attributes:
        leaf_pem: the end-entity certificate, PEM.
        chain_pem: the issuing chain, PEM, one certificate each, nearest issuer first.
    """

    leaf_pem: str
    chain_pem: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pending:
    """The CA accepted the request but has not issued yet (approval, slow CA).

    Attributes:
        reference: the CA's handle to poll with, opaque to everyone else.
        retry_after: seconds the CA suggests waiting before polling, if it said.
    """

    reference: str
    retry_after: float | None = None


@runtime_checkable
class CAAdapter(Protocol):
    """Submit a CSR: the CA issues, or (an adapter that is also a ``DeferringCAAdapter``) defers.

    ``submit`` raises ``RetryableError`` for failures that may pass (outage, timeout, 5xx, rate limit) and
    ``PermanentError`` for the rest (rejected CSR, denied, unknown profile). Nothing vendor-specific escapes an
    adapter.
    """

    def submit(self, request: SigningRequest) -> Issued | Pending: ...


@runtime_checkable
class DeferringCAAdapter(Protocol):
    """An adapter whose CA can hold a request (approval, slow issuance) and answer it later, when polled.

    Only such an adapter may answer ``Pending``; the flow asks for this capability by type.
    """

    def poll(self, reference: str) -> Issued | Pending: ...


@runtime_checkable
class ReplacingCAAdapter(Protocol):
    """An adapter that can tell the CA which certificate a new one replaces (ACME ARI, RFC 9773 §5)."""

    def submit_replacing(self, request: SigningRequest, previous_leaf_pem: str) -> Issued | Pending: ...


@runtime_checkable
class RenewalInfoSource(Protocol):
    """An adapter whose CA suggests when to renew a certificate (ACME ARI, RFC 9773 §4.2)."""

    def suggested_window(self, certificate_pem: str) -> tuple[datetime, datetime] | None: ...


@runtime_checkable
class RevokingCAAdapter(Protocol):
    """An adapter whose CA can revoke a certificate it issued (docs/ca/revocation.md).

    Only such an adapter's profile may set ``revoke_superseded``; AD CS web enrollment and EST have no revocation
    call and do not implement this. ``revoke`` succeeds when the certificate is revoked afterwards, including when
    it already was (a redelivered revocation must not fail). It raises ``RetryableError`` for failures that may
    pass and ``PermanentError`` for the rest (the CA refuses, the certificate is not its own).
    """

    def revoke(self, certificate_pem: str, *, reason: str = "superseded") -> None: ...


@runtime_checkable
class HealthChecked(Protocol):
    """An adapter that can prove, harmlessly, that its CA is reachable and its credentials work (``renewal check``).

    ``check`` asks nothing to be issued or changed, and returns one line describing what it reached (never a
    secret). It raises ``RenewalError`` (retryable or permanent, as ``submit`` would) when the CA cannot be used.
    """

    def check(self) -> str: ...
