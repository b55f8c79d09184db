"""Microsoft AD CS web enrollment (certsrv): submit Key Vault's CSR with a template, fetch by request id.

Profile options (``RENEWAL_CA_PROFILES``, adapter ``adcs``):

=====================  ======  ============  ==================================================================
option                 type    default       meaning
=====================  ======  ============  ==================================================================
``url``                string  (required)    the web enrollment server, ``https://ca.corp.example`` (``/certsrv``
                                             is added)
``template``           string  (required)    the certificate template's name (not its display name), e.g.
                                             ``WebServer``
``auth``               string  (required)    ``basic`` (HTTP Basic, over HTTPS) or ``ntlm``
``username``           string  (required)    the enrolling account, ``CORP\\svc-renewal`` or
                                             ``svc-renewal@corp.example``
``password_setting``   string  (required)    app setting holding that account's password
``ca_bundle_path``     string  system trust  PEM file of the CA that signed the IIS server's TLS certificate
``ca_bundle_setting``  string  none          app setting holding that PEM, instead of the file
``timeout``            number  ``30``        seconds per HTTP request
=====================  ======  ============  ==================================================================

Example::

    {"corp-adcs": {"adapter": "adcs", "url": "https://ca01.corp.example", "template": "KeyVaultWebServer",
                   "auth": "ntlm", "username": "CORP\\\\svc-renewal", "password_setting": "ADCS_PASSWORD"}}

Kerberos (``Negotiate``) is not offered: it needs ``requests-gssapi`` and a Kerberos configuration on the
Function App's host, which the Azure Functions workers do not have. Enable NTLM (or Basic over HTTPS) on the
``/certsrv`` IIS application, or put a reverse proxy that authenticates for us in front of it.

Deferral: a template with "CA certificate manager approval" makes certsrv answer "Certificate Pending"; the
request id is the ``Pending`` reference, and ``poll`` fetches ``certnew.cer`` with it until the request is issued
or denied.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from requests.auth import AuthBase, HTTPBasicAuth

from renewal._shared.http import DEFAULT_TIMEOUT, new_session, send
from renewal._shared.pem import order_chain, pem
from renewal.ca._options import (
    CaBundleOptions,
    Check,
    HttpsUrl,
    Seconds,
    SecretSetting,
    parse_options,
    retirement_options,
    tls_verify,
)
from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.errors import PermanentError, RetryableError

__all__ = ["AdcsCA", "AdcsOptions"]

# The template is sent as the CertAttrib line "CertificateTemplate:<name>": a line break would add attributes.
_TEMPLATE_NAME = Check(lambda name: not re.search(r"[\r\n:]", name), "a template name without ':' or line breaks")
_AUTH_METHOD = Check(
    lambda method: method in ("basic", "ntlm"), "'basic' or 'ntlm' (Kerberos: see the adcs adapter docs)", str.lower
)
# certsrv's pages, as certfnsh.asp and certnew.cer render them.
_ISSUED_LINK = re.compile(r"certnew\.cer\?ReqID=(\d+)", re.IGNORECASE)
_REQUEST_ID = re.compile(r"Your Request Id is (\d+)", re.IGNORECASE)
_DISPOSITION = re.compile(r'The disposition message is "([^"]*)"', re.IGNORECASE)
_DISPOSITION_LINE = re.compile(r"Disposition message:\s*([^\r\n<]+)", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")
_REFERENCE = re.compile(r"^\d{1,10}$")
# CR_DISP_UNDER_SUBMISSION's text, shown by certnew.cer for a request still waiting for a certificate manager.
_UNDER_SUBMISSION = "taken under submission"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdcsOptions(CaBundleOptions):
    """An ``adcs`` profile's options (the table above)."""

    url: HttpsUrl
    template: Annotated[str, _TEMPLATE_NAME]
    auth: Annotated[str, _AUTH_METHOD]
    username: str
    password_setting: SecretSetting
    timeout: Seconds = DEFAULT_TIMEOUT


class AdcsCA:
    """A CA adapter for AD CS web enrollment (the ``/certsrv`` pages)."""

    supports_deferral = True

    def __init__(
        self,
        *,
        url: str,
        template: str,
        auth: AuthBase,
        verify: str | bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Enroll at ``url`` (the server, without ``/certsrv``) with ``template``, authenticating with ``auth``."""
        self._certsrv = f"{url}/certsrv"
        self._template = template
        self._auth = auth
        self._verify = verify
        self._timeout = timeout
        self._session = new_session()

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> AdcsCA:
        """Build the adapter from a profile's options, resolving the password setting from ``environ``.

        Raises:
            ConfigurationError: an option is unknown, missing or malformed, or the password setting is empty
                (names the profile and option, or the setting; never the password).
        """
        options = parse_options(AdcsOptions, profile, environ)
        # Web enrollment has no revocation page (revoking takes the CA console or certutil): refused in plain words.
        retirement_options(profile, environ, revokes=False)
        password = options.password_setting.value
        auth: AuthBase
        if options.auth == "basic":
            auth = HTTPBasicAuth(options.username, password)
        else:
            # Imported here: only NTLM profiles need requests-ntlm (and pyspnego).
            from requests_ntlm import HttpNtlmAuth

            auth = HttpNtlmAuth(options.username, password)
        return cls(
            url=options.url.rstrip("/"), template=options.template, auth=auth, verify=tls_verify(options),
            timeout=options.timeout,
        )  # fmt: skip

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Submit ``request``'s CSR through ``certfnsh.asp``; ``Pending`` when the template needs approval.

        Raises:
            PermanentError: reason ``denied`` (certsrv's "denied" answer, with its disposition message),
                ``auth_failed`` (401), ``ca_refused`` (any other error page), ``bad_ca_answer``, ``csr_invalid``,
                ``ca_redirect_refused`` (a 3xx, also after the NTLM handshake: the password's proof and the CSR
                never follow a Location), ``ca_tls_untrusted`` (the server's TLS certificate does not verify).
            RetryableError: reason ``ca_unavailable`` (5xx) or ``ca_unreachable``.
        """
        try:
            csr_pem = x509.load_der_x509_csr(request.csr_der).public_bytes(serialization.Encoding.PEM).decode()
        except ValueError as exc:
            raise PermanentError("the CSR is not a readable DER PKCS#10 request", reason="csr_invalid") from exc
        form = {
            "Mode": "newreq",
            "CertRequest": csr_pem,
            "CertAttrib": f"CertificateTemplate:{self._template}",
            "TargetStoreFlags": "0",
            "SaveCert": "yes",
            "ThumbPrint": "",
        }
        response = self._request("POST", "certfnsh.asp", data=form)
        page = response.text
        issued = _ISSUED_LINK.search(page)
        if issued:
            return self._fetch(issued.group(1))
        pending = _REQUEST_ID.search(page)
        if pending and "certificate pending" in _text(page).lower():
            return Pending(pending.group(1))
        raise _refusal(page, "certfnsh.asp")

    def check(self) -> str:
        """Open the web enrollment's welcome page (``GET /certsrv/``) with the credentials; nothing is requested.

        Raises:
            PermanentError: reason ``auth_failed`` (401), ``ca_refused`` (another 4xx), ``ca_redirect_refused``,
                ``ca_tls_untrusted``.
            RetryableError: reason ``ca_unavailable`` or ``ca_unreachable``.
        """
        self._request("GET", "")
        return f"AD CS web enrollment at {self._certsrv}/: credentials accepted; template {self._template!r}"

    def poll(self, reference: str) -> Issued | Pending:
        """Fetch request ``reference`` from ``certnew.cer``: issued, still pending, or denied.

        Raises:
            PermanentError: reason ``unknown_reference`` (not a request id), ``denied``, ``auth_failed``,
                ``ca_refused``, ``bad_ca_answer``.
            RetryableError: reason ``ca_unavailable`` or ``ca_unreachable``.
        """
        if not _REFERENCE.match(reference):
            raise PermanentError("an AD CS reference is a request id", reason="unknown_reference")
        return self._fetch(reference)

    def _fetch(self, request_id: str) -> Issued | Pending:
        response = self._request("GET", f"certnew.cer?ReqID={request_id}&Enc=b64")
        if "-----BEGIN CERTIFICATE-----" not in response.text:
            disposition = _disposition(response.text)
            if disposition and _UNDER_SUBMISSION in disposition.lower():
                return Pending(request_id)
            raise _refusal(response.text, "certnew.cer")
        try:
            leaf = x509.load_pem_x509_certificate(response.content)
        except ValueError as exc:
            raise PermanentError("certnew.cer did not answer a PEM certificate", reason="bad_ca_answer") from exc
        chain_page = self._request("GET", f"certnew.p7b?ReqID={request_id}&Enc=b64")
        chain = order_chain(leaf, _pkcs7_certificates(chain_page.content))
        return Issued(pem(leaf), tuple(pem(c) for c in chain))

    def _request(self, method: str, page: str, **kwargs: object) -> requests.Response:
        response = send(
            self._session,
            method,
            f"{self._certsrv}/{page}",
            what="the AD CS web enrollment server",
            auth=self._auth,
            verify=self._verify,
            timeout=self._timeout,
            **kwargs,
        )
        status = response.status_code
        name = page.split("?")[0]
        if status == 401:
            raise PermanentError(f"certsrv refused our credentials ({name})", reason="auth_failed")
        if status == 429 or status >= 500:
            raise RetryableError(f"certsrv answered {status} ({name})", reason="ca_unavailable")
        if status >= 400:
            raise PermanentError(f"certsrv answered {status} ({name})", reason="ca_refused")
        return response


def _text(page: str) -> str:
    return " ".join(html.unescape(_TAGS.sub(" ", page)).split())


def _disposition(page: str) -> str | None:
    found = _DISPOSITION.search(page) or _DISPOSITION_LINE.search(page)
    return " ".join(html.unescape(found.group(1)).split()) if found else None


def _refusal(page: str, name: str) -> PermanentError:
    """certsrv's denied or error page as a short ``PermanentError`` (never the page itself)."""
    text = _text(page)
    detail = (_disposition(page) or text)[:160]
    if "denied" in text.lower():
        return PermanentError(f"AD CS denied the request: {detail}", reason="denied")
    return PermanentError(f"AD CS refused the request ({name}): {detail}", reason="ca_refused")


def _pkcs7_certificates(body: bytes) -> list[x509.Certificate]:
    """The certificates of ``certnew.p7b?Enc=b64``: PEM ``PKCS7`` armour, or bare base64 of the DER."""
    try:
        if b"-----BEGIN" in body:
            return pkcs7.load_pem_pkcs7_certificates(body)
        return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))
    except (binascii.Error, ValueError) as exc:
        raise PermanentError("certnew.p7b did not answer a PKCS#7 chain", reason="bad_ca_answer") from exc
