"""pebble-challtestsrv as a DNS provider: for tests and local development against Pebble, never for production.

Options (``dns_options`` of an ACME profile with ``"dns_provider": "challtestsrv"``):

- ``management_url`` (string, required): challtestsrv's management API, e.g. ``http://127.0.0.1:8055``; plain
  http is accepted on loopback only.

Its management API: ``POST /set-txt {"host": "<fqdn>.", "value": "<value>"}`` adds a value, ``POST /clear-txt
{"host": "<fqdn>."}`` removes every value of the host. challtestsrv cannot remove one value alone, so
``delete_txt`` clears the host.
"""

from __future__ import annotations

from collections.abc import Mapping

import requests

from renewal._shared.urls import url_problem
from renewal.errors import ConfigurationError, PermanentError, RetryableError

__all__ = ["ChallTestSrvDns"]

_OPTIONS = frozenset({"management_url"})


class ChallTestSrvDns:
    """Publishes dns-01 TXT records through pebble-challtestsrv's management API."""

    def __init__(self, management_url: str, *, timeout_seconds: float = 10.0) -> None:
        self._url = management_url.rstrip("/")
        self._timeout = timeout_seconds

    @classmethod
    def from_options(cls, options: Mapping[str, object], environ: Mapping[str, str]) -> ChallTestSrvDns:
        """Build the provider from ``dns_options``.

        Raises:
            ConfigurationError: ``management_url`` is missing or not a usable URL, or an option is unknown.
        """
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise ConfigurationError(
                "RENEWAL_CA_PROFILES", f"unknown dns_options {', '.join(unknown)} for challtestsrv"
            )
        url = options.get("management_url")
        if not isinstance(url, str) or not url.strip():
            raise ConfigurationError("RENEWAL_CA_PROFILES", "dns_options.management_url is required for challtestsrv")
        fault = url_problem(url.strip())
        if fault:
            raise ConfigurationError("RENEWAL_CA_PROFILES", f"dns_options.management_url: {fault.removeprefix('url ')}")
        return cls(url.strip())

    def set_txt(self, name: str, value: str) -> None:
        """Add ``value`` under ``name``.

        Raises:
            RetryableError: challtestsrv is unreachable or failed; PermanentError: it refused the request.
        """
        self._post("set-txt", {"host": _fqdn(name), "value": value})

    def delete_txt(self, name: str, value: str) -> None:
        """Remove the values under ``name`` (challtestsrv clears the whole host).

        Raises:
            RetryableError: challtestsrv is unreachable or failed; PermanentError: it refused the request.
        """
        self._post("clear-txt", {"host": _fqdn(name)})

    def _post(self, path: str, body: Mapping[str, str]) -> None:
        try:
            response = requests.post(f"{self._url}/{path}", json=body, timeout=self._timeout)
        except requests.RequestException as exc:
            raise RetryableError(f"challtestsrv at {self._url} is unreachable", reason="dns_unreachable") from exc
        if response.status_code >= 500:
            raise RetryableError(
                f"challtestsrv {path} failed with HTTP {response.status_code}", reason="dns_unavailable"
            )
        if response.status_code >= 400:
            raise PermanentError(f"challtestsrv refused {path}: HTTP {response.status_code}", reason="dns_rejected")


def _fqdn(name: str) -> str:
    return name.rstrip(".") + "."
