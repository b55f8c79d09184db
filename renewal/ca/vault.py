"""HashiCorp Vault / OpenBao PKI: sign Key Vault's CSR with ``POST /v1/{mount}/sign/{role}``.

Profile options (``RENEWAL_CA_PROFILES``, adapter ``vault``):

==============================  ======  ==============  ===============================================
option                          type    default         meaning
==============================  ======  ==============  ===============================================
``url``                         string  (required)      Vault's address, ``https://vault.example:8200``
``role``                        string  (required)      the PKI role that signs
``mount``                       string  ``pki``         the PKI secrets engine's mount path
``namespace``                   string  none            namespace (``X-Vault-Namespace``), Vault
                                                        Enterprise or OpenBao
``ttl``                         string  role's default  requested lifetime, e.g. ``2160h``
``names_from_csr``              bool    ``false``       also send ``common_name``, ``alt_names`` and
                                                        ``ip_sans`` read from the CSR (for roles with
                                                        ``use_csr_common_name=false``)
``token_setting``               string  none            app setting holding a Vault token
``role_id``                     string  none            AppRole role id (with ``secret_id_setting``)
``secret_id_setting``           string  none            app setting holding the AppRole secret id
``approle_mount``               string  ``approle``     where the AppRole auth method is mounted
``azure_role``                  string  none            role of Vault's Azure auth method
``azure_mount``                 string  ``azure``       where the Azure auth method is mounted
``azure_resource``              string  ARM             audience of the managed identity token; default
                                                        ``https://management.azure.com/``
``subscription_id`` and others  string  none            ``subscription_id``, ``resource_group_name``,
                                                        ``vm_name``, ``vmss_name``, ``resource_id``: sent
                                                        to the Azure login when given
``ca_bundle_path``              string  system trust    PEM file of the CA that signed Vault's TLS cert
``ca_bundle_setting``           string  none            app setting holding that PEM, instead of the file
``timeout``                     number  ``30``          seconds per HTTP request
==============================  ======  ==============  ===============================================

Exactly one of ``token_setting``, ``role_id`` + ``secret_id_setting``, ``azure_role`` is given. Example::

    {"corp-vault": {"adapter": "vault", "url": "https://vault.corp.example:8200", "mount": "pki_int",
                    "role": "web-servers", "role_id": "6f1c...", "secret_id_setting": "VAULT_SECRET_ID"}}

Vault's ``sign`` takes the common name and SANs from the CSR by default (role fields ``use_csr_common_name``
and ``use_csr_sans``, both ``true`` by default), so by default only the CSR is sent. Vault cannot defer issuance.

It revokes (``POST /v1/{mount}/revoke`` with the serial number; the token's policy needs ``update`` on that path)
and checks itself with ``GET /v1/auth/token/lookup-self``, which Vault's ``default`` policy allows every token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from renewal._shared.http import DEFAULT_TIMEOUT, new_session, send
from renewal._shared.http import retry_after_seconds as _retry_after
from renewal._shared.pem import order_chain, pem
from renewal.ca._options import (
    CaBundleOptions,
    HttpsUrl,
    Seconds,
    SecretSetting,
    exactly_one,
    parse_options,
    tls_verify,
    together,
)
from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.errors import PermanentError, RetryableError

__all__ = ["TokenCredential", "VaultOptions", "VaultPKI"]

_AZURE_LOGIN_FIELDS = ("subscription_id", "resource_group_name", "vm_name", "vmss_name", "resource_id")
# Renew the login a little before Vault says the token's lease ends.
_LEASE_MARGIN = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultOptions(CaBundleOptions):
    """A ``vault`` profile's options (the table above), with ``ca_bundle_path``/``ca_bundle_setting``."""

    url: HttpsUrl
    role: str
    mount: str = "pki"
    namespace: str | None = None
    ttl: str | None = None
    names_from_csr: bool = False
    token_setting: SecretSetting | None = None
    role_id: str | None = None
    secret_id_setting: SecretSetting | None = None
    approle_mount: str = "approle"
    azure_role: str | None = None
    azure_mount: str = "azure"
    azure_resource: str = "https://management.azure.com/"
    subscription_id: str | None = None
    resource_group_name: str | None = None
    vm_name: str | None = None
    vmss_name: str | None = None
    resource_id: str | None = None
    timeout: Seconds = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        CaBundleOptions.__post_init__(self)
        exactly_one(self, "token_setting", ("role_id", "secret_id_setting"), "azure_role")
        together(self, "role_id", "secret_id_setting")


class TokenCredential(Protocol):
    """What Vault's Azure auth needs from an Azure credential (``azure.identity`` credentials fit)."""

    def get_token(self, *scopes: str) -> Any: ...


class _Login(Protocol):
    def __call__(self, session: requests.Session) -> tuple[str, float | None]: ...


class VaultPKI:
    """A CA adapter for Vault's (or OpenBao's) PKI secrets engine ``sign/:role`` endpoint."""

    def __init__(
        self,
        *,
        url: str,
        mount: str,
        role: str,
        login: _Login,
        namespace: str | None = None,
        ttl: str | None = None,
        names_from_csr: bool = False,
        verify: str | bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Talk to Vault at ``url``; ``login`` returns a token and its lease in seconds (``None``: no expiry)."""
        self._url = url
        self._mount = mount.strip("/")
        self._role = role
        self._login = login
        self._namespace = namespace
        self._ttl = ttl
        self._names_from_csr = names_from_csr
        self._verify = verify
        self._timeout = timeout
        self._clock = clock
        self._session = new_session()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires: float | None = None

    @classmethod
    def from_profile(
        cls, profile: CAProfile, environ: Mapping[str, str], *, credential: TokenCredential | None = None
    ) -> VaultPKI:
        """Build the adapter from a profile; ``credential`` (for Azure auth) defaults to ``DefaultAzureCredential``.

        Raises:
            ConfigurationError: an option is unknown, missing or malformed, or a secret setting is empty
                (names the profile and option, or the setting; never a secret value).
        """
        options = parse_options(VaultOptions, profile, environ)
        url, verify, timeout = options.url.rstrip("/"), tls_verify(options), options.timeout
        namespace = options.namespace
        headers = {"X-Vault-Namespace": namespace} if namespace else {}

        login: _Login
        if options.token_setting is not None:
            token = options.token_setting.value

            def login(session: requests.Session) -> tuple[str, float | None]:
                return token, None

        elif options.role_id is not None and options.secret_id_setting is not None:
            approle_url = f"{url}/v1/auth/{options.approle_mount.strip('/')}/login"
            body = {"role_id": options.role_id, "secret_id": options.secret_id_setting.value}

            def login(session: requests.Session) -> tuple[str, float | None]:
                return _vault_login(session, approle_url, body, headers, verify, timeout)

        else:
            assert options.azure_role is not None  # VaultOptions holds exactly one method
            azure_url = f"{url}/v1/auth/{options.azure_mount.strip('/')}/login"
            scope = options.azure_resource.rstrip("/") + "/.default"
            fields = {name: value for name in _AZURE_LOGIN_FIELDS if (value := getattr(options, name))}
            azure = {"role": options.azure_role, **fields}
            chosen = credential

            def login(session: requests.Session) -> tuple[str, float | None]:
                nonlocal chosen
                if chosen is None:
                    # Imported here: only profiles using Azure auth pay for azure.identity.
                    from azure.identity import DefaultAzureCredential

                    chosen = DefaultAzureCredential()
                try:
                    jwt = chosen.get_token(scope).token
                except Exception as exc:  # azure.identity raises many types; all mean "no token now"
                    raise RetryableError(
                        f"cannot get a managed identity token for Vault's Azure auth: {type(exc).__name__}",
                        reason="auth_unavailable",
                    ) from exc
                return _vault_login(session, azure_url, {**azure, "jwt": jwt}, headers, verify, timeout)

        return cls(
            url=url,
            mount=options.mount,
            role=options.role,
            login=login,
            namespace=namespace,
            ttl=options.ttl,
            names_from_csr=options.names_from_csr,
            verify=verify,
            timeout=timeout,
        )

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Have Vault sign ``request``'s CSR.

        Raises:
            PermanentError: reason ``csr_rejected`` (400: bad CSR, or names/TTL the role refuses),
                ``permission_denied`` (403), ``unknown_role`` (404: no such role or mount), ``auth_failed``
                (login refused), ``bad_ca_answer`` (an answer without a readable certificate), ``csr_invalid``,
                ``ca_redirect_refused`` (a 3xx: neither the token, the AppRole secret id nor the Azure JWT follows a
                Location), ``ca_tls_untrusted`` (Vault's TLS certificate does not verify).
            RetryableError: reason ``ca_unavailable`` (429, 5xx, sealed or standby Vault) or ``ca_unreachable``.
        """
        body: dict[str, Any] = {"csr": _csr_pem(request.csr_der), "format": "pem"}
        if self._ttl:
            body["ttl"] = self._ttl
        if self._names_from_csr:
            body.update(_names(request.csr_der))
        url = f"{self._url}/v1/{self._mount}/sign/{self._role}"
        response = self._with_token("POST", url, body, "sign")
        data = _json(response).get("data")
        if not isinstance(data, dict) or not isinstance(data.get("certificate"), str):
            raise PermanentError("Vault's sign answer holds no certificate", reason="bad_ca_answer")
        try:
            leaf = x509.load_pem_x509_certificate(data["certificate"].encode("ascii"))
            chain_text = data.get("ca_chain") or [data.get("issuing_ca") or ""]
            chain = [c for text in chain_text if text for c in x509.load_pem_x509_certificates(text.encode("ascii"))]
        except (ValueError, TypeError, AttributeError) as exc:
            raise PermanentError("Vault's sign answer is not PEM certificates", reason="bad_ca_answer") from exc
        return Issued(pem(leaf), tuple(pem(c) for c in order_chain(leaf, chain)))

    def revoke(self, certificate_pem: str, *, reason: str = "superseded") -> None:
        """Revoke a certificate this PKI mount issued, by its serial number (Vault's revoke has no reason code).

        Revoking a certificate that is already revoked succeeds (Vault answers with its first revocation time).

        Raises:
            PermanentError: reason ``vault_revoke_refused`` (400: the mount does not know the serial, or the
                certificate is not one it issued), ``permission_denied`` (403), ``unknown_role`` (404: no such
                mount), ``auth_failed``, ``ca_redirect_refused``, ``ca_tls_untrusted``, ``certificate_invalid``.
            RetryableError: reason ``ca_unavailable`` (429, 5xx, sealed) or ``ca_unreachable``.
        """
        try:
            serial = x509.load_pem_x509_certificate(certificate_pem.encode("ascii")).serial_number
        except ValueError as exc:
            raise PermanentError("the certificate to revoke is not PEM", reason="certificate_invalid") from exc
        body = {"serial_number": _vault_serial(serial)}
        url = f"{self._url}/v1/{self._mount}/revoke"
        response = self._with_token("POST", url, body, "revoke", refused="vault_revoke_refused")
        data = _json(response, strict=False).get("data")
        if not isinstance(data, dict) or "revocation_time" not in data:
            raise PermanentError("Vault's revoke answer holds no revocation time", reason="bad_ca_answer")

    def check(self) -> str:
        """Log in if needed and look the token up (``GET /v1/auth/token/lookup-self``): nothing is issued.

        Raises:
            PermanentError: the login or the token is refused (``auth_failed``, ``permission_denied``), or an
                error of ``submit``'s kind.
            RetryableError: Vault is sealed, unavailable or unreachable.
        """
        response = self._with_token("GET", f"{self._url}/v1/auth/token/lookup-self", None, "token lookup")
        data = _json(response, strict=False).get("data")
        ttl = data.get("ttl") if isinstance(data, dict) else None
        expiry = "does not expire" if not ttl else f"expires in {int(ttl)} s"
        return f"Vault at {self._url}: token accepted ({expiry}); signs with {self._mount}/sign/{self._role}"

    def _with_token(
        self, method: str, url: str, body: dict[str, Any] | None, operation: str, *, refused: str | None = None
    ) -> requests.Response:
        for attempt in (1, 2):
            token, fresh = self._current_token()
            headers = {"X-Vault-Token": token}
            if self._namespace:
                headers["X-Vault-Namespace"] = self._namespace
            response = send(
                self._session, method, url, what="Vault", json=body, headers=headers,
                verify=self._verify, timeout=self._timeout,
            )  # fmt: skip
            # A cached login token may have been revoked early: log in again once before calling it a denial.
            if response.status_code == 403 and not fresh and attempt == 1 and self._token_expires is not None:
                self._forget_token()
                continue
            _raise_for_vault_error(response, operation, refused=refused)
            return response
        raise AssertionError("unreachable")

    def _current_token(self) -> tuple[str, bool]:
        with self._lock:
            now = self._clock()
            if self._token is not None and (self._token_expires is None or now < self._token_expires):
                return self._token, False
            token, lease = self._login(self._session)
            self._token = token
            self._token_expires = None if lease is None else now + max(lease - _LEASE_MARGIN, lease / 2)
            return token, True

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None


def _vault_login(
    session: requests.Session,
    url: str,
    body: dict[str, str],
    headers: dict[str, str],
    verify: str | bool,
    timeout: float,
) -> tuple[str, float | None]:
    response = send(session, "POST", url, what="Vault", json=body, headers=headers, verify=verify, timeout=timeout)
    if response.status_code in (400, 401, 403):
        raise PermanentError(f"Vault refused the login ({response.status_code})", reason="auth_failed")
    _raise_for_vault_error(response, "login")
    auth = _json(response).get("auth")
    if not isinstance(auth, dict) or not isinstance(auth.get("client_token"), str):
        raise PermanentError("Vault's login answer holds no token", reason="auth_failed")
    lease = auth.get("lease_duration")
    # A lease of 0 means the token does not expire (root-like tokens).
    return auth["client_token"], float(lease) if isinstance(lease, int | float) and lease > 0 else None


def _raise_for_vault_error(response: requests.Response, operation: str, *, refused: str | None = None) -> None:
    status = response.status_code
    if status < 400:
        return
    # Vault's API docs: errors are a JSON object {"errors": ["message", ...]}.
    errors = _json(response, strict=False).get("errors")
    detail = "; ".join(str(e) for e in errors)[:200] if isinstance(errors, list) and errors else f"HTTP {status}"
    message = f"Vault {operation} failed ({status}): {detail}"
    if status == 429 or status >= 500:
        # 503: sealed, or a standby that cannot forward; 429: rate limited (Retry-After when given).
        raise RetryableError(message, reason="ca_unavailable", retry_after=_retry_after(response))
    reasons = {400: refused or "csr_rejected", 403: "permission_denied", 404: "unknown_role", 405: "unknown_role"}
    raise PermanentError(message, reason=reasons.get(status, "ca_refused"))


def _json(response: requests.Response, *, strict: bool = True) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError as exc:
        if not strict:
            return {}
        raise PermanentError("Vault's answer is not JSON", reason="bad_ca_answer") from exc
    return value if isinstance(value, dict) else {}


def _vault_serial(serial: int) -> str:
    """A serial number as Vault writes it: lower-case hex bytes joined by colons (``39:dd:2e:...``)."""
    raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
    return ":".join(f"{byte:02x}" for byte in raw)


def _load_csr(csr_der: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_der_x509_csr(csr_der)
    except ValueError as exc:
        raise PermanentError("the CSR is not a readable DER PKCS#10 request", reason="csr_invalid") from exc


def _csr_pem(csr_der: bytes) -> str:
    return _load_csr(csr_der).public_bytes(Encoding.PEM).decode("ascii")


def _names(csr_der: bytes) -> dict[str, str]:
    """The CSR's names in Vault's sign parameters (``common_name``, ``alt_names``, ``ip_sans``)."""
    csr = _load_csr(csr_der)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sans.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    common = [a.value for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    names: dict[str, str] = {}
    cn = str(common[0]) if common else (dns[0] if dns else "")
    if cn:
        names["common_name"] = cn
    if dns:
        names["alt_names"] = ",".join(dns)
    if ips:
        names["ip_sans"] = ",".join(ips)
    return names
