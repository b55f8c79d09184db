"""EST (RFC 7030): enroll Key Vault's CSR with ``simpleenroll`` (or ``simplereenroll``); the chain from ``/cacerts``.

Profile options (``RENEWAL_CA_PROFILES``, adapter ``est``):

===============================  ======  =============  ========================================================
option                           type    default        meaning
===============================  ======  =============  ========================================================
``url``                          string  (required)     the EST server, ``https://est.example`` (the
                                                        ``/.well-known/est`` path is added)
``label``                        string  none           RFC 7030 §3.2.2 CA label: ``/.well-known/est/{label}/``
``reenroll``                     bool    ``false``      use ``simplereenroll`` instead of ``simpleenroll``
``username``                     string  none           HTTP Basic user (with ``password_setting``)
``password_setting``             string  none           app setting holding the HTTP Basic password
``client_pfx_setting``           string  none           app setting holding a base64 PKCS#12 TLS client
                                                        certificate (a Key Vault certificate's secret)
``client_pfx_password_setting``  string  none           app setting holding that PKCS#12's password
``client_pem_setting``           string  none           app setting holding PEM client certificate + key
``ca_bundle_path``               string  system trust   PEM file of the CA that signed the EST server's TLS cert
``ca_bundle_setting``            string  none           app setting holding that PEM, instead of the file
``timeout``                      number  ``30``         seconds per HTTP request
===============================  ======  =============  ========================================================

At least one way to authenticate is given: HTTP Basic, a TLS client certificate, or both. Example::

    {"appliance-est": {"adapter": "est", "url": "https://est.corp.example", "label": "servers",
                       "username": "renewal", "password_setting": "EST_PASSWORD"}}

About ``simplereenroll``: RFC 7030 §4.2.2 expects the client to authenticate with the certificate being renewed.
Key Vault holds that certificate's key and never releases it, so this app cannot present it: ``reenroll`` is only
useful with HTTP Basic or a separate TLS client certificate that the EST server accepts for re-enrollment.

Deferral: RFC 7030 §4.2.3 lets the server answer 202 with ``Retry-After``, and the client then repeats the same
request. The ``Pending`` reference therefore carries the CSR itself (base64url of its DER, about 1 KB), so ``poll``
needs no state of its own.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from requests.auth import HTTPBasicAuth

from renewal._shared.http import DEFAULT_TIMEOUT, new_session, retry_after_seconds, send
from renewal._shared.pem import order_chain, pem
from renewal.ca._options import (
    Check,
    ClientCertificateOptions,
    HttpsUrl,
    OptionError,
    Seconds,
    SecretSetting,
    client_certificate,
    parse_options,
    retirement_options,
    tls_verify,
    together,
)
from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.errors import PermanentError, RetryableError

__all__ = ["EstCA", "EstOptions"]

# RFC 7030 §3.2.2: the label is one path segment.
_LABEL = Check(lambda label: label.replace("-", "").replace("_", "").isalnum(), "letters, digits, '-' or '_'")
# When a 202 comes without Retry-After, wait this long (seconds) before polling.
_DEFAULT_RETRY_AFTER = 60.0
_DER, _SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class EstOptions(ClientCertificateOptions):
    """An ``est`` profile's options (the table above)."""

    url: HttpsUrl
    label: Annotated[str, _LABEL] | None = None
    reenroll: bool = False
    username: str | None = None
    password_setting: SecretSetting | None = None
    timeout: Seconds = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        ClientCertificateOptions.__post_init__(self)
        together(self, "username", "password_setting")
        if self.username is None and self.client_pfx_setting is None and self.client_pem_setting is None:
            raise OptionError(
                "give username+password_setting, client_pfx_setting or client_pem_setting (EST needs client auth)"
            )


class EstCA:
    """A CA adapter for an EST server (RFC 7030 simple enrollment)."""

    supports_deferral = True

    def __init__(
        self,
        *,
        base_url: str,
        reenroll: bool = False,
        auth: HTTPBasicAuth | None = None,
        session: requests.Session | None = None,
        verify: str | bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Enroll at ``base_url`` (``.../.well-known/est[/label]``)."""
        self._base = base_url
        self._operation = "simplereenroll" if reenroll else "simpleenroll"
        self._auth = auth
        self._session = session or new_session()
        self._verify = verify
        self._timeout = timeout

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> EstCA:
        """Build the adapter from a profile's options, resolving secret settings from ``environ``.

        Raises:
            ConfigurationError: an option is unknown, missing or malformed, or a secret setting is empty or
                unreadable (names the profile and option, or the setting; never a secret value).
        """
        options = parse_options(EstOptions, profile, environ)
        # RFC 7030 has no revocation operation: a profile asking for it is refused here, in plain words.
        retirement_options(profile, environ, revokes=False)
        auth = None
        if options.username is not None and options.password_setting is not None:
            auth = HTTPBasicAuth(options.username, options.password_setting.value)
        label = f"/{options.label}" if options.label else ""
        return cls(
            base_url=f"{options.url.rstrip('/')}/.well-known/est{label}",
            reenroll=options.reenroll,
            auth=auth,
            session=new_session(client_certificate(options)),
            verify=tls_verify(options),
            timeout=options.timeout,
        )

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Enroll ``request``'s CSR; ``Pending`` when the server answers 202 (RFC 7030 §4.2.3).

        Raises:
            PermanentError: reason ``csr_rejected`` (400 and other 4xx), ``auth_failed`` (401, 403),
                ``unknown_label`` (404), ``bad_ca_answer`` (not a certs-only PKCS#7 holding our certificate),
                ``ca_redirect_refused`` (a 3xx is never followed with the credentials and CSR),
                ``ca_tls_untrusted`` (the EST server's TLS certificate does not verify).
            RetryableError: reason ``ca_unavailable`` (5xx, 429) or ``ca_unreachable``.
        """
        return self._enroll(request.csr_der)

    def check(self) -> str:
        """Fetch the CA certificates (``GET .../cacerts``, RFC 7030 §4.1) with the configured TLS and credentials.

        EST has no call that proves the enrollment credentials without enrolling: this proves the server is
        reachable, its TLS certificate trusted, and the client certificate (if any) accepted in the handshake.

        Raises:
            PermanentError, RetryableError: as ``submit``.
        """
        certificates = self._ca_certificates()
        names = certificates[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        first = str(names[0].value) if names else certificates[0].subject.rfc4514_string()
        return f"EST server at {self._base}: {len(certificates)} CA certificate(s), first {first!r}"

    def poll(self, reference: str) -> Issued | Pending:
        """Repeat the deferred request (RFC 7030 §4.2.3) with the CSR the reference carries.

        Raises:
            PermanentError: reason ``unknown_reference`` (not a reference this adapter made), or as ``submit``.
            RetryableError: as ``submit``.
        """
        try:
            csr_der = base64.urlsafe_b64decode(reference + "=" * (-len(reference) % 4))
            x509.load_der_x509_csr(csr_der)
        except (binascii.Error, ValueError) as exc:
            raise PermanentError("the pending reference is not an EST request", reason="unknown_reference") from exc
        return self._enroll(csr_der)

    def _enroll(self, csr_der: bytes) -> Issued | Pending:
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError as exc:
            raise PermanentError("the CSR is not a readable DER PKCS#10 request", reason="csr_invalid") from exc
        # RFC 7030 §4.2.1: "the Simple PKI Request ... is an application/pkcs10 ... base64-encoded" body.
        response = send(
            self._session,
            "POST",
            f"{self._base}/{self._operation}",
            what="the EST server",
            data=base64.encodebytes(csr_der),
            headers={"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64"},
            auth=self._auth,
            verify=self._verify,
            timeout=self._timeout,
        )
        if response.status_code == 202:
            # RFC 7030 §4.2.3: 202 with Retry-After; the client repeats the same request after that delay.
            reference = base64.urlsafe_b64encode(csr_der).decode("ascii").rstrip("=")
            return Pending(reference, retry_after_seconds(response) or _DEFAULT_RETRY_AFTER)
        _raise_for_status(response, self._operation)
        certificates = _certs_only(response, self._operation)
        public_key = csr.public_key().public_bytes(_DER, _SPKI)
        leaf = next(
            (
                c
                for c in certificates
                if c.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                == public_key
            ),
            None,
        )
        if leaf is None:
            raise PermanentError(
                f"the EST {self._operation} answer holds no certificate for our key", reason="bad_ca_answer"
            )
        return Issued(pem(leaf), tuple(pem(c) for c in order_chain(leaf, [*certificates, *self._ca_certificates()])))

    def _ca_certificates(self) -> list[x509.Certificate]:
        # RFC 7030 §4.1: GET /cacerts answers a certs-only PKCS#7 of the current CA certificates.
        response = send(
            self._session,
            "GET",
            f"{self._base}/cacerts",
            what="the EST server",
            auth=self._auth,
            verify=self._verify,
            timeout=self._timeout,
        )
        _raise_for_status(response, "cacerts")
        return _certs_only(response, "cacerts")


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(_DER, _SPKI)


def _raise_for_status(response: requests.Response, operation: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    # RFC 7030 §4.2.3: an error answer may carry a human-readable text/plain body; keep a short, one-line piece.
    text = response.text if response.headers.get("Content-Type", "").startswith("text/plain") else ""
    detail = " ".join(text.split())[:160]
    message = f"EST {operation} failed ({status})" + (f": {detail}" if detail else "")
    if status == 429 or status >= 500:
        raise RetryableError(message, reason="ca_unavailable", retry_after=retry_after_seconds(response))
    reasons = {401: "auth_failed", 403: "auth_failed", 404: "unknown_label"}
    raise PermanentError(message, reason=reasons.get(status, "csr_rejected"))


def _certs_only(response: requests.Response, operation: str) -> list[x509.Certificate]:
    """The certificates of a base64 ``application/pkcs7-mime; smime-type=certs-only`` body (RFC 7030 §4.1.3)."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/pkcs7-mime":
        raise PermanentError(f"the EST {operation} answer is not application/pkcs7-mime", reason="bad_ca_answer")
    try:
        certificates = pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content))
    except (binascii.Error, ValueError) as exc:
        raise PermanentError(f"the EST {operation} answer is not a base64 PKCS#7", reason="bad_ca_answer") from exc
    if not certificates:
        raise PermanentError(f"the EST {operation} answer holds no certificate", reason="bad_ca_answer")
    return certificates
