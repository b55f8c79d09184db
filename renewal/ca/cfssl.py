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
``timeout_seconds``     number     30        timeout of each HTTP request
======================  =========  ========  ==============================================================

Example::

    {"corp-cfssl": {"adapter": "cfssl", "url": "https://cfssl.corp.example:8888", "profile": "server",
                    "auth_key_setting": "CFSSL_AUTH_KEY", "ca_bundle_path": "/home/site/wwwroot/corp-root.pem"}}

CFSSL's authenticated signing: the body is ``{"token": base64(HMAC-SHA256(key, request)), "request":
base64(request)}`` where ``request`` is the JSON sign request ``{"certificate_request": PEM, "profile", "label"}``
(cfssl ``auth.Standard``). The request carries no hosts, so CFSSL takes the names from the CSR as Key Vault made it.

CFSSL signs at once or refuses: it cannot defer issuance, so ``submit`` never answers ``Pending``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.ca._tls_client import new_session, redirect_refused, tls_untrusted, tls_verification_failed
from renewal.config import resolve_secret_setting, url_problem
from renewal.errors import ConfigurationError, PermanentError, RetryableError

__all__ = ["CfsslCA"]

_PROFILES_SETTING = "RENEWAL_CA_PROFILES"
_OPTIONS = frozenset(
    {
        "url",
        "profile",
        "label",
        "auth_key_setting",
        "chain_path",
        "ca_bundle_path",
        "timeout_seconds",
        "trust_anchor_path",
        "trust_anchor_setting",
    }
)
_API = "/api/v1/cfssl/"
_USER_AGENT = "keyvault-private-ca-renewal"


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
        options = profile.options

        def problem(text: str) -> ConfigurationError:
            return ConfigurationError(_PROFILES_SETTING, f"profile {profile.name!r}: {text}")

        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise problem(f"unknown option(s) {', '.join(unknown)} for adapter cfssl")

        def option(name: str) -> str | None:
            value = options.get(name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise problem(f"option {name} must be a non-empty string")
            return value.strip() if isinstance(value, str) else None

        url = option("url")
        if url is None:
            raise problem("option url is required")
        url_fault = url_problem(url)
        if url_fault:
            raise problem(url_fault)

        auth_key = None
        auth_key_setting = option("auth_key_setting")
        if auth_key_setting is not None:
            try:
                auth_key = bytes.fromhex(resolve_secret_setting(environ, auth_key_setting))
            except ValueError as exc:
                raise ConfigurationError(auth_key_setting, "must be the CFSSL auth key in hex") from exc

        chain = None
        chain_path = option("chain_path")
        if chain_path is not None:
            try:
                certificates = x509.load_pem_x509_certificates(Path(chain_path).read_bytes())
            except OSError as exc:
                raise problem(f"cannot read chain_path {chain_path!r}: {exc.strerror}") from exc
            except ValueError as exc:
                raise problem(f"chain_path {chain_path!r} is not a PEM certificate file") from exc
            chain = tuple(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates)

        bundle = option("ca_bundle_path")
        if bundle is not None and not Path(bundle).is_file():
            raise problem(f"ca_bundle_path {bundle!r} is not a file")

        timeout = options.get("timeout_seconds", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            raise problem("timeout_seconds must be a number of seconds between 0 and 300")

        return cls(
            url=url,
            profile=option("profile"),
            label=option("label"),
            auth_key=auth_key,
            chain_pem=chain,
            ca_bundle_path=bundle,
            timeout_seconds=float(timeout),
        )

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Have CFSSL sign ``request``'s CSR; answers ``Issued`` with the leaf and the chain.

        Raises:
            PermanentError: CFSSL refused (reason ``cfssl_unauthorized`` for a bad auth key,
                ``cfssl_csr_rejected``, ``cfssl_policy_violation``, ``cfssl_rejected`` for other 4xx answers) or
                answered something that is not a certificate (``cfssl_bad_answer``), its TLS certificate does not
                verify (``ca_tls_untrusted``: untrusted issuer or another host name), or it answered a redirect,
                which is never followed with the CSR and its HMAC token (``ca_redirect_refused``).
            RetryableError: CFSSL is unreachable (``cfssl_unreachable``, other TLS failures too), timed out
                (``cfssl_timeout``), or failed on its side (``cfssl_unavailable``: 5xx, or an upstream/store error
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

    def poll(self, reference: str) -> Issued | Pending:
        """CFSSL never defers, so there is nothing to poll.

        Raises:
            PermanentError: always, reason ``unknown_reference``.
        """
        raise PermanentError(f"CFSSL holds no pending request {reference[:40]!r}", reason="unknown_reference")

    def _chain_pem(self) -> tuple[str, ...]:
        if self._chain is None:
            info: dict[str, str] = {}
            if self._profile is not None:
                info["profile"] = self._profile
            if self._label is not None:
                info["label"] = self._label
            self._chain = (_certificate_pem(self._call("info", info), "info"),)
        return self._chain

    def _call(self, endpoint: str, body: Mapping[str, str]) -> Mapping[str, object]:
        url = self._url + _API + endpoint
        try:
            # Never follow a Location with the CSR and the HMAC token (307/308 keep the body, even off-host).
            response = self._session.post(
                url,
                json=body,
                timeout=self._timeout,
                verify=self._verify,
                headers={"User-Agent": _USER_AGENT},
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            if tls_verification_failed(exc):
                raise tls_untrusted("CFSSL", url, reason="ca_tls_untrusted") from exc
            raise RetryableError(
                f"CFSSL at {self._url} is unreachable (TLS failed)", reason="cfssl_unreachable"
            ) from exc
        except requests.Timeout as exc:
            raise RetryableError(f"CFSSL at {self._url} did not answer in time", reason="cfssl_timeout") from exc
        except requests.RequestException as exc:
            raise RetryableError(f"CFSSL at {self._url} is unreachable", reason="cfssl_unreachable") from exc
        if 300 <= response.status_code < 400:
            response.close()
            location = response.headers.get("Location")
            raise redirect_refused(
                f"CFSSL {endpoint}", response.status_code, location, url, reason="ca_redirect_refused"
            )

        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if response.status_code >= 500:
            raise RetryableError(
                f"CFSSL {endpoint} failed with HTTP {response.status_code}{_describe(envelope)}",
                reason="cfssl_unavailable",
                retry_after=_retry_after(response),
            )
        if not isinstance(envelope, dict):
            raise PermanentError(
                f"CFSSL {endpoint} answered HTTP {response.status_code} without its JSON envelope",
                reason="cfssl_rejected" if response.status_code >= 400 else "cfssl_bad_answer",
            )
        if response.status_code >= 400 or envelope.get("success") is not True:
            raise _refusal(endpoint, response.status_code, envelope)
        result = envelope.get("result")
        if not isinstance(result, dict):
            raise PermanentError(f"CFSSL {endpoint} answered success without a result", reason="cfssl_bad_answer")
        return result


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


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _certificate_pem(result: Mapping[str, object], endpoint: str) -> str:
    pem = result.get("certificate")
    if not isinstance(pem, str):
        raise PermanentError(f"CFSSL {endpoint} answered without a certificate", reason="cfssl_bad_answer")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii", errors="replace"))
    except ValueError as exc:
        raise PermanentError(f"CFSSL {endpoint} answered an unreadable certificate", reason="cfssl_bad_answer") from exc
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
