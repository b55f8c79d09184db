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
``timeout``                      number  ``30``                     seconds per HTTP request
===============================  ======  =========================  ==============================================

Example::

    {"corp-ejbca": {"adapter": "ejbca", "url": "https://ejbca.corp.example",
                    "certificate_profile_name": "TLSServer", "end_entity_profile_name": "KeyVault",
                    "certificate_authority_name": "Corp Issuing CA 1",
                    "client_pfx_setting": "EJBCA_CLIENT_PFX"}}

The client key is held in memory and handed to ``ssl`` through a file that exists only while it is loaded (see
``renewal.ca._tls_client.new_session``). No deferral: ``pkcs10enroll`` answers with the certificate or an error;
an end entity profile that requires approval makes EJBCA answer an error, reported as permanent with EJBCA's
message (approve it in EJBCA, then the next renewal attempt succeeds).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.ca._tls_client import (
    DEFAULT_TIMEOUT,
    ProfileOptions,
    client_certificate_from_settings,
    new_session,
    order_chain,
    pem,
    retry_after_seconds,
    send,
)
from renewal.config import resolve_secret_setting
from renewal.errors import PermanentError, RetryableError

__all__ = ["EjbcaCA"]

_OPTIONS = frozenset(
    {
        "url",
        "certificate_profile_name",
        "end_entity_profile_name",
        "certificate_authority_name",
        "username_template",
        "password_setting",
        "include_chain",
        "chain_path",
        "account_binding_id",
        "client_pfx_setting",
        "client_pfx_password_setting",
        "client_pem_setting",
        "ca_bundle_path",
        "timeout",
    }
)
_ENROLL_PATH = "/ejbca/ejbca-rest-api/v1/certificate/pkcs10enroll"


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
        options = ProfileOptions(profile, _OPTIONS)
        url = options.url()
        template = options.string("username_template", "{vault}-{certificate}") or ""
        try:
            if not template.format(vault="v", certificate="c").strip():
                raise ValueError
        except (KeyError, IndexError, ValueError) as exc:
            raise options.problem("option username_template may use only {vault} and {certificate}") from exc
        client_certificate = client_certificate_from_settings(options, environ)
        if client_certificate is None:
            raise options.problem("give client_pfx_setting or client_pem_setting (EJBCA's REST API needs mTLS)")
        include_chain = options.boolean("include_chain", True)
        chain: tuple[x509.Certificate, ...] = ()
        chain_path = options.string("chain_path")
        if chain_path is not None:
            try:
                chain = tuple(x509.load_pem_x509_certificates(Path(chain_path).read_bytes()))
            except (OSError, ValueError) as exc:
                raise options.problem(f"chain_path {chain_path!r} is not a readable PEM certificate file") from exc
        elif not include_chain:
            raise options.problem("option chain_path is required when include_chain is false")
        password_setting = options.string("password_setting")
        return cls(
            url=url,
            certificate_profile_name=options.required("certificate_profile_name"),
            end_entity_profile_name=options.required("end_entity_profile_name"),
            certificate_authority_name=options.required("certificate_authority_name"),
            session=new_session(client_certificate),
            username_template=template,
            password=resolve_secret_setting(environ, password_setting) if password_setting else None,
            include_chain=include_chain,
            chain=chain,
            account_binding_id=options.string("account_binding_id"),
            verify=options.verify(),
            timeout=options.number("timeout", DEFAULT_TIMEOUT),
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

    def poll(self, reference: str) -> Issued | Pending:
        """EJBCA's ``pkcs10enroll`` never answers pending, so there is nothing to poll.

        Raises:
            PermanentError: reason ``unknown_reference``, always.
        """
        raise PermanentError("EJBCA pkcs10enroll never answers pending; nothing to poll", reason="unknown_reference")


def _certificate(value: str, response_format: object) -> x509.Certificate:
    # EJBCA's REST answer: "response_format": "DER" means base64 of the DER certificate; "PEM" means PEM text.
    if response_format == "PEM" or value.lstrip().startswith("-----BEGIN"):
        return x509.load_pem_x509_certificate(value.encode("ascii"))
    return x509.load_der_x509_certificate(base64.b64decode(value, validate=True))


def _raise_for_ejbca_error(response: requests.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    # EJBCA's REST errors: {"error_code": <HTTP status>, "error_message": "..."}.
    try:
        answer = response.json()
        detail = str(answer.get("error_message") or "")
    except (ValueError, AttributeError):
        detail = ""
    detail = " ".join(detail.split())[:200] or f"HTTP {status}"
    message = f"EJBCA enroll failed ({status}): {detail}"
    if status == 429 or status >= 500:
        raise RetryableError(message, reason="ca_unavailable", retry_after=retry_after_seconds(response))
    reasons = {401: "permission_denied", 403: "permission_denied", 404: "unknown_profile"}
    raise PermanentError(message, reason=reasons.get(status, "csr_rejected"))
