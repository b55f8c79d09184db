"""The seam between the emulator's HTTP shell (server, auth, faults, throttling, events) and the vault model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_NEAR_EXPIRY",
    "CERTIFICATE_NEW_VERSION_CREATED",
    "ApiRequest",
    "ApiResponse",
    "Clock",
    "EmitEvent",
    "LatestWhilePending",
    "VaultEvent",
]

CERTIFICATE_NEW_VERSION_CREATED = "Microsoft.KeyVault.CertificateNewVersionCreated"
CERTIFICATE_NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
CERTIFICATE_EXPIRED = "Microsoft.KeyVault.CertificateExpired"

# What "get latest" returns while a second (renewal) version is pending: the real service's answer is not
# recorded anywhere, so both are available; "placeholder" is the default.
LatestWhilePending = Literal["placeholder", "previous"]

Clock = Callable[[], float]
"""Returns the emulator's current time as Unix seconds; tests and the demo can move it."""


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One authenticated request, as the vault model sees it.

    Attributes:
        method: upper-case HTTP method.
        path: the URL path, percent-decoded, without the query, e.g. ``/certificates/app/pending``.
        query: query parameters (the last value wins), names as sent.
        headers: request headers, names lower-cased.
        body: the raw request body (possibly empty).
    """

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """The vault model's answer.

    Attributes:
        status: HTTP status code.
        body: a JSON-serialisable value, or ``None`` for an empty body.
        headers: extra response headers (``Location``, ``Retry-After``).
    """

    status: int
    body: object | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VaultEvent:
    """A Key Vault certificate event, before the shell wraps it in an Event Grid envelope.

    Attributes:
        event_type: one of the ``CERTIFICATE_*`` constants.
        certificate_name: the certificate's name.
        version: the version the event is about.
        nbf: its not-before, Unix seconds.
        exp: its expiry, Unix seconds.
    """

    event_type: str
    certificate_name: str
    version: str
    nbf: int | None
    exp: int | None


EmitEvent = Callable[[VaultEvent], None]
