"""CA adapters: the protocol they implement and the explicit registry of the ones shipped.

A CA profile names its adapter by a key of ``ADAPTERS``; ``adapter_for`` builds the adapter for a profile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from renewal.ca._protocol import CAAdapter, CAProfile, Issued, Pending, SigningRequest
from renewal.ca.local import LocalCA
from renewal.errors import ConfigurationError

__all__ = ["ADAPTERS", "CAAdapter", "CAProfile", "Issued", "LocalCA", "Pending", "SigningRequest", "adapter_for"]

ADAPTERS: dict[str, Callable[[CAProfile, Mapping[str, str]], CAAdapter]] = {
    "local": LocalCA.from_profile,
}


def adapter_for(profile: CAProfile, environ: Mapping[str, str]) -> CAAdapter:
    """Build the adapter ``profile`` names, resolving credential settings from ``environ``.

    Raises:
        ConfigurationError: the adapter is unknown or its options are bad (names the setting at fault).
    """
    factory = ADAPTERS.get(profile.adapter)
    if factory is None:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigurationError(
            "RENEWAL_CA_PROFILES", f"profile {profile.name!r}: unknown adapter {profile.adapter!r} (known: {known})"
        )
    return factory(profile, environ)
