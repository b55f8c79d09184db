"""How fast each vault may be asked to create certificates: the pacing options, read from the app settings.

Key Vault throttles certificate creates per vault (they count against its key CREATE limit: 20 per 10 s for
software keys, 10 for HSM); ``renewal.shells.pacing`` holds every instance to these options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from renewal.errors import ConfigurationError

__all__ = ["CREATE_RATE", "CREATE_RATES", "DEFAULT_CREATES_PER_WINDOW", "WINDOW_SECONDS", "PacingOptions"]

# Key Vault's documented software-key CREATE limit per vault and region (HSM keys: 10).
DEFAULT_CREATES_PER_WINDOW = 20
WINDOW_SECONDS = 10.0
CREATE_RATE = "RENEWAL_VAULT_CREATE_RATE"
CREATE_RATES = "RENEWAL_VAULT_CREATE_RATES"


@dataclass(frozen=True, slots=True, kw_only=True)
class PacingOptions:
    """How fast each vault may be asked to create certificates.

    Attributes:
        creates_per_window: creates per ``window_seconds`` per vault (``RENEWAL_VAULT_CREATE_RATE``, default 20,
            Key Vault's software-key limit); 0 turns pacing off.
        per_vault: vault name → its own rate (``RENEWAL_VAULT_CREATE_RATES`` as ``name=10,other=5``), for HSM
            vaults (10) or vaults shared with other writers.
        window_seconds: Key Vault's throttling window.
        guard_seconds: added to the window, to absorb how late a send may be after its reservation (sleep
            overshoot, the request's latency, clock skew between instances); 0.5 s costs 5% of the rate, and on an
            overloaded 2-core machine sends were seen arriving a few hundred milliseconds after their slot.
        max_wait_seconds: the longest a create waits for its slot inside an invocation; further away, it defers.
    """

    creates_per_window: int = DEFAULT_CREATES_PER_WINDOW
    per_vault: Mapping[str, int] = field(default_factory=dict)
    window_seconds: float = WINDOW_SECONDS
    guard_seconds: float = 0.5
    max_wait_seconds: float = 15.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PacingOptions:
        """Read ``RENEWAL_VAULT_CREATE_RATE`` and ``RENEWAL_VAULT_CREATE_RATES``.

        Raises:
            ConfigurationError: a rate is not a whole number from 0 up, or an override is not ``name=rate``.
        """
        rate = _rate(environ.get(CREATE_RATE, "").strip() or str(DEFAULT_CREATES_PER_WINDOW), CREATE_RATE)
        overrides: dict[str, int] = {}
        for part in environ.get(CREATE_RATES, "").split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ConfigurationError(CREATE_RATES, f"expects name=rate pairs separated by commas, not {part!r}")
            overrides[name.strip().lower()] = _rate(value.strip(), CREATE_RATES)
        return cls(creates_per_window=rate, per_vault=overrides)

    @property
    def enabled(self) -> bool:
        """Whether any vault is paced."""
        return self.creates_per_window > 0 or any(rate > 0 for rate in self.per_vault.values())

    def limit_for(self, key: str) -> int:
        """The rate of the vault with pacing key ``key`` (its host): an override names the vault (the host's
        first label, ``kv1`` of ``kv1.vault.azure.net``) or the whole host."""
        host = key.lower()
        for name in (host, host.split(".", 1)[0]):
            if name in self.per_vault:
                return self.per_vault[name]
        return self.creates_per_window

    @property
    def span_seconds(self) -> float:
        """The span within which at most a vault's rate of creates are reserved."""
        return self.window_seconds + self.guard_seconds


def _rate(text: str, setting: str) -> int:
    try:
        rate = int(text)
    except ValueError:
        raise ConfigurationError(setting, f"expects a whole number of creates per 10 seconds, not {text!r}") from None
    if rate < 0:
        raise ConfigurationError(setting, f"expects a rate from 0 up (0 turns pacing off), not {rate}")
    return rate
