"""The renewal app's errors, in one tree.

Every error says whether retrying can help::

    RenewalError
    ├── RetryableError        a later attempt may succeed (outage, timeout, 5xx, throttling, CA still busy);
    │   │                     carries ``retry_after`` in seconds when the other side said when
    │   ├── ThrottledError        the service said "too many requests" (429): the same call, soon, is the cure
    │   └── ClaimLostError        another worker took the renewal over: stop, it finishes it
    └── PermanentError        retrying the same thing gives the same answer
        ├── ConfigurationError    a setting is missing or malformed; names the setting
        └── VerificationError     the CA's answer does not fit the CSR; nothing is merged

Adapters and shells translate vendor and SDK errors into these at their edge, always with ``raise ... from exc``.
No message ever contains a key, token, password, webhook secret or PEM body.
"""

from __future__ import annotations

__all__ = [
    "ClaimLostError",
    "ConfigurationError",
    "PermanentError",
    "RenewalError",
    "RetryableError",
    "ThrottledError",
    "VerificationError",
]


class RenewalError(Exception):
    """Base of every error the renewal app raises on purpose.

    Attributes:
        reason: a short machine reason (``snake_case``) that ends up in the outcome.
    """

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class RetryableError(RenewalError):
    """A transient failure: trying again later may succeed.

    Attributes:
        retry_after: seconds the other side asked us to wait, or ``None`` when it did not say.
    """

    reason = "transient_error"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class ThrottledError(RetryableError):
    """The service throttled the request (HTTP 429); repeating it after ``retry_after`` (or shortly) is safe.

    Key Vault does not count a 429 against its limits, so retrying a throttled create or merge cannot overdo it.
    """

    reason = "throttled"


class ClaimLostError(RetryableError):
    """Another worker changed the renewal's record since this one read it: stop, it owns the renewal now."""

    reason = "claim_lost"


class PermanentError(RenewalError):
    """A failure that repeating the same request cannot fix."""

    reason = "permanent_error"


class ConfigurationError(PermanentError):
    """A setting is missing or malformed.

    Attributes:
        setting: the name of the app setting at fault.
    """

    reason = "bad_configuration"

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting}: {problem}")
        self.setting = setting


class VerificationError(PermanentError):
    """The CA's answer does not match the CSR, so it must not be merged."""

    reason = "verification_failed"
