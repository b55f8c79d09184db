"""CA adapters: the protocol they implement and the explicit registry of the ones shipped.

A CA profile names its adapter by a key of ``ADAPTERS``, or by ``package.module:Class`` for an adapter of one's
own (any class with ``from_profile(profile, environ)`` that implements ``CAAdapter``). Each is imported only when
a profile uses it, so that importing this package (or the protocol's value types) loads no adapter, no HTTP
client and no cryptography. Tests pass adapter instances to the runtime
(``renewal.flow.runtime.build_runtime(adapters=...)``) or name their fakes by module path; nothing changes
this registry.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

from renewal.ca._protocol import (
    CAAdapter,
    CAProfile,
    DeferringCAAdapter,
    HealthChecked,
    Issued,
    Pending,
    RenewalInfoSource,
    ReplacingCAAdapter,
    RevokingCAAdapter,
    SigningRequest,
)
from renewal.errors import ConfigurationError

__all__ = [
    "ADAPTERS",
    "AdapterFactory",
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
    "adapter_for",
    "adapter_location",
]

AdapterFactory = Callable[[CAProfile, Mapping[str, str]], CAAdapter]

# adapter name -> (module, class); the class's ``from_profile(profile, environ)`` builds it.
ADAPTERS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "local": ("renewal.ca.local", "LocalCA"),
        "acme": ("renewal.ca.acme", "AcmeCA"),
        "cfssl": ("renewal.ca.cfssl", "CfsslCA"),
        "vault": ("renewal.ca.vault", "VaultPKI"),
        "ejbca": ("renewal.ca.ejbca", "EjbcaCA"),
        "adcs": ("renewal.ca.adcs", "AdcsCA"),
        "est": ("renewal.ca.est", "EstCA"),
    }
)


# An adapter of one's own: "package.module:Class".
_ADAPTER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def adapter_location(name: str) -> tuple[str, str] | None:
    """The ``(module, class)`` an adapter name stands for, or ``None`` when it names no adapter."""
    if name in ADAPTERS:
        return ADAPTERS[name]
    if _ADAPTER_PATH.fullmatch(name):
        module, _, class_name = name.partition(":")
        return module, class_name
    return None


def adapter_for(profile: CAProfile, environ: Mapping[str, str]) -> CAAdapter:
    """Build the adapter ``profile`` names, resolving credential settings from ``environ``.

    Raises:
        ConfigurationError: the adapter is unknown, cannot be imported, or its options are bad (names the setting
            at fault).
    """
    location = adapter_location(profile.adapter)
    if location is None:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigurationError(
            "RENEWAL_CA_PROFILES",
            f"profile {profile.name!r}: unknown adapter {profile.adapter[:60]!r} (known: {known}, or module:Class)",
        )
    module, class_name = location
    try:
        adapter_class = getattr(importlib.import_module(module), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            "RENEWAL_CA_PROFILES", f"profile {profile.name!r}: adapter {profile.adapter[:60]!r} cannot be imported"
        ) from exc
    return adapter_class.from_profile(profile, environ)  # type: ignore[no-any-return]
