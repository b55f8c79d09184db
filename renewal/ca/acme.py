"""ACME (RFC 8555): order Key Vault's CSR from an ACME server, proving control of each name with dns-01.

For step-ca, Vault's and OpenBao's ACME, EJBCA's ACME, and public ACME CAs. JWS, nonces and message formats come
from certbot's ``acme`` package; this module holds the order flow, the dns-01 records, ARI and error translation.

Profile options (``RENEWAL_CA_PROFILES``, adapter ``acme``):

===========================  ========  ==========  ===================================================================
option                       type      default     meaning
===========================  ========  ==========  ===================================================================
``directory_url``            string    required    the ACME directory; https, or plain http on loopback only
``account_key_setting``      string    (none)      name of the app setting holding the account key (PEM, EC P-256/
                                                   P-384 or RSA); in Azure a Key Vault reference to a secret
``account_key_store_path``   string    (none)      development only: without ``account_key_setting``, keep a generated
                                                   key in this file (created once, mode 0600) and reuse it
``contact_email``            string    (none)      the account's contact (``mailto:``)
``eab_kid``                  string    (none)      External Account Binding key id (RFC 8555 §7.3.4), from the CA
``eab_hmac_key_setting``     string    (none)      name of the app setting holding the EAB HMAC key (base64url, as the
                                                   CA hands it out); goes with ``eab_kid``
``dns_provider``             string    required    ``azure`` (Azure DNS, public or private zone) or ``challtestsrv``
``dns_options``              object    ``{}``      the provider's options: see ``renewal.dns.azure`` and
                                                   ``devstack.challtestsrv_dns``
``ca_bundle_path``           string    (none)      PEM file of CAs to trust for the ACME server's TLS (a private CA)
``ca_bundle_setting``        string    (none)      app setting holding that PEM, instead of the file
``allowed_hosts``            list      ``[]``      host names, besides the directory's own, that the directory and
                                                   orders may send us to (a CA serving parts of ACME elsewhere)
``propagation_seconds``      number    0           wait after publishing the TXT records before answering challenges
``poll_timeout_seconds``     number    60          how long to wait for the challenges to be validated
``issuance_wait_seconds``    number    30          how long to wait for a finalized order to be issued; past it
                                                   ``submit`` answers ``Pending`` with the order URL, and ``poll``
                                                   continues; 0 answers ``Pending`` at once while it is processing
``timeout_seconds``          number    30          timeout of each HTTP request
===========================  ========  ==========  ===================================================================

Example::

    {"corp-acme": {"adapter": "acme", "directory_url": "https://ca.corp.example/acme/acme/directory",
                   "account_key_setting": "ACME_ACCOUNT_KEY", "contact_email": "pki@corp.example",
                   "eab_kid": "kid-1", "eab_hmac_key_setting": "ACME_EAB_HMAC",
                   "dns_provider": "azure",
                   "dns_options": {"subscription_id": "00000000-0000-0000-0000-000000000000",
                                   "resource_group": "dns", "zone": "corp.example", "private": false}}}

The account key. The app has no write access to Key Vault secrets (by design: it only merges certificates), so in
Azure the account key is provisioned once as a Key Vault secret and named through ``account_key_setting`` (a Key
Vault reference). Without it, a key is generated: kept in ``account_key_store_path`` when given (development), or
else used for this renewal only, which registers a new account each time and cannot ``poll`` an order later.
Configuring a profile accepts the CA's terms of service (``termsOfServiceAgreed``).

The flow (RFC 8555 §7): find the account (``onlyReturnExisting``, §7.3.1) or create it, with EAB when configured;
order the CSR's names (§7.4); for each pending authorization publish ``_acme-challenge.<name>`` (§8.4), answer
the challenge, wait until valid, and remove the records whatever happened; finalize with Key Vault's CSR as it is;
download the chain (§7.4.2), leaf first.

Where requests go. RFC 8555 has the client POST its account-signed JWS, and the CSR, to whatever URLs the
directory and the order name (§7.1). Every such URL (``newNonce``, ``newAccount``, ``newOrder``, the order, its
authorizations, challenges, ``finalize``, ``certificate``, ``renewalInfo``, ``revokeCert``, ``keyChange``, the account)
must be https on the directory's own host or one in ``allowed_hosts`` (plain http only when the directory itself is
plain http on loopback, for development); anything else is refused before a request is sent (``acme_url_refused``).
A 3xx answer is never followed (``ca_redirect_refused``).

ARI (RFC 9773): ``suggested_window`` gives the CA's suggested renewal window for a certificate when the directory
offers ``renewalInfo``; ``submit_replacing`` orders with ``replaces`` set to the previous certificate's ARI id.
The renewal flow calls ``submit_replacing`` when it knows the certificate being renewed; ``submit`` is the plain
protocol method.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import requests
from acme import challenges, crypto_util, messages
from acme import errors as acme_errors
from acme.client import ClientNetwork, ClientV2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.b64 import b64decode
from josepy.errors import DeserializationError
from josepy.interfaces import JSONDeSerializable
from josepy.json_util import field as json_field
from josepy.jwa import ES256, ES384, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA
from requests.adapters import HTTPAdapter

from renewal._shared.http import redirect_refused, retry_after_seconds, tls_untrusted, tls_verification_failed
from renewal._shared.urls import host_of, is_loopback_host
from renewal.ca._options import (
    CaBundleOptions,
    HostNames,
    HttpsUrl,
    SecretSetting,
    between,
    parse_options,
    profile_problem,
    tls_verify,
    together,
)
from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.dns import DnsProvider, dns_provider_for
from renewal.errors import ConfigurationError, PermanentError, RenewalError, RetryableError

__all__ = ["AccountKey", "AcmeCA", "AcmeOptions", "ari_certificate_id"]

AccountKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_log = logging.getLogger(__name__)
# The acme package logs JWS payloads (our CSR) and response bodies (certificates) at DEBUG; none may reach a log.
logging.getLogger("acme.client").setLevel(logging.INFO)

_PROFILES_SETTING = "RENEWAL_CA_PROFILES"
_USER_AGENT = "keyvault-private-ca-renewal"
# RFC 8555 §6.7 problem types a later attempt can outlive; "dns" and "connection" are failed lookups or
# connections during validation (§8), which a new order may pass.
_RETRYABLE_PROBLEMS = frozenset({"rateLimited", "serverInternal", "badNonce", "dns", "connection"})
_DEFAULT_PENDING_RETRY = 10.0
# The directory's URL fields (RFC 8555 §7.1.1, RFC 9773 §4.1); "meta" holds only links for humans.
# RFC 5280 §5.3.1 CRLReason codes, as RFC 8555 §7.6 sends them in "reason".
_REVOCATION_REASONS = {
    "unspecified": 0,
    "key_compromise": 1,
    "affiliation_changed": 3,
    "superseded": 4,
    "cessation_of_operation": 5,
}
_DIRECTORY_URLS = ("newNonce", "newAccount", "newOrder", "newAuthz", "revokeCert", "keyChange", "renewalInfo")
_UP_TO_10_MINUTES = between(0, 600)


def ari_certificate_id(certificate_pem: str) -> str | None:
    """The certificate's ARI identifier (RFC 9773 §4.1), or ``None`` when it has no AKI keyIdentifier.

    "the base64url-encoded keyIdentifier ... a period ... the base64url-encoded serialNumber" where the serial is
    "the DER encoding of the serial number, without the tag and length bytes" (so with a leading zero byte when
    its high bit is set), both without padding.

    Raises:
        PermanentError: reason ``certificate_invalid`` when the PEM is not a certificate.
    """
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii", errors="replace"))
    except ValueError as exc:
        raise PermanentError("not a PEM certificate", reason="certificate_invalid") from exc
    try:
        key_identifier = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    if key_identifier.key_identifier is None:
        return None
    serial = certificate.serial_number
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    return f"{_b64url(key_identifier.key_identifier)}.{_b64url(serial_der)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


@dataclass(slots=True)
class _LastResponse:
    """What the last HTTP answer said that ``acme``'s exceptions drop: its status and ``Retry-After``."""

    status: int | None = None
    retry_after: float | None = None

    def record(self, response: requests.Response, *args: object, **kwargs: object) -> requests.Response:
        self.status = response.status_code
        self.retry_after = retry_after_seconds(response)
        return response


@dataclass(slots=True)
class _Session:
    client: ClientV2
    last: _LastResponse = field(default_factory=_LastResponse)

    def post_as_get(self, url: str) -> requests.Response:
        # RFC 8555 §6.3: POST-as-GET, an empty payload signed with the account key.
        return self.client.net.post(url, None, new_nonce_url=self.client.directory["newNonce"])

    def post(self, url: str, body: JSONDeSerializable) -> requests.Response:
        return self.client.net.post(url, body, new_nonce_url=self.client.directory["newNonce"])


@dataclass(frozen=True, slots=True)
class _UrlPolicy:
    """Which URLs the account-signed JWS and the CSR may go to: https on the directory's host or ``allowed_hosts``.

    Attributes:
        hosts: the directory's host and the allowed ones, lower case.
        loopback_http: the directory itself is plain http on loopback (development), so plain http to a loopback
            host among ``hosts`` is allowed too.
    """

    hosts: frozenset[str]
    loopback_http: bool

    @classmethod
    def for_directory(cls, directory_url: str, allowed_hosts: Iterable[str]) -> _UrlPolicy:
        parts = urlsplit(directory_url)
        host = (parts.hostname or "").lower()
        return cls(frozenset({host, *allowed_hosts}), parts.scheme == "http" and is_loopback_host(host))

    def check(self, url: str, name: str) -> None:
        """Refuse ``url`` unless it is allowed; ``name`` says which URL it is (``newOrder``, ``order``).

        Raises:
            PermanentError: reason ``acme_url_refused``, naming only the URL's host.
        """
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 - parsing the port is what raises for a malformed one
        except ValueError:
            host, parts = "", urlsplit("")
        secure = parts.scheme == "https" or (parts.scheme == "http" and self.loopback_http and is_loopback_host(host))
        if secure and host in self.hosts and not parts.username and not parts.password:
            return
        raise PermanentError(
            f"the ACME server's {name} URL is on {host_of(url)} over {parts.scheme or 'no scheme'}; only https URLs "
            "on the directory's own host (or one in allowed_hosts) are contacted, so nothing was sent there",
            reason="acme_url_refused",
        )


class _GuardedTransport(HTTPAdapter):
    """The ACME session's transport: every request passes the ``_UrlPolicy`` first, and a 3xx is never passed on.

    ``acme``'s ``ClientNetwork`` sends with requests' defaults, which follow redirects with the JWS body (307/308)
    to any host; checking here covers the requests ``acme`` makes on its own (nonces, challenges) too.
    """

    def __init__(self, policy: _UrlPolicy) -> None:
        super().__init__()
        self._policy = policy

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        url = request.url or ""
        self._policy.check(url, "next")
        response = super().send(request, *args, **kwargs)
        if 300 <= response.status_code < 400:
            response.close()
            location = response.headers.get("Location")
            raise redirect_refused("the ACME server", response.status_code, location, url, reason="ca_redirect_refused")
        return response


class _NewOrder(messages.NewOrder):
    """newOrder with RFC 9773 §5's ``replaces``, which this ``acme`` version does not model."""

    replaces: str | None = json_field("replaces", omitempty=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeOptions(CaBundleOptions):
    """An ``acme`` profile's options (the table above); ``dns_options`` are the DNS provider's to read."""

    directory_url: HttpsUrl
    account_key_setting: SecretSetting | None = None
    account_key_store_path: Path | None = None
    contact_email: str | None = None
    eab_kid: str | None = None
    eab_hmac_key_setting: SecretSetting | None = None
    dns_provider: str
    dns_options: Mapping[str, object] = field(default_factory=dict)
    allowed_hosts: HostNames = ()
    propagation_seconds: Annotated[float, _UP_TO_10_MINUTES] = 0.0
    poll_timeout_seconds: Annotated[float, _UP_TO_10_MINUTES] = 60.0
    issuance_wait_seconds: Annotated[float, _UP_TO_10_MINUTES] = 30.0
    timeout_seconds: Annotated[float, between(0, 300)] = 30.0

    def __post_init__(self) -> None:
        CaBundleOptions.__post_init__(self)
        together(self, "eab_kid", "eab_hmac_key_setting")


class AcmeCA:
    """A CA adapter for ACME servers, with dns-01 challenges through a ``DnsProvider``."""

    def __init__(
        self,
        *,
        directory_url: str,
        account_key: AccountKey,
        dns: DnsProvider,
        contact_email: str | None = None,
        eab: tuple[str, str] | None = None,
        ca_bundle_path: str | None = None,
        allowed_hosts: tuple[str, ...] = (),
        propagation_seconds: float = 0.0,
        poll_timeout_seconds: float = 60.0,
        issuance_wait_seconds: float = 30.0,
        timeout_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        account_configured: bool = True,
    ) -> None:
        """Order from the ACME server at ``directory_url`` with ``account_key``.

        ``account_key`` is RSA or EC P-256/P-384; ``eab`` is ``(key id, base64url HMAC key)``; ``allowed_hosts``
        are host names besides the directory's that its URLs may point at; ``clock`` is a monotonic clock in
        seconds and ``sleep`` waits; ``account_configured`` is false for a key generated for this process only
        (``check`` then does not look for its account).
        """
        self._directory_url = directory_url
        self._policy = _UrlPolicy.for_directory(directory_url, (h.lower() for h in allowed_hosts))
        self._key, self._alg = _jwk(account_key)
        self._dns = dns
        self._contact = contact_email
        self._eab = eab
        self._verify: str | bool = ca_bundle_path or True
        self._propagation = propagation_seconds
        self._poll_timeout = poll_timeout_seconds
        self._issuance_wait = issuance_wait_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._sleep = sleep
        self._account_configured = account_configured

    def __repr__(self) -> str:
        return f"AcmeCA(directory_url={self._directory_url!r}, eab={self._eab is not None})"

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> AcmeCA:
        """Build an ``AcmeCA`` from a profile's options, resolving secret settings from ``environ``.

        Raises:
            ConfigurationError: an option is unknown or malformed, a file cannot be read or written, or a secret
                setting is missing or malformed; names ``RENEWAL_CA_PROFILES`` or the setting, never a value.
        """
        options = parse_options(AcmeOptions, profile, environ)
        if options.account_key_setting is not None:
            setting = options.account_key_setting.setting
            account_key = _account_key_from_pem(
                options.account_key_setting.pem(),
                ConfigurationError(setting, "is not a PEM private key (EC P-256/P-384 or RSA)"),
            )
        elif options.account_key_store_path is not None:
            account_key = _stored_account_key(profile, options.account_key_store_path)
        else:
            account_key = ec.generate_private_key(ec.SECP256R1())
        eab = None
        if options.eab_kid is not None and options.eab_hmac_key_setting is not None:
            hmac_key = options.eab_hmac_key_setting
            try:
                b64decode(hmac_key.value)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(hmac_key.setting, "must be the EAB HMAC key, base64url") from exc
            eab = (options.eab_kid, hmac_key.value)
        try:
            dns = dns_provider_for(options.dns_provider, options.dns_options, environ)
        except ConfigurationError as exc:
            if exc.setting != _PROFILES_SETTING:
                raise
            raise profile_problem(profile, exc.message.removeprefix(f"setting {_PROFILES_SETTING}: ")) from exc
        verify = tls_verify(options)
        return cls(
            directory_url=options.directory_url,
            account_key=account_key,
            dns=dns,
            contact_email=options.contact_email,
            eab=eab,
            ca_bundle_path=verify if isinstance(verify, str) else None,
            allowed_hosts=options.allowed_hosts,
            propagation_seconds=options.propagation_seconds,
            poll_timeout_seconds=options.poll_timeout_seconds,
            issuance_wait_seconds=options.issuance_wait_seconds,
            timeout_seconds=max(1.0, options.timeout_seconds),
            account_configured=options.account_key_setting is not None or options.account_key_store_path is not None,
        )

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Order ``request``'s CSR: answer the dns-01 challenges, finalize, and download the chain.

        Raises:
            PermanentError: the server refused (reason ``acme_`` + the RFC 8555 §6.7 problem type in snake case,
                e.g. ``acme_rejected_identifier``, ``acme_external_account_required``, ``acme_bad_csr``,
                ``acme_unauthorized`` for a failed challenge), the CSR is unreadable (``csr_invalid``), no dns-01
                challenge was offered (``acme_no_dns01_challenge``), the server's TLS certificate does not verify
                (``ca_tls_untrusted``), it handed out a URL off its host or not https (``acme_url_refused``) or
                answered a redirect (``ca_redirect_refused``), its answers are not ACME (``acme_bad_answer``), or
                the DNS provider refused (``dns_*``).
            RetryableError: the server is unreachable (``acme_unreachable``), timed out (``acme_timeout``), answered
                5xx or ``rateLimited``/``serverInternal`` (with ``retry_after`` from ``Retry-After``), validation
                took longer than ``poll_timeout_seconds`` (``acme_validation_timeout``), or DNS failed transiently.
        """
        return self._order(request, replaces=None)

    def submit_replacing(self, request: SigningRequest, previous_leaf_pem: str) -> Issued | Pending:
        """Like ``submit``, and tell the CA which certificate the new one replaces (RFC 9773 §5).

        ``replaces`` is sent only when the directory offers ``renewalInfo`` and the previous leaf has an AKI
        keyIdentifier. The renewal flow calls this when it knows the certificate being renewed.

        Raises:
            PermanentError, RetryableError: as ``submit``; ``certificate_invalid`` for an unreadable previous leaf.
        """
        return self._order(request, replaces=ari_certificate_id(previous_leaf_pem))

    def poll(self, reference: str) -> Issued | Pending:
        """Look at the order ``reference`` (its URL) again: ``Issued`` once valid, ``Pending`` while processing.

        The order belongs to the account, so the same account key must be configured (``account_key_setting``).

        Raises:
            PermanentError: ``unknown_reference`` (not an order URL), ``acme_account_does_not_exist`` (another
                account key), ``acme_order_not_finalized`` (the order was never finalized), or a refusal as in
                ``submit``.
            RetryableError: as in ``submit``.
        """
        if not re.match(r"^https?://", reference):
            raise PermanentError(f"{reference[:60]!r} is not an ACME order URL", reason="unknown_reference")
        session = self._connect()
        with _translated(session.last):
            self._find_account(session, create=False)
            order = messages.Order.from_json(session.post_as_get(reference).json())
            return self._await_certificate(session, reference, order, self._clock() + self._issuance_wait)

    def suggested_window(self, certificate_pem: str) -> tuple[datetime, datetime] | None:
        """The CA's suggested renewal window for the certificate (RFC 9773 §4.2), tz-aware UTC.

        ``None`` when the directory offers no ``renewalInfo`` or the certificate has no AKI keyIdentifier.

        Raises:
            PermanentError: the server refused or answered a window that ends before it starts (``ari_bad_window``).
            RetryableError: the server is unreachable or failing, as in ``submit``.
        """
        certificate_id = ari_certificate_id(certificate_pem)
        session = self._connect()
        with _translated(session.last):
            base = _directory_entry(session.client.directory, "renewalInfo")
            if base is None or certificate_id is None:
                return None
            # RFC 9773 §4.2: "the client sends an unauthenticated GET request to the path <renewalInfo>/<id>".
            response = session.client.net.get(f"{base.rstrip('/')}/{certificate_id}")
            window = messages.RenewalInfo.from_json(response.json()).suggested_window
            start, end = _utc(window.start), _utc(window.end)
        if end <= start:
            raise PermanentError("the suggested renewal window ends before it starts", reason="ari_bad_window")
        return start, end

    def revoke(self, certificate_pem: str, *, reason: str = "superseded") -> None:
        """Revoke a certificate this account ordered (RFC 8555 §7.6), signed with the account key.

        "alreadyRevoked" counts as revoked: a redelivered retirement must not fail. The account must exist (the
        key that ordered it: ``account_key_setting`` or ``account_key_store_path``).

        Raises:
            PermanentError: ``certificate_invalid`` (not PEM), ``acme_account_does_not_exist``, ``acme_unauthorized``
                (the account may not revoke it), ``acme_bad_revocation_reason``, or a refusal as in ``submit``.
            RetryableError: as in ``submit``.
        """
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii", errors="replace"))
        except ValueError as exc:
            raise PermanentError("the certificate to revoke is not PEM", reason="certificate_invalid") from exc
        session = self._connect()
        with _translated(session.last):
            if _directory_entry(session.client.directory, "revokeCert") is None:
                raise PermanentError("the ACME directory offers no revokeCert", reason="acme_bad_answer")
            self._find_account(session, create=False)
            try:
                session.client.revoke(certificate, _REVOCATION_REASONS.get(reason, 0))
            except messages.Error as exc:
                if exc.code != "alreadyRevoked":
                    raise

    def check(self) -> str:
        """Read the directory and, for a configured account key, find its account (``onlyReturnExisting``);
        nothing is ordered or created.

        Raises:
            PermanentError: the directory is refused or unreadable, or the configured key has no account
                (``acme_account_does_not_exist``), as in ``submit``.
            RetryableError: the server is unreachable or failing, as in ``submit``.
        """
        session = self._connect()
        account = "no account key configured (one is created at the first order)"
        if self._account_configured:
            with _translated(session.last):
                self._find_account(session, create=False)
            account = "account found"
        offers = [name for name in ("renewalInfo", "revokeCert") if _directory_entry(session.client.directory, name)]
        extras = f"; offers {', '.join(offers)}" if offers else ""
        return f"ACME directory {self._directory_url}: reachable; {account}{extras}"

    def _order(self, request: SigningRequest, *, replaces: str | None) -> Issued | Pending:
        try:
            csr = x509.load_der_x509_csr(request.csr_der)
        except ValueError as exc:
            raise PermanentError("the CSR is not a readable DER PKCS#10 request", reason="csr_invalid") from exc
        session = self._connect()
        with _translated(session.last):
            self._find_account(session, create=True)
            directory = session.client.directory
            if _directory_entry(directory, "renewalInfo") is None:
                # RFC 9773 §5: clients do not send replaces to a server that does not advertise renewalInfo.
                replaces = None
            dns_names, ip_addresses = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
            identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name) for name in dns_names]
            identifiers += [messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(ip)) for ip in ip_addresses]
            response = session.post(directory["newOrder"], _NewOrder(identifiers=identifiers, replaces=replaces))
            order_url = response.headers["Location"]
            # The order URL becomes the Pending reference that poll() later sends the account's JWS to.
            self._policy.check(order_url, "order")
            order = messages.Order.from_json(response.json())
            _log.debug("ACME order %s for %d identifier(s)", order_url, len(identifiers))
            self._authorize(session, order)
            finalized = messages.Order.from_json(
                session.post(order.finalize, messages.CertificateRequest(csr=csr)).json()
            )
            return self._await_certificate(session, order_url, finalized, self._clock() + self._issuance_wait)

    def _connect(self) -> _Session:
        last = _LastResponse()
        # ClientNetwork hands verify_ssl to requests, which takes a CA bundle path as well as a bool.
        net = ClientNetwork(
            key=self._key,
            alg=self._alg,
            verify_ssl=self._verify,  # type: ignore[arg-type]  # requests accepts a CA bundle path here
            user_agent=_USER_AGENT,
            timeout=int(self._timeout),
        )
        net.session.hooks["response"].append(last.record)
        transport = _GuardedTransport(self._policy)
        net.session.mount("https://", transport)
        net.session.mount("http://", transport)
        with _translated(last):
            directory = ClientV2.get_directory(self._directory_url, net)
        # Refuse a directory pointing elsewhere before its first use, whichever entry the flow reaches first.
        for name in _DIRECTORY_URLS:
            url = _directory_entry(directory, name)
            if url is not None:
                self._policy.check(url, name)
        return _Session(ClientV2(directory, net), last)

    def _find_account(self, session: _Session, *, create: bool) -> None:
        self._locate_account(session, create=create)
        account = session.client.net.account
        if account is not None and account.uri:
            # The account URL is the JWS "kid" (RFC 8555 §6.2): the account's resource on the same server.
            self._policy.check(account.uri, "account")

    def _locate_account(self, session: _Session, *, create: bool) -> None:
        client = session.client
        try:
            # RFC 8555 §7.3.1: onlyReturnExisting finds the account of this key without creating one (and
            # without spending a single-use EAB key again).
            client.new_account(messages.NewRegistration(only_return_existing=True))
            return
        except acme_errors.ConflictError as exc:
            client.net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            return
        except messages.Error as exc:
            if exc.code != "accountDoesNotExist":
                raise
            if not create:
                raise PermanentError(
                    "the ACME account of this key does not exist (is the account key the one that ordered?)",
                    reason="acme_account_does_not_exist",
                ) from exc
        binding = None
        if self._eab is not None:
            kid, hmac_key = self._eab
            binding = messages.ExternalAccountBinding.from_data(
                account_public_key=self._key.public_key(), kid=kid, hmac_key=hmac_key, directory=client.directory
            )
        registration = messages.NewRegistration.from_data(
            email=self._contact, terms_of_service_agreed=True, external_account_binding=binding
        )
        try:
            client.new_account(registration)
        except acme_errors.ConflictError as exc:
            client.net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())

    def _authorize(self, session: _Session, order: messages.Order) -> None:
        pending: list[tuple[str, messages.Authorization, messages.ChallengeBody]] = []
        for url in order.authorizations:
            authorization = messages.Authorization.from_json(session.post_as_get(url).json())
            if authorization.status == messages.STATUS_VALID:
                continue
            challenge = next((c for c in authorization.challenges if isinstance(c.chall, challenges.DNS01)), None)
            if challenge is None:
                raise PermanentError(
                    f"the server offers no dns-01 challenge for {authorization.identifier.value}",
                    reason="acme_no_dns01_challenge",
                )
            pending.append((url, authorization, challenge))
        if not pending:
            return

        published: list[tuple[str, str]] = []
        try:
            for _, authorization, challenge in pending:
                assert isinstance(challenge.chall, challenges.DNS01)
                # RFC 8555 §8.4: TXT "_acme-challenge.<domain>" = base64url(SHA-256(key authorization)); for a
                # wildcard the authorization's identifier is the base domain already.
                name = challenge.chall.validation_domain_name(authorization.identifier.value)
                value = challenge.chall.validation(self._key)
                self._dns.set_txt(name, value)
                published.append((name, value))
            if self._propagation:
                self._sleep(self._propagation)
            for _, _, challenge in pending:
                session.client.answer_challenge(challenge, challenge.response(self._key))
            deadline = self._clock() + self._poll_timeout
            for url, _, _ in pending:
                self._await_authorization(session, url, deadline)
        finally:
            for name, value in published:
                try:
                    self._dns.delete_txt(name, value)
                except RenewalError as exc:
                    _log.warning("could not remove the dns-01 record %s (reason=%s)", name, exc.reason)

    def _await_authorization(self, session: _Session, url: str, deadline: float) -> None:
        while True:
            response = session.post_as_get(url)
            authorization = messages.Authorization.from_json(response.json())
            status = authorization.status
            if status == messages.STATUS_VALID:
                return
            if status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                errors = [c.error for c in authorization.challenges if c.error is not None]
                identifier = authorization.identifier.value
                if errors:
                    raise _problem(errors[0], None, None, f"dns-01 validation of {identifier} failed")
                raise PermanentError(
                    f"the authorization of {identifier} became {status}", reason="acme_authorization_failed"
                )
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise RetryableError(
                    f"the server did not validate {authorization.identifier.value} in time",
                    reason="acme_validation_timeout",
                )
            self._sleep(min(session.last.retry_after or 0.5, 5.0, remaining))

    def _await_certificate(
        self, session: _Session, order_url: str, order: messages.Order, deadline: float
    ) -> Issued | Pending:
        while True:
            if order.status == messages.STATUS_VALID and order.certificate:
                return _issued(session.post_as_get(order.certificate).text)
            if order.status == messages.STATUS_INVALID:
                if order.error is not None:
                    raise _problem(order.error, None, None, "the order failed")
                raise PermanentError("the order became invalid", reason="acme_order_invalid")
            if order.status != messages.STATUS_PROCESSING:
                raise PermanentError(
                    f"the order is {order.status} instead of finalized; submit again",
                    reason="acme_order_not_finalized",
                )
            # RFC 8555 §7.4: "processing" — poll the order after Retry-After.
            retry_after = session.last.retry_after
            remaining = deadline - self._clock()
            if remaining <= 0:
                return Pending(order_url, retry_after=retry_after or _DEFAULT_PENDING_RETRY)
            self._sleep(min(retry_after or 1.0, remaining))
            order = messages.Order.from_json(session.post_as_get(order_url).json())


@contextlib.contextmanager
def _translated(last: _LastResponse) -> Iterator[None]:
    """Turn whatever ``acme``, ``josepy`` and ``requests`` raise into our errors (``raise ... from``)."""
    try:
        yield
    except RenewalError:
        raise
    except messages.Error as exc:
        raise _problem(exc, last.status, last.retry_after, "the ACME server refused") from exc
    except (acme_errors.BadNonce, acme_errors.MissingNonce) as exc:
        raise RetryableError("the ACME server's nonces did not work out", reason="acme_bad_nonce") from exc
    except acme_errors.ClientError as exc:
        status = last.status or 0
        if status >= 500 or status == 429:
            raise RetryableError(
                f"the ACME server failed with HTTP {status}", reason="acme_unavailable", retry_after=last.retry_after
            ) from exc
        raise PermanentError(
            f"the ACME server answered HTTP {status} without a problem document", reason="acme_bad_answer"
        ) from exc
    except acme_errors.Error as exc:
        raise PermanentError(f"ACME protocol error: {type(exc).__name__}", reason="acme_protocol_error") from exc
    except requests.exceptions.SSLError as exc:
        if tls_verification_failed(exc):
            url = exc.request.url if exc.request is not None else None
            raise tls_untrusted("the ACME server", url or "", reason="ca_tls_untrusted") from exc
        raise RetryableError("the ACME server is unreachable (TLS failed)", reason="acme_unreachable") from exc
    except requests.Timeout as exc:
        raise RetryableError("the ACME server did not answer in time", reason="acme_timeout") from exc
    except requests.RequestException as exc:
        raise RetryableError("the ACME server is unreachable", reason="acme_unreachable") from exc
    except (DeserializationError, ValueError, KeyError, TypeError) as exc:
        raise PermanentError(
            f"the ACME server's answer is not what RFC 8555 describes ({type(exc).__name__})",
            reason="acme_bad_answer",
        ) from exc


def _problem(
    error: messages.Error, status: int | None, retry_after: float | None, context: str
) -> PermanentError | RetryableError:
    code = error.code or str(error.typ).rsplit(":", 1)[-1] or "unknown"
    reason = "acme_" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", code).lower()
    detail = (error.detail or error.title or "")[:300]
    text = f"{context}: {code}" + (f": {detail}" if detail else "")
    if code in _RETRYABLE_PROBLEMS or (status is not None and (status >= 500 or status == 429)):
        return RetryableError(text, reason=reason, retry_after=retry_after)
    return PermanentError(text, reason=reason)


def _issued(bundle: str) -> Issued:
    try:
        certificates = x509.load_pem_x509_certificates(bundle.encode("ascii", errors="replace"))
    except ValueError as exc:
        raise PermanentError("the downloaded certificate chain is not PEM", reason="acme_bad_answer") from exc
    pems = [c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates]
    # RFC 8555 §9.1: "The end-entity certificate ... first; each following certificate SHOULD directly certify
    # the one preceding it."
    return Issued(pems[0], tuple(pems[1:]))


def _directory_entry(directory: messages.Directory, name: str) -> str | None:
    try:
        value = directory[name]
    except KeyError:
        return None
    return value if isinstance(value, str) else None


def _jwk(key: AccountKey) -> tuple[JWK, JWASignature]:
    """The account key as a JWK and its JWS algorithm (RFC 7518 §3.1: RS256, ES256 for P-256, ES384 for P-384).

    Raises:
        ValueError: another key type or curve.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        return JWKRSA(key=key), RS256
    if isinstance(key.curve, ec.SECP256R1):
        return JWKEC(key=key), ES256
    if isinstance(key.curve, ec.SECP384R1):
        return JWKEC(key=key), ES384
    raise ValueError("the ACME account key must be RSA, or EC P-256 or P-384")


def _account_key_from_pem(data: bytes, error: ConfigurationError) -> AccountKey:
    try:
        key = serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError) as exc:
        raise error from exc
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
        return key
    raise error


def _stored_account_key(profile: CAProfile, path: Path) -> AccountKey:
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(pem)
        except FileExistsError:
            pass  # another instance wrote it first: use theirs
        except OSError as exc:
            raise profile_problem(profile, f"option account_key_store_path: cannot write it ({exc.strerror})") from exc
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise profile_problem(profile, f"option account_key_store_path: cannot read it ({exc.strerror})") from exc
    return _account_key_from_pem(data, profile_problem(profile, "option account_key_store_path: holds no usable key"))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
