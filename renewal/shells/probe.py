"""What an endpoint serves: connect over TLS, read the leaf certificate it presents, and give its thumbprint.

The sweep probes each pushed target's endpoint until it presents the new version (docs/targets.md); nothing here
waits or retries, so one invocation never blocks on a service that picks a certificate up hours later.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import ssl
from typing import TYPE_CHECKING

from renewal.errors import PermanentError, RetryableError

if TYPE_CHECKING:
    from renewal.targets import ProbeEndpoint

__all__ = ["probe", "thumbprint_of"]

# A DNS name as a probe may name it: ASCII labels of letters, digits and hyphens (an IDN in its xn-- form).
_DNS_NAME = re.compile(
    r"(?=.{1,253}\.?$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?"
)


def thumbprint_of(certificate_der: bytes) -> str:
    """The lowercase hex SHA-1 of a certificate's DER, as Key Vault's ``x5t`` and the portal show it."""
    return hashlib.sha1(certificate_der, usedforsecurity=False).hexdigest()


def probe(endpoint: ProbeEndpoint, *, timeout: float) -> str:
    """Connect to ``endpoint`` over TLS (with its SNI name) and return the thumbprint of the leaf it presents.

    The chain is not validated, on purpose: the question is not "is this certificate trusted" but "is this the
    exact version we merged", and comparing the leaf's thumbprint with the new version's answers it more strictly
    than any chain check could (a valid certificate of the previous version would pass one). Nothing is sent after
    the handshake, so no credential is at stake.

    Raises:
        PermanentError: the host or SNI name is not an ASCII host name or an IP address (reason
            ``bad_configuration``); IDNs must be given in their ``xn--`` form.
        RetryableError: the endpoint cannot be reached, times out, fails the handshake or presents no
            certificate (reason ``probe_unreachable`` or ``probe_tls_failed``).
    """
    host = _checked_host(endpoint.host, "host")
    sni = _checked_host(endpoint.sni, "sni") if endpoint.sni else None
    if sni is None and not _is_ip(host):
        sni = host
    if sni is not None and _is_ip(sni):
        # RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
        sni = None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    where = f"{host}:{endpoint.port}"
    try:
        with (
            socket.create_connection((host, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as exc:
        raise RetryableError(
            f"the TLS handshake with {where} failed ({exc.reason or type(exc).__name__})", reason="probe_tls_failed"
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise RetryableError(
            f"{where} could not be reached to probe it ({type(exc).__name__})", reason="probe_unreachable"
        ) from exc
    if not der:
        raise RetryableError(f"{where} presented no certificate", reason="probe_tls_failed")
    return thumbprint_of(der)


def _checked_host(name: str, field: str) -> str:
    """``name`` lower-cased, when it is an ASCII DNS name or an IP address; the whole name must match."""
    if not name.isascii():
        raise PermanentError(
            f"the probe's {field} is not ASCII; give an internationalized name in its xn-- form",
            reason="bad_configuration",
        )
    lowered = name.strip().lower()
    if _is_ip(lowered.strip("[]")):
        return lowered.strip("[]")
    if not _DNS_NAME.fullmatch(lowered):
        raise PermanentError(
            f"the probe's {field} {lowered[:80]!r} is not a host name or an IP address", reason="bad_configuration"
        )
    return lowered.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
