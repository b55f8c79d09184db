"""Scripted faults and Key Vault-style throttling, applied by the shell before a request reaches a vault."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ._types import ApiResponse

__all__ = [
    "THROTTLED_MESSAGE",
    "Fault",
    "Faults",
    "Throttle",
    "ThrottleLimits",
    "keyvault_error",
]

# Key Vault's 429 body as quoted in AzureSignTool #219 (event-grid-and-limits.md §d).
THROTTLED_MESSAGE = (
    "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
)

_DEFAULT_CODES: Mapping[int, str] = {
    400: "BadParameter",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "RequestTooLarge",
    429: "Throttled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def keyvault_error(code: str, message: str) -> dict[str, object]:
    """Return the KeyVaultError body ``{"error": {"code": ..., "message": ...}}``."""
    return {"error": {"code": code, "message": message}}


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer.

    Attributes:
        status: the HTTP status to answer with.
        body: the JSON body; ``None`` answers without a body.
        retry_after: the ``Retry-After`` header value, or ``None`` for no header.
        delay: seconds to wait before answering.
    """

    status: int
    body: object | None
    retry_after: str | None = None
    delay: float = 0.0

    def response(self) -> ApiResponse:
        """Return the answer as an ``ApiResponse``."""
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        return ApiResponse(status=self.status, body=self.body, headers=headers)


class Faults:
    """Scripted answers per vault and operation, consumed in order; other operations are unaffected.

    Operations are the names the vault model's ``operation_of`` returns (``create``, ``merge``, ...).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[tuple[str | None, str], deque[Fault]] = {}

    def script(
        self,
        operation: str,
        status: int,
        *,
        vault: str | None = None,
        count: int = 1,
        body: object | None = None,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Make the next ``count`` requests of ``operation`` answer ``status`` instead of reaching the vault.

        ``vault=None`` matches every vault. Without ``body`` the answer is a KeyVaultError built from ``code``
        (by default the one Key Vault uses for the status) and ``message``. Faults scripted for one vault are
        consumed before those for every vault.

        Raises:
            ValueError: ``count`` is below 1, ``status`` is not an HTTP status, or ``delay`` is negative.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status, got {status}")
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        if body is None:
            default_code = _DEFAULT_CODES.get(status, "InjectedFault")
            default_message = THROTTLED_MESSAGE if status == 429 else f"Fault injected by the emulator ({status})."
            body = keyvault_error(code or default_code, message or default_message)
        header = None if retry_after is None else _retry_after_value(retry_after)
        fault = Fault(status=status, body=body, retry_after=header, delay=delay)
        with self._lock:
            queue = self._queues.setdefault((vault, operation), deque())
            queue.extend([fault] * count)
        return fault

    def take(self, vault: str, operation: str) -> Fault | None:
        """Remove and return the next fault scripted for ``operation`` on ``vault``, or ``None``."""
        with self._lock:
            for key in ((vault, operation), (None, operation)):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        return None

    def pending(self, *, vault: str | None = None, operation: str | None = None) -> int:
        """Return how many scripted faults are still waiting (filtered by vault and operation if given)."""
        with self._lock:
            return sum(
                len(queue)
                for (v, op), queue in self._queues.items()
                if (vault is None or v == vault) and (operation is None or op == operation)
            )

    def clear(self) -> None:
        """Forget every scripted fault."""
        with self._lock:
            self._queues.clear()


def _retry_after_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(max(0, math.ceil(value)))


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """Per-vault request limits per sliding window.

    The defaults are Key Vault's published numbers for a software-protected vault
    (event-grid-and-limits.md §d): "Software CREATE" RSA-2048/EC 20 per 10 s, "CREATE secret + IMPORT
    certificate + IMPORT key: 300 combined", "All other transactions: 4,000".

    Attributes:
        create: limit for the ``create`` operation.
        import_: limit for the ``import`` operation.
        other: limit for every other operation.
        window_seconds: the sliding window.
        retry_after: seconds to send in ``Retry-After`` with a 429: ``None`` sends no header (the real
            service's header is unconfirmed), ``0`` sends the time until the window frees a slot.
        classes: operation name → the class it counts against (``create``, ``import`` or ``other``).
    """

    create: int = 20
    import_: int = 300
    other: int = 4000
    window_seconds: float = 10.0
    retry_after: int | None = None
    classes: Mapping[str, str] = field(default_factory=lambda: {"create": "create", "import": "import"})

    def limit_of(self, request_class: str) -> int:
        """Return the limit of ``request_class`` (``create``, ``import`` or ``other``)."""
        return {"create": self.create, "import": self.import_}.get(request_class, self.other)


class Throttle:
    """Key Vault-style throttling: per vault, per class of request, over a sliding window of real time.

    Throttling runs on monotonic real time, not the emulator clock: moving the clock a month ahead must
    not reset a window. "Failed requests that return a 429 do not count towards the throttle limits."
    """

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._limits: ThrottleLimits | None = None
        self._windows: dict[tuple[str, str], deque[float]] = {}

    @property
    def limits(self) -> ThrottleLimits | None:
        """The limits in force, or ``None`` when throttling is off."""
        return self._limits

    @property
    def enabled(self) -> bool:
        """Whether throttling is on."""
        return self._limits is not None

    def enable(self, limits: ThrottleLimits | None = None) -> ThrottleLimits:
        """Turn throttling on with ``limits`` (Key Vault's defaults if omitted) and empty windows."""
        with self._lock:
            self._limits = limits or ThrottleLimits()
            self._windows.clear()
            return self._limits

    def disable(self) -> None:
        """Turn throttling off."""
        with self._lock:
            self._limits = None
            self._windows.clear()

    def admit(self, vault: str, operation: str) -> ApiResponse | None:
        """Count the request and return ``None``, or return the 429 answer when the window is full."""
        with self._lock:
            limits = self._limits
            if limits is None:
                return None
            request_class = limits.classes.get(operation, "other")
            now = self._monotonic()
            window = self._windows.setdefault((vault, request_class), deque())
            while window and window[0] <= now - limits.window_seconds:
                window.popleft()
            if len(window) < limits.limit_of(request_class):
                window.append(now)
                return None
            headers: dict[str, str] = {}
            if limits.retry_after is not None:
                seconds = limits.retry_after or math.ceil(window[0] + limits.window_seconds - now)
                headers["Retry-After"] = str(max(1, seconds))
            return ApiResponse(status=429, body=keyvault_error("Throttled", THROTTLED_MESSAGE), headers=headers)
