"""CFSSL: sign Key Vault's CSR with a ``cfssl serve`` (or ``multirootca``) over its JSON API.

Profile options (``RENEWAL_CA_PROFILES``, adapter ``cfssl``):

======================  =========  ========  ==============================================================
option                  type       default   meaning
======================  =========  ========  ==============================================================
``url``                 string     required  base URL of the CFSSL API, e.g. ``https://cfssl.corp:8888``; https,
                                             or plain http on loopback only
``profile``             string     (none)    the CFSSL signing profile; none means the server's default
``label``               string     (none)    the signer label (``multirootca``); none means the default signer
``auth_key_setting``    string     (none)    name of the app setting holding the profile's hex HMAC key; with it
                                             requests go to ``/api/v1/cfssl/authsign``, without to ``/sign``
``chain_path``          string     (none)    PEM file with the issuing chain, nearest issuer first; without it
                                             the chain is the signer's certificate from ``/api/v1/cfssl/info``
``ca_bundle_path``      string     (none)    PEM file of CAs to trust for the server's TLS (a private CA)
``ca_bundle_setting``   string     (none)    app setting holding that PEM, instead of the file
``timeout_seconds``     number     30        timeout of each HTTP request
======================  =========  ========  ==============================================================

Example::

    {"corp-cfssl": {"adapter": "cfssl", "url": "https://cfssl.corp.example:8888", "profile": "server",
                    "auth_key_setting": "CFSSL_AUTH_KEY", "ca_bundle_path": "/home/site/wwwroot/corp-root.pem"}}

CFSSL's authenticated signing: the body is ``{"token": base64(HMAC-SHA256(key, request)), "request":
base64(request)}`` where ``request`` is the JSON sign request ``{"certificate_request": PEM, "profile", "label"}``
(cfssl ``auth.Standard``). The request carries no hosts, so CFSSL takes the names from the CSR as Key Vault made it.

CFSSL signs at once or refuses: it cannot defer issuance, so ``submit`` never answers ``Pending``.

``revoke`` posts ``{"serial", "authority_key_id", "reason"}`` to ``/api/v1/cfssl/revoke``, which exists only when
``cfssl serve`` runs with a certificate database (``-db-config``) that recorded the certificate when it was signed
(docs/ca/revocation.md). CFSSL's revoke endpoint takes no authentication, so nothing secret is sent. ``check``
asks ``/api/v1/cfssl/info`` for the signer's certificate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal._shared.http import (
    new_session,
    retry_after_seconds,
    send,
)
from renewal.ca._options import (
    CaBundleOptions,
    ExistingFile,
    HttpsUrl,
    SecretSetting,
    between,
    parse_options,
    read_certificates,
    tls_verify,
)
from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.errors import ConfigurationError, PermanentError, RetryableError

__all__ = ["CfsslCA", "CfsslOptions"]

_PROFILES_SETTING = "RENEWAL_CA_PROFILES"
_API = "/api/v1/cfssl/"
_USER_AGENT = "keyvault-private-ca-renewal"
# cfssl errors/error.go: CertStoreError (11XXX) RecordNotFound, what revoke answers for a serial it has no row of.
_RECORD_NOT_FOUND = 11200


@dataclass(frozen=True, slots=True, kw_only=True)
class CfsslOptions(CaBundleOptions):
    """A ``cfssl`` profile's options (the table above)."""

    url: HttpsUrl
    profile: str | None = None
    label: str | None = None
    auth_key_setting: SecretSetting | None = None
    chain_path: ExistingFile | None = None
    timeout_seconds: Annotated[float, between(0, 300, low_ok=False)] = 30.0


class CfsslCA:
    """A CA adapter for CFSSL's ``sign``/``authsign`` API, with the chain from ``info`` or a file."""

    def __init__(
        self,
        *,
        url: str,
        profile: str | None = None,
        label: str | None = None,
        auth_key: bytes | None = None,
        chain_pem: tuple[str, ...] | None = None,
        ca_bundle_path: str | None = None,
        timeout_seconds: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        """Talk to the CFSSL API at ``url``; ``chain_pem`` ``None`` means: ask ``/info`` for the chain."""
        self._url = url.rstrip("/")
        self._profile = profile
        self._label = label
        self._auth_key = auth_key
        self._chain = chain_pem
        self._verify: str | bool = ca_bundle_path or True
        self._timeout = timeout_seconds
        self._session = session or new_session()

    def __repr__(self) -> str:
        return f"CfsslCA(url={self._url!r}, profile={self._profile!r}, authenticated={self._auth_key is not None})"

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> CfsslCA:
        """Build a ``CfsslCA`` from a profile's options, resolving the auth key setting from ``environ``.

        Raises:
            ConfigurationError: an option is unknown or malformed, a file cannot be read, or the auth key setting
                is missing or not hex; names ``RENEWAL_CA_PROFILES`` or the app setting, never a secret value.
        """
        options = parse_options(CfsslOptions, profile, environ)
        auth_key = None
        if options.auth_key_setting is not None:
            try:
                auth_key = bytes.fromhex(options.auth_key_setting.value)
            except ValueError as exc:
                raise ConfigurationError(options.auth_key_setting.setting, "must be the CFSSL auth key in hex") from exc
        chain = None
        if options.chain_path is not None:
            certificates = read_certificates(profile, "chain_path", options.chain_path)
            chain = tuple(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates)
        verify = tls_verify(options)
        return cls(
            url=options.url,
            profile=options.profile,
            label=options.label,
            auth_key=auth_key,
            chain_pem=chain,
            ca_bundle_path=verify if isinstance(verify, str) else None,
            timeout_seconds=options.timeout_seconds,
        )

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Have CFSSL sign ``request``'s CSR; answers ``Issued`` with the leaf and the chain.

        Raises:
            PermanentError: CFSSL refused (reason ``cfssl_unauthorized`` for a bad auth key,
                ``cfssl_csr_rejected``, ``cfssl_policy_violation``, ``cfssl_rejected`` for other 4xx answers) or
                answered something that is not a certificate (``cfssl_bad_answer``), its TLS certificate does not
                verify (``ca_tls_untrusted``: untrusted issuer or another host name), or it answered a redirect,
                which is never followed with the CSR and its HMAC token (``ca_redirect_refused``).
            RetryableError: CFSSL is unreachable or timed out (``ca_unreachable``, other TLS failures too), or
                failed on its side (``cfssl_unavailable``: 5xx, or an upstream/store error
                it reports).
        """
        try:
            csr = x509.load_der_x509_csr(request.csr_der)
        except ValueError as exc:
            raise PermanentError("the CSR is not a readable DER PKCS#10 request", reason="csr_invalid") from exc
        sign_request: dict[str, str] = {
            "certificate_request": csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
        }
        if self._profile is not None:
            sign_request["profile"] = self._profile
        if self._label is not None:
            sign_request["label"] = self._label

        if self._auth_key is None:
            result = self._call("sign", sign_request)
        else:
            inner = json.dumps(sign_request).encode()
            # cfssl auth.Standard: token = HMAC-SHA256(key, request bytes); both travel base64 ([]byte in Go JSON).
            token = hmac.new(self._auth_key, inner, hashlib.sha256).digest()
            result = self._call(
                "authsign",
                {"token": base64.b64encode(token).decode("ascii"), "request": base64.b64encode(inner).decode("ascii")},
            )
        leaf = _certificate_pem(result, "sign")
        return Issued(leaf, self._chain_pem())

    def revoke(self, certificate_pem: str, *, reason: str = "superseded") -> None:
        """Mark the certificate revoked in CFSSL's certificate database (its CRL and OCSP answers follow it).

        The serial goes as a decimal string and the authority key id as lowercase hex, as ``cfssl serve`` records
        them; cfssl 1.2 recorded an empty authority key id, so a "not found" is asked once more with an empty one.
        Revoking a certificate already revoked succeeds.

        Raises:
            PermanentError: ``cfssl_revoke_not_found`` (no database row: the server has no ``-db-config``, or did
                not sign it), ``certificate_invalid``, ``cfssl_rejected`` (the endpoint is missing: no database),
                ``ca_tls_untrusted``, ``ca_redirect_refused``.
            RetryableError: CFSSL is unreachable or failing (``ca_unreachable``, ``cfssl_unavailable``).
        """
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii", errors="replace"))
        except ValueError as exc:
            raise PermanentError("the certificate to revoke is not PEM", reason="certificate_invalid") from exc
        try:
            identifier = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            authority = (identifier.key_identifier or b"").hex()
        except x509.ExtensionNotFound:
            authority = ""
        for attempt in dict.fromkeys((authority, "")):
            body = {"serial": str(certificate.serial_number), "authority_key_id": attempt, "reason": reason}
            try:
                self._call("revoke", body, empty_result=True)
                return
            except _RecordNotFound:
                continue
        raise PermanentError(
            f"CFSSL has no database record of serial {certificate.serial_number} (is cfssl serve run with "
            "-db-config, and did it sign this certificate?)",
            reason="cfssl_revoke_not_found",
        )

    def check(self) -> str:
        """Ask ``/api/v1/cfssl/info`` for the signer's certificate; nothing is signed (the auth key is not tried).

        Raises:
            PermanentError, RetryableError: as ``submit``.
        """
        info: dict[str, str] = {}
        if self._profile is not None:
            info["profile"] = self._profile
        if self._label is not None:
            info["label"] = self._label
        signer = x509.load_pem_x509_certificate(_certificate_pem(self._call("info", info), "info").encode("ascii"))
        names = signer.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(names[0].value) if names else signer.subject.rfc4514_string()
        return f"CFSSL at {self._url}: signer {name!r}, profile {self._profile or 'default'}"

    def _chain_pem(self) -> tuple[str, ...]:
        if self._chain is None:
            info: dict[str, str] = {}
            if self._profile is not None:
                info["profile"] = self._profile
            if self._label is not None:
                info["label"] = self._label
            self._chain = (_certificate_pem(self._call("info", info), "info"),)
        return self._chain

    def _call(self, endpoint: str, body: Mapping[str, str], *, empty_result: bool = False) -> Mapping[str, object]:
        url = self._url + _API + endpoint
        # send never follows a Location with the CSR and the HMAC token (307/308 keep the body, even off-host).
        response = send(
            self._session,
            "POST",
            url,
            what=f"CFSSL {endpoint}",
            json=body,
            timeout=self._timeout,
            verify=self._verify,
            headers={"User-Agent": _USER_AGENT},
        )

        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if response.status_code >= 500:
            raise RetryableError(
                f"CFSSL {endpoint} failed with HTTP {response.status_code}{_describe(envelope)}",
                reason="cfssl_unavailable",
                retry_after=retry_after_seconds(response),
            )
        if not isinstance(envelope, dict):
            raise PermanentError(
                f"CFSSL {endpoint} answered HTTP {response.status_code} without its JSON envelope",
                reason="cfssl_rejected" if response.status_code >= 400 else "cfssl_bad_answer",
            )
        if response.status_code >= 400 or envelope.get("success") is not True:
            raise _refusal(endpoint, response.status_code, envelope)
        result = envelope.get("result")
        if empty_result and result is None:
            return {}
        if not isinstance(result, dict):
            raise PermanentError(f"CFSSL {endpoint} answered success without a result", reason="cfssl_bad_answer")
        return result


class _RecordNotFound(RetryableError):
    """CFSSL's certificate store has no row of the serial: for ``sign`` a store fault, for ``revoke`` an answer."""


def _refusal(endpoint: str, status: int, envelope: Mapping[str, object]) -> PermanentError | RetryableError:
    errors = envelope.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    raw_code = first.get("code")
    code = raw_code if isinstance(raw_code, int) else 0
    message = str(first.get("message", ""))[:200]
    text = f"CFSSL {endpoint} refused (HTTP {status}, code {code}): {message}"
    category = code // 1000
    # cfssl errors/error.go: the thousands give the category. 6XXX DialError (a remote signer is down),
    # 10XXX CTError (log submission) and 11XXX CertStoreError (database) are faults a retry can outlive.
    if category in (6, 10, 11):
        if code == _RECORD_NOT_FOUND:
            return _RecordNotFound(text, reason="cfssl_unavailable")
        return RetryableError(text, reason="cfssl_unavailable")
    lowered = message.lower()
    if category == 7 or "token" in lowered or "authentication" in lowered or "unauthorized" in lowered:
        return PermanentError(text, reason="cfssl_unauthorized")
    if category == 5:
        return PermanentError(text, reason="cfssl_policy_violation")
    if category in (1, 9):
        return PermanentError(text, reason="cfssl_csr_rejected")
    return PermanentError(text, reason="cfssl_rejected")


def _describe(envelope: object) -> str:
    if isinstance(envelope, dict):
        errors = envelope.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return f": {str(errors[0].get('message', ''))[:200]}"
    return ""


def _certificate_pem(result: Mapping[str, object], endpoint: str) -> str:
    pem = result.get("certificate")
    if not isinstance(pem, str):
        raise PermanentError(f"CFSSL {endpoint} answered without a certificate", reason="cfssl_bad_answer")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii", errors="replace"))
    except ValueError as exc:
        raise PermanentError(f"CFSSL {endpoint} answered an unreadable certificate", reason="cfssl_bad_answer") from exc
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
