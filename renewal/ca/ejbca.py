"""EJBCA REST: enroll Key Vault's CSR with ``POST /ejbca/ejbca-rest-api/v1/certificate/pkcs10enroll`` over mutual TLS.

Profile options (``RENEWAL_CA_PROFILES``, adapter ``ejbca``):

===============================  ======  =========================  ==============================================
option                           type    default                    meaning
===============================  ======  =========================  ==============================================
``url``                          string  (required)                 EJBCA's address, ``https://ejbca.example``
                                                                    (the REST path is added)
``certificate_profile_name``     string  (required)                 certificate profile
``end_entity_profile_name``      string  (required)                 end entity profile
``certificate_authority_name``   string  (required)                 the CA's name in EJBCA
``username_template``            string  ``{vault}-{certificate}``  end entity username; ``{vault}`` and
                                                                    ``{certificate}`` are the Key Vault names
``password_setting``             string  none                       app setting holding the end entity's
                                                                    enrollment code, when the profile wants one
``include_chain``                bool    ``true``                   ask EJBCA for the chain in its answer
``chain_path``                   string  none                       PEM file of the chain, nearest first; required
                                                                    when ``include_chain`` is ``false``
``account_binding_id``           string  none                       sent as ``account_binding_id``
``client_pfx_setting``           string  one of the two             app setting holding the TLS client certificate
                                                                    as base64 PKCS#12: a Key Vault reference to a
                                                                    Key Vault *certificate's secret*
``client_pfx_password_setting``  string  none                       app setting holding that PKCS#12's password
``client_pem_setting``           string  one of the two             app setting holding PEM certificate + key
``ca_bundle_path``               string  system trust               PEM file of the CA that signed EJBCA's TLS cert
``ca_bundle_setting``            string  none                       app setting holding that PEM, instead of the file
``timeout``                      number  ``30``                     seconds per HTTP request
===============================  ======  =========================  ==============================================

Example::

    {"corp-ejbca": {"adapter": "ejbca", "url": "https://ejbca.corp.example",
                    "certificate_profile_name": "TLSServer", "end_entity_profile_name": "KeyVault",
                    "certificate_authority_name": "Corp Issuing CA 1",
                    "client_pfx_setting": "EJBCA_CLIENT_PFX"}}

The client key is held in memory and handed to ``ssl`` through a file that exists only while it is loaded (see
``renewal._shared.http.new_session``). No deferral: ``pkcs10enroll`` answers with the certificate or an error;
an end entity profile that requires approval makes EJBCA answer an error, reported as permanent with EJBCA's
message (approve it in EJBCA, then the next renewal attempt succeeds).

It revokes with ``PUT .../v1/certificate/{issuer_dn}/{serial}/revoke?reason=SUPERSEDED`` (the client certificate's
role needs the revocation access rule) and checks itself with ``GET .../v1/ca``, which lists the CAs the client
may use.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal._shared.http import DEFAULT_TIMEOUT, new_session, retry_after_seconds, send
from renewal._shared.pem import order_chain, pem
from renewal.ca._options import (
    Check,
    ClientCertificateOptions,
    ExistingFile,
    HttpsUrl,
    OptionError,
    Seconds,
    SecretSetting,
    client_certificate,
    exactly_one,
    parse_options,
    read_certificates,
    tls_verify,
)
from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.errors import PermanentError, RetryableError

__all__ = ["EjbcaCA", "EjbcaOptions"]

_API_PATH = "/ejbca/ejbca-rest-api/v1"
_ENROLL_PATH = _API_PATH + "/certificate/pkcs10enroll"
# RFC 5280 §5.3.1 reason names, as EJBCA's revoke endpoint spells them.
_REVOCATION_REASONS = {
    "unspecified": "UNSPECIFIED",
    "key_compromise": "KEY_COMPROMISE",
    "superseded": "SUPERSEDED",
    "cessation_of_operation": "CESSATION_OF_OPERATION",
    "affiliation_changed": "AFFILIATION_CHANGED",
}


def _username_template(template: str) -> bool:
    try:
        return bool(template.format(vault="v", certificate="c").strip())
    except (KeyError, IndexError, ValueError):
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class EjbcaOptions(ClientCertificateOptions):
    """An ``ejbca`` profile's options (the table above)."""

    url: HttpsUrl
    certificate_profile_name: str
    end_entity_profile_name: str
    certificate_authority_name: str
    username_template: Annotated[str, Check(_username_template, "a template using only {vault} and {certificate}")] = (
        "{vault}-{certificate}"
    )
    password_setting: SecretSetting | None = None
    include_chain: bool = True
    chain_path: ExistingFile | None = None
    account_binding_id: str | None = None
    timeout: Seconds = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        ClientCertificateOptions.__post_init__(self)
        exactly_one(self, "client_pfx_setting", "client_pem_setting", why=" (EJBCA's REST API needs mTLS)")
        if not self.include_chain and self.chain_path is None:
            raise OptionError("option chain_path is required when include_chain is false")


class EjbcaCA:
    """A CA adapter for EJBCA's REST ``pkcs10enroll``."""

    def __init__(
        self,
        *,
        url: str,
        certificate_profile_name: str,
        end_entity_profile_name: str,
        certificate_authority_name: str,
        session: requests.Session,
        username_template: str = "{vault}-{certificate}",
        password: str | None = None,
        include_chain: bool = True,
        chain: tuple[x509.Certificate, ...] = (),
        account_binding_id: str | None = None,
        verify: str | bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Enroll at ``url`` through ``session`` (which presents the TLS client certificate)."""
        self._url = url + _ENROLL_PATH
        self._api = url + _API_PATH
        self._ca_name = certificate_authority_name
        self._fields = {
            "certificate_profile_name": certificate_profile_name,
            "end_entity_profile_name": end_entity_profile_name,
            "certificate_authority_name": certificate_authority_name,
        }
        self._session = session
        self._username_template = username_template
        self._password = password
        self._include_chain = include_chain
        self._chain = chain
        self._account_binding_id = account_binding_id
        self._verify = verify
        self._timeout = timeout

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> EjbcaCA:
        """Build the adapter from a profile's options, loading the client certificate from its app setting.

        Raises:
            ConfigurationError: an option is unknown, missing or malformed, or a setting is empty or unreadable
                (names the profile and option, or the setting; never a secret value).
        """
        options = parse_options(EjbcaOptions, profile, environ)
        chain = read_certificates(profile, "chain_path", options.chain_path) if options.chain_path else []
        return cls(
            url=options.url.rstrip("/"),
            certificate_profile_name=options.certificate_profile_name,
            end_entity_profile_name=options.end_entity_profile_name,
            certificate_authority_name=options.certificate_authority_name,
            session=new_session(client_certificate(options)),
            username_template=options.username_template,
            password=options.password_setting.value if options.password_setting else None,
            include_chain=options.include_chain,
            chain=tuple(chain),
            account_binding_id=options.account_binding_id,
            verify=tls_verify(options),
            timeout=options.timeout,
        )

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Enroll ``request``'s CSR for the end entity named by ``username_template``.

        Raises:
            PermanentError: reason ``csr_rejected`` (400, 409), ``permission_denied`` (401, 403: the client
                certificate is missing or not authorized), ``unknown_profile`` (404: CA or profile not found),
                ``bad_ca_answer``, ``csr_invalid``, ``ca_redirect_refused`` (a 3xx is never followed with the CSR
                and enrollment code), ``ca_tls_untrusted`` (EJBCA's TLS certificate does not verify).
            RetryableError: reason ``ca_unavailable`` (5xx, 429) or ``ca_unreachable``.
        """
        try:
            csr_pem = x509.load_der_x509_csr(request.csr_der).public_bytes(serialization.Encoding.PEM).decode()
        except ValueError as exc:
            raise PermanentError("the CSR is not a readable DER PKCS#10 request", reason="csr_invalid") from exc
        body: dict[str, Any] = {
            "certificate_request": csr_pem,
            **self._fields,
            "username": self._username_template.format(vault=request.vault_name, certificate=request.certificate_name),
            "include_chain": self._include_chain,
        }
        if self._password is not None:
            body["password"] = self._password
        if self._account_binding_id is not None:
            body["account_binding_id"] = self._account_binding_id
        response = send(
            self._session, "POST", self._url, what="EJBCA", json=body, verify=self._verify, timeout=self._timeout
        )
        _raise_for_ejbca_error(response)
        try:
            answer = response.json()
            leaf = _certificate(answer["certificate"], answer.get("response_format"))
            given = [_certificate(c, answer.get("response_format")) for c in answer.get("certificate_chain") or []]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise PermanentError("EJBCA's enroll answer holds no readable certificate", reason="bad_ca_answer") from exc
        chain = order_chain(leaf, [*given, *self._chain] if self._include_chain else list(self._chain))
        return Issued(pem(leaf), tuple(pem(c) for c in chain))

    def revoke(self, certificate_pem: str, *, reason: str = "superseded") -> None:
        """Revoke a certificate by its issuer DN and serial number, with the RFC 5280 reason.

        A certificate EJBCA says is already revoked counts as revoked (a redelivered retirement).

        Raises:
            PermanentError: reason ``ejbca_revoke_refused`` (400, 404: EJBCA does not know the certificate, or
                refuses the reason), ``permission_denied`` (401, 403), ``certificate_invalid``,
                ``ca_redirect_refused``, ``ca_tls_untrusted``.
            RetryableError: reason ``ca_unavailable`` (5xx, 429) or ``ca_unreachable``.
        """
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
        except ValueError as exc:
            raise PermanentError("the certificate to revoke is not PEM", reason="certificate_invalid") from exc
        issuer = quote(certificate.issuer.rfc4514_string(), safe="")
        code = _REVOCATION_REASONS.get(reason, "UNSPECIFIED")
        url = f"{self._api}/certificate/{issuer}/{certificate.serial_number:X}/revoke?reason={code}"
        response = send(self._session, "PUT", url, what="EJBCA", verify=self._verify, timeout=self._timeout)
        if response.status_code == 409 and "already revoked" in _error_message(response).lower():
            return
        _raise_for_ejbca_error(response, "revoke", refused="ejbca_revoke_refused")

    def check(self) -> str:
        """List the CAs the client certificate may use (``GET .../v1/ca``) and find the profile's CA there.

        Raises:
            PermanentError: reason ``permission_denied`` (the client certificate is refused), ``unknown_profile``
                (the CA is not among those listed), ``bad_ca_answer``, ``ca_redirect_refused``, ``ca_tls_untrusted``.
            RetryableError: reason ``ca_unavailable`` or ``ca_unreachable``.
        """
        response = send(
            self._session, "GET", f"{self._api}/ca", what="EJBCA", verify=self._verify, timeout=self._timeout
        )
        _raise_for_ejbca_error(response, "CA list")
        try:
            names = [str(ca["name"]) for ca in response.json()["certificate_authorities"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentError("EJBCA's CA list is not readable", reason="bad_ca_answer") from exc
        if self._ca_name not in names:
            raise PermanentError(
                f"EJBCA does not list CA {self._ca_name!r} for this client certificate ({len(names)} CAs listed)",
                reason="unknown_profile",
            )
        return f"EJBCA at {self._api.removesuffix(_API_PATH)}: client certificate accepted; CA {self._ca_name!r} listed"


def _certificate(value: str, response_format: object) -> x509.Certificate:
    # EJBCA's REST answer: "response_format": "DER" means base64 of the DER certificate; "PEM" means PEM text.
    if response_format == "PEM" or value.lstrip().startswith("-----BEGIN"):
        return x509.load_pem_x509_certificate(value.encode("ascii"))
    return x509.load_der_x509_certificate(base64.b64decode(value, validate=True))


def _error_message(response: requests.Response) -> str:
    # EJBCA's REST errors: {"error_code": <HTTP status>, "error_message": "..."}.
    try:
        return " ".join(str(response.json().get("error_message") or "").split())[:200]
    except (ValueError, AttributeError):
        return ""


def _raise_for_ejbca_error(
    response: requests.Response, operation: str = "enroll", *, refused: str | None = None
) -> None:
    status = response.status_code
    if status < 400:
        return
    detail = _error_message(response) or f"HTTP {status}"
    message = f"EJBCA {operation} failed ({status}): {detail}"
    if status == 429 or status >= 500:
        raise RetryableError(message, reason="ca_unavailable", retry_after=retry_after_seconds(response))
    reasons = {401: "permission_denied", 403: "permission_denied", 404: refused or "unknown_profile"}
    raise PermanentError(message, reason=reasons.get(status, refused or "csr_rejected"))
