"""A local Azure Key Vault (certificates API) emulator over HTTPS, for tests, the demo and trying the app.

The HTTPS shell (listeners, auth challenge, faults, throttling, events, clock, persistence) lives in
``_server``, ``_events``, ``_faults``, ``_clock`` and ``_tls``; the certificates API itself in ``_vault``.
"""

from ._clock import EmulatorClock
from ._events import (
    EVENT_GRID_RETRY_DELAYS,
    DeadLetter,
    DeliveryAttempt,
    EventDispatcher,
    EventSchema,
    Subscriber,
    vault_resource_id,
)
from ._faults import THROTTLED_MESSAGE, Fault, Faults, Throttle, ThrottleLimits, keyvault_error
from ._server import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TENANT_ID,
    KeyVaultEmulator,
    LoggedRequest,
    RequestLog,
    VaultFactory,
    VaultModel,
)
from ._tls import TlsFiles, ensure_tls_files
from ._types import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_NEAR_EXPIRY,
    CERTIFICATE_NEW_VERSION_CREATED,
    ApiRequest,
    ApiResponse,
    Clock,
    EmitEvent,
    LatestWhilePending,
    VaultEvent,
)

__all__ = [
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_NEAR_EXPIRY",
    "CERTIFICATE_NEW_VERSION_CREATED",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TENANT_ID",
    "EVENT_GRID_RETRY_DELAYS",
    "THROTTLED_MESSAGE",
    "ApiRequest",
    "ApiResponse",
    "Clock",
    "DeadLetter",
    "DeliveryAttempt",
    "EmitEvent",
    "EmulatorClock",
    "EventDispatcher",
    "EventSchema",
    "Fault",
    "Faults",
    "KeyVaultEmulator",
    "LatestWhilePending",
    "LoggedRequest",
    "RequestLog",
    "Subscriber",
    "Throttle",
    "ThrottleLimits",
    "TlsFiles",
    "VaultEvent",
    "VaultFactory",
    "VaultModel",
    "ensure_tls_files",
    "keyvault_error",
    "vault_resource_id",
]
