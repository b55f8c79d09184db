"""The ACME adapter against a real Pebble with pebble-challtestsrv as its DNS: the contract, dns-01, EAB, errors."""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from devstack.challtestsrv_dns import ChallTestSrvDns
from renewal.ca import CAAdapter, CAProfile, Issued, Pending, SigningRequest, adapter_for
from renewal.ca.acme import AcmeCA
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.ca.conftest import CONTRACT_DNS_NAMES
from tests.ca.contract import CAAdapterContract, poll_until_issued, verify_against_its_own_chain
from tests.ca.servers import (
    ChallTestServer,
    PebbleServer,
    acme_options,
    challtestsrv,
    failing_server,
    free_port,
    pebble_server,
    txt_records,
)

BLOCKED = "blocked.devstack.test"
EAB_KID = "kid-1"
EAB_HMAC = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestServer]:
    with challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as server:
        yield server


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, dns_server: ChallTestServer) -> Iterator[PebbleServer]:
    with pebble_server(tmp_path_factory.mktemp("pebble"), dns_server, blocked_domains=(BLOCKED,)) as server:
        yield server


@pytest.fixture(scope="module")
def pebble_eab(tmp_path_factory: pytest.TempPathFactory, dns_server: ChallTestServer) -> Iterator[PebbleServer]:
    directory = tmp_path_factory.mktemp("pebble-eab")
    with pebble_server(directory, dns_server, eab_required=True, eab_keys={EAB_KID: EAB_HMAC}) as server:
        yield server


def _adapter(options: Mapping[str, object], environ: dict[str, str] | None = None) -> CAAdapter:
    return adapter_for(CAProfile("corp-acme", "acme", options), environ or {})


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _request_for(*names: str) -> SigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return SigningRequest(csr.public_bytes(serialization.Encoding.DER), "kv", names[0].split(".")[0])


class TestAcmeContract(CAAdapterContract):
    """ACME against Pebble keeps the contract; Pebble cannot hold an order for approval, so no deferral."""

    @pytest.fixture
    def adapter(self, pebble: PebbleServer) -> CAAdapter:
        return _adapter(acme_options(pebble))

    @pytest.fixture
    def rejecting_adapter(self, pebble_eab: PebbleServer) -> CAAdapter:
        # This Pebble requires External Account Binding, and the profile has none.
        return _adapter(acme_options(pebble_eab))

    @pytest.fixture(params=["closed-port", "503"])
    def unreachable_adapter(self, request: pytest.FixtureRequest, pebble: PebbleServer) -> Iterator[CAAdapter]:
        if request.param == "closed-port":
            yield _adapter(acme_options(pebble, directory_url=f"https://127.0.0.1:{free_port()}/dir"))
        else:
            with failing_server(503) as url:
                yield _adapter(acme_options(pebble, directory_url=f"{url}/dir"))


def test_chain_ends_at_the_root_pebble_serves(pebble: PebbleServer, keyvault_signing_request: SigningRequest) -> None:
    """The downloaded chain is Pebble's intermediate, which Pebble's root (management /roots/0) signed."""
    answer = _adapter(acme_options(pebble)).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    root = x509.load_pem_x509_certificate(pebble.root_pem().encode())
    last = x509.load_pem_x509_certificate(answer.chain_pem[-1].encode())
    last.verify_directly_issued_by(root)
    leaf = x509.load_pem_x509_certificate(answer.leaf_pem.encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == set(CONTRACT_DNS_NAMES)


def test_dns01_is_validated_through_challtestsrv_and_records_are_removed(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """Pebble looks up _acme-challenge TXT records at challtestsrv, and none is left once the order is done."""
    dns = pebble.challtestsrv
    hosts = [f"_acme-challenge.{name}" for name in CONTRACT_DNS_NAMES]
    for host in hosts:
        requests.post(f"{dns.management_url}/clear-request-history", json={"host": host, "type": "dns"}, timeout=5)

    answer = _adapter(acme_options(pebble)).submit(keyvault_signing_request)

    assert isinstance(answer, Issued)
    for host in hosts:
        history = requests.post(f"{dns.management_url}/dns-request-history", json={"host": host}, timeout=5).json()
        assert any(entry["Question"]["Qtype"] == 16 for entry in history), f"Pebble never looked up {host}"
        assert txt_records(dns.dns_address, host) == []


@contextmanager
def _refusing_acme_server(status: int, problem: str, retry_after: str) -> Iterator[str]:
    """A loopback ACME server whose newAccount answers ``status`` and problem ``problem``; yields its directory."""

    class Refusing(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: Mapping[str, object] | None, content_type: str = "application/json") -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Replay-Nonce", "AAAAAAAAAAAAAAAA")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if code >= 400:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            base = f"http://{self.headers['Host']}"
            self._reply(
                200, {"newNonce": f"{base}/nonce", "newAccount": f"{base}/account", "newOrder": f"{base}/order"}
            )

        def do_HEAD(self) -> None:
            self._reply(200, None)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = {"type": f"urn:ietf:params:acme:error:{problem}", "detail": "refused by the test server"}
            self._reply(status, body, "application/problem+json")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dir"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "problem", "reason"),
    [
        (429, "rateLimited", "acme_rate_limited"),
        (500, "serverInternal", "acme_server_internal"),
        (503, "malformed", "acme_malformed"),
    ],
)
def test_rate_limit_and_server_errors_are_retryable_with_retry_after(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest, status: int, problem: str, reason: str
) -> None:
    """rateLimited, serverInternal and any 5xx problem are RetryableError carrying the server's Retry-After."""
    with _refusing_acme_server(status, problem, "120") as directory_url, pytest.raises(RetryableError) as caught:
        _adapter(acme_options(pebble, directory_url=directory_url)).submit(keyvault_signing_request)
    assert caught.value.reason == reason
    assert caught.value.retry_after == 120


@pytest.mark.parametrize("problem", ["badCSR", "caa", "malformed", "unauthorized"])
def test_refusals_are_permanent_with_the_problem_type(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest, problem: str
) -> None:
    """A 4xx problem other than rateLimited is PermanentError acme_<problem type in snake case>."""
    with _refusing_acme_server(400, problem, "5") as directory_url, pytest.raises(PermanentError) as caught:
        _adapter(acme_options(pebble, directory_url=directory_url)).submit(keyvault_signing_request)
    assert not isinstance(caught.value, RetryableError)
    assert caught.value.reason == "acme_" + {"badCSR": "bad_csr"}.get(problem, problem)


class _WrongValueDns:
    """Publishes a TXT value that does not answer the challenge (a DNS provider writing the wrong thing)."""

    def __init__(self, inner: ChallTestSrvDns) -> None:
        self.inner = inner
        self.deleted: list[str] = []

    def set_txt(self, name: str, value: str) -> None:
        self.inner.set_txt(name, "not-the-key-authorization")

    def delete_txt(self, name: str, value: str) -> None:
        self.deleted.append(name)
        self.inner.delete_txt(name, value)


def test_failed_challenge_is_permanent_and_its_records_are_still_removed(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """A TXT value Pebble does not accept fails the order as acme_unauthorized; the records are removed anyway."""
    dns = _WrongValueDns(ChallTestSrvDns(pebble.challtestsrv.management_url))
    adapter = AcmeCA(
        directory_url=pebble.directory_url,
        account_key=ec.generate_private_key(ec.SECP256R1()),
        dns=dns,
        ca_bundle_path=str(pebble.tls_ca_path),
        poll_timeout_seconds=15,
    )
    with pytest.raises(PermanentError) as caught:
        adapter.submit(keyvault_signing_request)
    assert caught.value.reason == "acme_unauthorized"
    assert not isinstance(caught.value, RetryableError)
    assert sorted(dns.deleted) == sorted(f"_acme-challenge.{name}" for name in CONTRACT_DNS_NAMES)
    for name in dns.deleted:
        assert txt_records(pebble.challtestsrv.dns_address, name) == []


def test_identifier_the_ca_forbids_is_rejected_identifier(pebble: PebbleServer) -> None:
    """An order for a name on Pebble's block list is refused as acme_rejected_identifier, permanently."""
    with pytest.raises(PermanentError) as caught:
        _adapter(acme_options(pebble)).submit(_request_for(f"www.{BLOCKED}"))
    assert caught.value.reason == "acme_rejected_identifier"


def test_eab_account_is_created_with_the_binding(
    pebble_eab: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """With eab_kid and the HMAC key setting, a Pebble that requires EAB registers the account and issues."""
    options = acme_options(pebble_eab, eab_kid=EAB_KID, eab_hmac_key_setting="ACME_EAB_HMAC")
    answer = _adapter(options, {"ACME_EAB_HMAC": EAB_HMAC}).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    verify_against_its_own_chain(keyvault_signing_request.csr_der, answer, now=datetime.now(UTC))


def test_eab_required_but_missing_is_external_account_required(
    pebble_eab: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """Without EAB, a Pebble that requires it refuses the account: acme_external_account_required."""
    with pytest.raises(PermanentError) as caught:
        _adapter(acme_options(pebble_eab)).submit(keyvault_signing_request)
    assert caught.value.reason == "acme_external_account_required"


def test_eab_with_a_wrong_hmac_key_is_refused_and_not_shown(
    pebble_eab: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """An EAB signed with the wrong HMAC key is refused as acme_unauthorized, and no error text holds either key."""
    wrong = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    options = acme_options(pebble_eab, eab_kid=EAB_KID, eab_hmac_key_setting="ACME_EAB_HMAC")
    with pytest.raises(PermanentError) as caught:
        _adapter(options, {"ACME_EAB_HMAC": wrong}).submit(keyvault_signing_request)
    assert caught.value.reason == "acme_unauthorized"
    assert not isinstance(caught.value, RetryableError)
    assert wrong not in str(caught.value)
    assert EAB_HMAC not in str(caught.value)


def test_eab_is_not_needed_where_the_ca_does_not_require_it(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """EAB off: the same profile without eab_kid issues from a Pebble that does not require binding."""
    answer = _adapter(acme_options(pebble)).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)


def test_order_still_processing_is_pending_and_a_rebuilt_adapter_polls_it(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """With issuance_wait_seconds 0 submit answers Pending(order URL); an adapter rebuilt from the profile polls it."""
    environ = {"ACME_ACCOUNT_KEY": _pem_key(ec.generate_private_key(ec.SECP256R1()))}
    options = acme_options(pebble, account_key_setting="ACME_ACCOUNT_KEY", issuance_wait_seconds=0)

    first = _adapter(options, environ).submit(keyvault_signing_request)

    assert isinstance(first, Pending)
    assert first.reference.startswith(pebble.directory_url.removesuffix("/dir"))
    answer = poll_until_issued(_adapter(options, environ), first, timeout=15)
    verify_against_its_own_chain(keyvault_signing_request.csr_der, answer, now=datetime.now(UTC))


def test_polling_with_another_account_key_is_permanent(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest
) -> None:
    """An order URL polled with a key that has no account cannot be continued: acme_account_does_not_exist."""
    environ = {"ACME_ACCOUNT_KEY": _pem_key(ec.generate_private_key(ec.SECP256R1()))}
    options = acme_options(pebble, account_key_setting="ACME_ACCOUNT_KEY", issuance_wait_seconds=0)
    first = _adapter(options, environ).submit(keyvault_signing_request)
    assert isinstance(first, Pending)
    stranger = {"ACME_ACCOUNT_KEY": _pem_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))}
    with pytest.raises(PermanentError) as caught:
        _adapter(options, stranger).poll(first.reference)
    assert caught.value.reason == "acme_account_does_not_exist"


def test_generated_account_key_is_stored_once_with_mode_0600_and_reused(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest, tmp_path: Path
) -> None:
    """Without account_key_setting, account_key_store_path keeps one generated key (0600) that later runs reuse."""
    store = tmp_path / "acme" / "account.pem"
    options = acme_options(pebble, account_key_store_path=str(store), issuance_wait_seconds=0)
    first = _adapter(options).submit(keyvault_signing_request)
    assert store.exists()
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    written = store.read_bytes()
    # A rebuilt adapter finds the same account (onlyReturnExisting), or it could not poll the order.
    poll_until_issued(_adapter(options), first, timeout=15)
    assert store.read_bytes() == written


def test_no_pem_or_key_reaches_the_logs_even_at_debug(
    pebble: PebbleServer, keyvault_signing_request: SigningRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, no record holds a PEM body, the CSR, the account key or the EAB key (acme.client is muted)."""
    account_key = ec.generate_private_key(ec.SECP256R1())
    environ = {"ACME_ACCOUNT_KEY": _pem_key(account_key)}
    with caplog.at_level(logging.DEBUG):
        answer = _adapter(acme_options(pebble, account_key_setting="ACME_ACCOUNT_KEY"), environ).submit(
            keyvault_signing_request
        )
    assert isinstance(answer, Issued)
    csr_b64 = base64.urlsafe_b64encode(keyvault_signing_request.csr_der).decode()[:60]
    leaf_body = answer.leaf_pem.splitlines()[3]
    for record in caplog.records:
        text = record.getMessage()
        for forbidden in ("-----BEGIN", csr_b64.rstrip("="), leaf_body, EAB_HMAC):
            assert forbidden not in text, f"{record.name} logged something secret"


@pytest.mark.parametrize(
    ("options", "environ", "setting"),
    [
        ({"dns_provider": "challtestsrv"}, {}, "RENEWAL_CA_PROFILES"),
        ({"directory_url": "http://acme.corp.example/dir", "dns_provider": "challtestsrv"}, {}, "RENEWAL_CA_PROFILES"),
        ({"directory_url": "https://acme.example/dir"}, {}, "RENEWAL_CA_PROFILES"),
        ({"directory_url": "https://acme.example/dir", "dns_provider": "route53"}, {}, "RENEWAL_CA_PROFILES"),
        (
            {"directory_url": "https://acme.example/dir", "dns_provider": "challtestsrv", "dns_options": {}},
            {},
            "RENEWAL_CA_PROFILES",
        ),
        (
            {"directory_url": "https://acme.example/dir", "eab_kid": "k", "dns_provider": "azure"},
            {},
            "RENEWAL_CA_PROFILES",
        ),
        (
            {"directory_url": "https://acme.example/dir", "account_key_setting": "KEY", "dns_provider": "challtestsrv"},
            {"KEY": "-----BEGIN NOT A KEY-----"},
            "KEY",
        ),
        (
            {"directory_url": "https://acme.example/dir", "dns_provider": "challtestsrv", "poll_timeout_seconds": -1},
            {},
            "RENEWAL_CA_PROFILES",
        ),
        (
            {"directory_url": "https://acme.example/dir", "dns_provider": "challtestsrv", "colour": 1},
            {},
            "RENEWAL_CA_PROFILES",
        ),
    ],
)
def test_bad_profile_options_name_the_setting_at_fault(
    options: dict[str, object], environ: dict[str, str], setting: str
) -> None:
    """Missing directory_url or dns_provider, http off loopback, unknown provider, half EAB, a bad key, bad numbers."""
    if options.get("dns_provider") == "challtestsrv" and "dns_options" not in options:
        options = {**options, "dns_options": {"management_url": "http://127.0.0.1:1"}}
    with pytest.raises(ConfigurationError) as caught:
        AcmeCA.from_profile(CAProfile("corp-acme", "acme", options), environ)
    assert caught.value.setting == setting
    assert "NOT A KEY" not in str(caught.value)
