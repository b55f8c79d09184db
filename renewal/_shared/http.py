"""HTTP for every client that carries a credential or a CSR (CA adapters, Azure DNS, the topic, Key Vault).

- one ``send`` that never follows a redirect, refuses a server certificate that does not verify, and turns
  connection failures and timeouts into ``RetryableError``;
- the errors that name only the *host* of a refused redirect or an untrusted server;
- a ``requests`` session presenting a TLS client certificate;
- one ``Retry-After`` parser."""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from requests.adapters import HTTPAdapter

from renewal._shared.pem import pem
from renewal._shared.urls import host_of
from renewal.errors import ConfigurationError, PermanentError, RetryableError

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientCertificate",
    "new_session",
    "parse_retry_after",
    "redirect_refused",
    "retry_after_seconds",
    "send",
    "tls_untrusted",
    "tls_verification_failed",
]

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A TLS client certificate and its key, as loaded from an app setting.

    Attributes:
        certificate: the client certificate.
        key: its private key (kept in memory only; see ``new_session``).
        chain: intermediates to send along with it.
    """

    certificate: x509.Certificate
    key: PrivateKeyTypes
    chain: tuple[x509.Certificate, ...] = ()


class _ContextAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections use one ``SSLContext`` (holding the client certificate)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> Any:
        # requests' documented hook for TLS settings per connection pool; the stubs type the dict narrowly.
        attributes: Any = super().build_connection_pool_key_attributes(request, verify, cert)
        attributes[1]["ssl_context"] = self._context
        return attributes


def new_session(client_certificate: ClientCertificate | None = None) -> requests.Session:
    """A ``requests`` session, presenting ``client_certificate`` on HTTPS connections when given.

    The key reaches ``ssl`` through a file, as ``SSLContext.load_cert_chain`` only reads files: it is written
    encrypted under a one-time password, in a private (0700) directory, and deleted as soon as it is loaded.

    Raises:
        ConfigurationError: the certificate and key do not belong together.
    """
    session = requests.Session()
    if client_certificate is None:
        return session
    context = ssl.create_default_context()
    one_time = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="renewal-tls-") as directory:
        os.chmod(directory, 0o700)
        path = Path(directory) / "client.pem"
        body = client_certificate.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(one_time),
        ) + b"".join(pem(c).encode("ascii") for c in (client_certificate.certificate, *client_certificate.chain))
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
        try:
            context.load_cert_chain(path, password=one_time)
        except ssl.SSLError as exc:
            raise ConfigurationError(
                "RENEWAL_CA_PROFILES", "the TLS client certificate does not match its key"
            ) from exc
    session.mount("https://", _ContextAdapter(context))
    return session


def send(session: requests.Session, method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
    """Send one request without following a redirect; failures become our errors, naming ``what`` and a host only.

    Raises:
        PermanentError: reason ``ca_redirect_refused`` (any 3xx answer), ``ca_tls_untrusted`` (the server's
            certificate does not verify against the configured trust, or is not for the URL's host name).
        RetryableError: reason ``ca_unreachable`` (connection failure, other TLS failure, timeout).
    """
    # Every caller sends a credential or a CSR. requests keeps custom headers (X-Vault-Token) and, on 307/308,
    # the body when it follows a Location, even to another host or from https down to http: never follow one.
    kwargs["allow_redirects"] = False
    try:
        response = session.request(method, url, **kwargs)
    except requests.exceptions.SSLError as exc:
        if tls_verification_failed(exc):
            raise tls_untrusted(what, url, reason="ca_tls_untrusted") from exc
        raise RetryableError(
            f"cannot reach {what}: TLS failed ({type(exc).__name__})", reason="ca_unreachable"
        ) from exc
    except requests.Timeout as exc:
        raise RetryableError(f"{what} did not answer in time", reason="ca_unreachable") from exc
    except requests.RequestException as exc:
        raise RetryableError(f"cannot reach {what}: {type(exc).__name__}", reason="ca_unreachable") from exc
    if 300 <= response.status_code < 400:
        response.close()
        location = response.headers.get("Location")
        raise redirect_refused(what, response.status_code, location, url, reason="ca_redirect_refused")
    return response


def redirect_refused(what: str, status: int, location: str | None, base_url: str, *, reason: str) -> PermanentError:
    """The ``PermanentError`` for a 3xx answer that was not followed; names only the host ``location`` points at.

    ``location`` is the ``Location`` header (``None`` when absent); a relative one is resolved against ``base_url``.
    """
    target = host_of(urljoin(base_url, location)) if location else "no Location"
    return PermanentError(
        f"{what} answered HTTP {status}, redirecting to {target}; redirects are not followed, so nothing was "
        "sent there (configure the final URL)",
        reason=reason,
    )


def tls_verification_failed(exc: BaseException) -> bool:
    """Whether ``exc`` wraps a failed server certificate check (untrusted issuer, expired, wrong host name).

    requests, urllib3 and azure-core each wrap the ``ssl.SSLCertVerificationError``; other TLS failures (a
    handshake cut short, a client certificate the server refuses) are not verification failures.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 64:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        linked = (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            getattr(current, "inner_exception", None),
            *current.args,
        )
        pending.extend(e for e in linked if isinstance(e, BaseException))
    return False


def tls_untrusted(what: str, url: str, *, reason: str) -> PermanentError:
    """The ``PermanentError`` for a server certificate that does not verify; names only the URL's host."""
    return PermanentError(
        f"the TLS certificate of {what} at {host_of(url)} is not trusted or not issued for that host name (check "
        "the URL, and the CA bundle configured for a private CA); nothing was sent",
        reason=reason,
    )


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` value in seconds from ``now``, or ``None`` when absent or not understood.

    RFC 9110 §10.2.3: ``Retry-After = HTTP-date / delay-seconds``, where delay-seconds is a non-negative
    decimal integer; an HTTP-date already past gives 0.
    """
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # RFC 9110 §5.6.7: an HTTP-date is always GMT; email.utils leaves "-0000" and asctime dates naive.
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def retry_after_seconds(response: requests.Response, *, now: datetime | None = None) -> float | None:
    """The ``Retry-After`` header of ``response`` in seconds (see ``parse_retry_after``), if any."""
    return parse_retry_after(response.headers.get("Retry-After"), now=now or datetime.now(UTC))
