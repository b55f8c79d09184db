"""HTTPS client plumbing shared by the CA adapters that speak HTTP (Vault, EJBCA, AD CS, EST).

Internal: it may change. It holds what those adapters would otherwise each repeat:

- reading a profile's options with errors that name the profile and the option (never a secret);
- the endpoint check (https, or plain http on loopback for tests) and the TLS trust (``ca_bundle_path``);
- the TLS client certificate, loaded from an app setting holding a Key Vault certificate's secret (base64
  PKCS#12) or PEM, into an ``ssl.SSLContext`` that a ``requests`` session uses;
- one ``send`` that never follows a redirect (every caller carries a credential or a CSR), refuses a server
  certificate that does not verify, and turns connection failures and timeouts into ``RetryableError``;
- the helpers that name only the *host* of a refused redirect or an untrusted server, for every client that
  sends credentials (CA adapters, Azure DNS, the Key Vault shell, the outcome topic).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from requests.adapters import HTTPAdapter

from renewal.ca._protocol import CAProfile
from renewal.config import resolve_secret_setting, url_problem
from renewal.errors import ConfigurationError, PermanentError, RetryableError

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClientCertificate",
    "ProfileOptions",
    "client_certificate_from_settings",
    "host_of",
    "new_session",
    "order_chain",
    "pem",
    "redirect_refused",
    "retry_after_seconds",
    "send",
    "tls_untrusted",
    "tls_verification_failed",
]

_PROFILES_SETTING = "RENEWAL_CA_PROFILES"
DEFAULT_TIMEOUT = 30.0
# What urlsplit's hostname may look like when we repeat it in a message (lower-cased by urlsplit).
_PRINTABLE_HOST = re.compile(r"[a-z0-9._:-]{1,253}")


# Options every adapter accepts besides its own: the trust anchors its answers are verified against (read by
# renewal.anchors, not by the adapter; docs/verification.md).
COMMON_OPTIONS = frozenset({"trust_anchor_path", "trust_anchor_setting"})


class ProfileOptions:
    """A profile's options, read with errors that name ``RENEWAL_CA_PROFILES``, the profile and the option."""

    def __init__(self, profile: CAProfile, allowed: frozenset[str]) -> None:
        """Refuse options the adapter does not know (``COMMON_OPTIONS`` are always known).

        Raises:
            ConfigurationError: an option is neither in ``allowed`` nor in ``COMMON_OPTIONS``.
        """
        self._profile = profile
        unknown = sorted(set(profile.options) - allowed - COMMON_OPTIONS)
        if unknown:
            raise self.problem(f"unknown option(s) {', '.join(unknown)} for adapter {profile.adapter}")

    def problem(self, text: str) -> ConfigurationError:
        """A ``ConfigurationError`` about this profile."""
        return ConfigurationError(_PROFILES_SETTING, f"profile {self._profile.name!r}: {text}")

    def string(self, name: str, default: str | None = None) -> str | None:
        """A non-empty string option, stripped, or ``default`` when absent."""
        value = self._profile.options.get(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.problem(f"option {name} must be a non-empty string")
        return value.strip()

    def required(self, name: str) -> str:
        """A non-empty string option that must be given."""
        value = self.string(name)
        if value is None:
            raise self.problem(f"option {name} is required")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """A ``true``/``false`` option."""
        value = self._profile.options.get(name, default)
        if not isinstance(value, bool):
            raise self.problem(f"option {name} must be true or false")
        return value

    def number(self, name: str, default: float) -> float:
        """A positive number option."""
        value = self._profile.options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.problem(f"option {name} must be a positive number")
        return float(value)

    def strings(self, name: str) -> tuple[str, ...]:
        """A list-of-strings option (absent: empty)."""
        value = self._profile.options.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.problem(f"option {name} must be a list of non-empty strings")
        return tuple(v.strip() for v in value)

    def url(self, name: str = "url") -> str:
        """A required endpoint URL: https, or plain http on loopback; without a trailing slash."""
        value = self.required(name)
        problem = url_problem(value)
        if problem is not None:
            raise self.problem(f"option {name}: {problem.removeprefix('url ')}")
        return value.rstrip("/")

    def verify(self) -> str | bool:
        """``requests``' ``verify=``: the ``ca_bundle_path`` file when given, else the system trust."""
        path = self.string("ca_bundle_path")
        if path is None:
            return True
        if not Path(path).is_file():
            raise self.problem(f"ca_bundle_path {path!r} is not a readable file")
        return path


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


def client_certificate_from_settings(options: ProfileOptions, environ: Mapping[str, str]) -> ClientCertificate | None:
    """Load the client certificate the options name, from ``client_pfx_setting`` or ``client_pem_setting``.

    ``client_pfx_setting`` names an app setting holding base64 PKCS#12, which is what a Key Vault reference to
    a Key Vault certificate's *secret* resolves to (``client_pfx_password_setting`` when it has a password);
    ``client_pem_setting`` names one holding the PEM certificate and unencrypted key, in either order.

    Raises:
        ConfigurationError: both settings are given, or a password without the PKCS#12, or the setting cannot
            be read as a certificate with its key (names the setting, never its value).
    """
    pfx_setting = options.string("client_pfx_setting")
    pem_setting = options.string("client_pem_setting")
    password_setting = options.string("client_pfx_password_setting")
    if pfx_setting and pem_setting:
        raise options.problem("give client_pfx_setting or client_pem_setting, not both")
    if password_setting and not pfx_setting:
        raise options.problem("client_pfx_password_setting goes with client_pfx_setting")
    if pfx_setting:
        password = resolve_secret_setting(environ, password_setting).encode() if password_setting else None
        try:
            data = base64.b64decode(resolve_secret_setting(environ, pfx_setting), validate=True)
            key, certificate, additional = pkcs12.load_key_and_certificates(data, password)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ConfigurationError(pfx_setting, "is not a base64 PKCS#12 (or its password is wrong)") from exc
        if key is None or certificate is None:
            raise ConfigurationError(pfx_setting, "holds no certificate with its private key")
        return ClientCertificate(certificate, key, tuple(additional))
    if pem_setting:
        text = resolve_secret_setting(environ, pem_setting)
        # App settings are often entered on one line with literal "\n" escapes.
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        data = text.encode("ascii", errors="replace")
        try:
            certificates = x509.load_pem_x509_certificates(data)
            pem_key = serialization.load_pem_private_key(data, None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                pem_setting, "must hold a PEM certificate and its unencrypted PEM private key"
            ) from exc
        return ClientCertificate(certificates[0], pem_key, tuple(certificates[1:]))
    return None


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
            raise ConfigurationError(_PROFILES_SETTING, "the TLS client certificate does not match its key") from exc
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


def host_of(url: str | None) -> str:
    """The host name of ``url``, for a message: never its scheme, userinfo, port, path or query."""
    try:
        host = urlsplit(url or "").hostname
    except ValueError:
        host = None
    if not host or not _PRINTABLE_HOST.fullmatch(host):
        return "an unreadable host"
    return host


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


def retry_after_seconds(response: requests.Response, *, now: datetime | None = None) -> float | None:
    """The ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) in seconds, if any."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def pem(certificate: x509.Certificate) -> str:
    """One certificate as PEM text."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def order_chain(leaf: x509.Certificate, others: list[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The issuers of ``leaf`` among ``others``, nearest first, by matching issuer to subject.

    The leaf itself and duplicates are dropped; certificates that do not chain up from the leaf are kept, in
    their given order, after the ones that do (a CA may send a cross-certificate we cannot place).
    """
    remaining: list[x509.Certificate] = []
    for certificate in others:
        if certificate != leaf and certificate not in remaining:
            remaining.append(certificate)
    ordered: list[x509.Certificate] = []
    current = leaf
    while True:
        parent = next((c for c in remaining if c.subject == current.issuer), None)
        if parent is None or current.issuer == current.subject:
            break
        ordered.append(parent)
        remaining.remove(parent)
        current = parent
    return (*ordered, *remaining)
