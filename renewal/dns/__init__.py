"""DNS providers for ACME dns-01 challenges: one small protocol and the explicit registry of the ones shipped.

A provider publishes and removes TXT records (RFC 8555 §8.4: the record ``_acme-challenge.<domain>`` holds the
base64url SHA-256 of the key authorization). Names are absolute domain names without the trailing dot. Several
values may live under one name at once (a wildcard and its base domain share ``_acme-challenge.<domain>``), so
``set_txt`` adds a value and ``delete_txt`` removes only that value.

Providers raise ``RetryableError`` for failures that may pass (outage, throttling, 5xx), ``PermanentError`` for the
rest (no permission, no such zone), and ``ConfigurationError`` for bad options; nothing vendor-specific escapes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from renewal.errors import ConfigurationError

__all__ = ["PROVIDERS", "DnsProvider", "dns_provider_for"]


@runtime_checkable
class DnsProvider(Protocol):
    """Publish and remove the TXT records of dns-01 challenges."""

    def set_txt(self, name: str, value: str) -> None:
        """Add ``value`` to the TXT record set ``name`` (creating it), keeping other values."""
        ...

    def delete_txt(self, name: str, value: str) -> None:
        """Remove ``value`` from the TXT record set ``name``; removing an absent value is not an error."""
        ...


ProviderFactory = Callable[[Mapping[str, object], Mapping[str, str]], DnsProvider]


def _imported_on_first_use(module: str, class_name: str) -> ProviderFactory:
    def factory(options: Mapping[str, object], environ: Mapping[str, str]) -> DnsProvider:
        try:
            provider_class = getattr(importlib.import_module(module), class_name)
        except ModuleNotFoundError as exc:
            # The local stack's providers (devstack/) are not deployed with the Function App.
            raise ConfigurationError(
                "RENEWAL_CA_PROFILES", f"dns_provider module {module} is not installed (local stack only?)"
            ) from exc
        return provider_class.from_options(options, environ)  # type: ignore[no-any-return]

    return factory


PROVIDERS: Mapping[str, ProviderFactory] = MappingProxyType(
    {
        "azure": _imported_on_first_use("renewal.dns.azure", "AzureDns"),
        # pebble-challtestsrv, for the tests and the local stack; it lives in devstack/, which is not deployed.
        "challtestsrv": _imported_on_first_use("devstack.challtestsrv_dns", "ChallTestSrvDns"),
    }
)


def dns_provider_for(name: str, options: Mapping[str, object], environ: Mapping[str, str]) -> DnsProvider:
    """Build the DNS provider ``name`` from its options.

    Raises:
        ConfigurationError: the provider is unknown or its options are bad.
    """
    factory = PROVIDERS.get(name)
    if factory is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigurationError("RENEWAL_CA_PROFILES", f"unknown dns_provider {name!r} (known: {known})")
    return factory(options, environ)
