"""CA adapters: the protocol they implement and the explicit registry of the ones shipped.

A CA profile names its adapter by a key of ``ADAPTERS``; ``adapter_for`` builds the adapter for a profile.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from renewal.ca._protocol import (
    CAAdapter,
    CAProfile,
    Issued,
    Pending,
    RenewalInfoSource,
    ReplacingCAAdapter,
    SigningRequest,
)
from renewal.ca.local import LocalCA
from renewal.errors import ConfigurationError

__all__ = [
    "ADAPTERS",
    "CAAdapter",
    "CAProfile",
    "Issued",
    "LocalCA",
    "Pending",
    "RenewalInfoSource",
    "ReplacingCAAdapter",
    "SigningRequest",
    "adapter_for",
]

AdapterFactory = Callable[[CAProfile, Mapping[str, str]], CAAdapter]


def _imported_on_first_use(module: str, class_name: str) -> AdapterFactory:
    """A factory that imports the adapter's module only when a profile uses it, keeping indexing fast."""

    def factory(profile: CAProfile, environ: Mapping[str, str]) -> CAAdapter:
        adapter_class = getattr(importlib.import_module(module), class_name)
        return adapter_class.from_profile(profile, environ)  # type: ignore[no-any-return]

    return factory


ADAPTERS: dict[str, AdapterFactory] = {
    "local": LocalCA.from_profile,
    "acme": _imported_on_first_use("renewal.ca.acme", "AcmeCA"),
    "cfssl": _imported_on_first_use("renewal.ca.cfssl", "CfsslCA"),
    "vault": _imported_on_first_use("renewal.ca.vault", "VaultPKI"),
    "ejbca": _imported_on_first_use("renewal.ca.ejbca", "EjbcaCA"),
    "adcs": _imported_on_first_use("renewal.ca.adcs", "AdcsCA"),
    "est": _imported_on_first_use("renewal.ca.est", "EstCA"),
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
