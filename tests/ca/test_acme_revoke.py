"""ACME revocation (RFC 8555 §7.6) and the harmless check, against a real Pebble."""

from __future__ import annotations

import json
import ssl
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from renewal.ca import CAProfile, HealthChecked, Issued, RevokingCAAdapter, SigningRequest, adapter_for
from renewal.ca.acme import AcmeCA
from renewal.errors import PermanentError, RetryableError
from tests.ca.servers import PebbleServer, acme_options, free_port


def pem_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


ACCOUNT = pem_key()
OTHER_ACCOUNT = pem_key()
ENVIRON = {"ACME_ACCOUNT_KEY": ACCOUNT, "OTHER_ACCOUNT_KEY": OTHER_ACCOUNT}


def adapter(pebble: PebbleServer, key_setting: str | None = "ACME_ACCOUNT_KEY") -> AcmeCA:
    extra = {"account_key_setting": key_setting} if key_setting else {}
    built = adapter_for(CAProfile("corp-acme", "acme", acme_options(pebble, **extra)), ENVIRON)
    assert isinstance(built, AcmeCA)
    return built


def status_at_pebble(pebble: PebbleServer, certificate_pem: str) -> str:
    """What Pebble's management interface says of the certificate (``Valid`` or ``Revoked``)."""
    serial = x509.load_pem_x509_certificate(certificate_pem.encode()).serial_number
    context = ssl.create_default_context(cafile=str(pebble.tls_ca_path))
    url = f"{pebble.management_url}/cert-status-by-serial/{serial:x}"
    with urllib.request.urlopen(url, context=context, timeout=5) as response:  # noqa: S310 - https on loopback
        return str(json.loads(response.read())["Status"])


def request_for(name: str) -> SigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return SigningRequest(csr.public_bytes(serialization.Encoding.DER), "kv", "elsewhere")


@pytest.fixture(scope="module")
def ordered(pebble: PebbleServer, keyvault_signing_request: SigningRequest) -> str:
    answer = adapter(pebble).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    return answer.leaf_pem


def test_acme_is_a_revoking_and_health_checked_adapter(pebble: PebbleServer) -> None:
    """The flow asks for revocation and the check by type."""
    ca = adapter(pebble)
    assert isinstance(ca, RevokingCAAdapter)
    assert isinstance(ca, HealthChecked)


def test_another_account_may_not_revoke_the_certificate(pebble: PebbleServer, ordered: str) -> None:
    """Pebble refuses a revocation signed by an account that neither ordered it nor holds its names: permanent."""
    other = adapter(pebble, "OTHER_ACCOUNT_KEY")
    assert isinstance(other.submit(request_for("elsewhere.revoke.test")), Issued)  # the account exists now
    with pytest.raises(PermanentError) as caught:
        other.revoke(ordered)
    assert caught.value.reason == "acme_unauthorized"
    assert status_at_pebble(pebble, ordered) == "Valid"


def test_the_account_that_ordered_revokes_and_pebble_says_revoked(pebble: PebbleServer, ordered: str) -> None:
    """revokeCert signed with the account key, reason superseded: Pebble lists the certificate as revoked."""
    adapter(pebble).revoke(ordered)
    assert status_at_pebble(pebble, ordered) == "Revoked"


def test_revoking_again_is_not_an_error(pebble: PebbleServer, ordered: str) -> None:
    """alreadyRevoked on a redelivered retirement counts as done."""
    adapter(pebble).revoke(ordered)
    adapter(pebble).revoke(ordered)
    assert status_at_pebble(pebble, ordered) == "Revoked"


def test_an_unreachable_acme_server_makes_revocation_retryable(ordered: str) -> None:
    """Nothing listening: retryable."""
    options = {"directory_url": f"https://127.0.0.1:{free_port()}/dir", "dns_provider": "challtestsrv",
               "dns_options": {"management_url": "http://127.0.0.1:1"}, "account_key_setting": "ACME_ACCOUNT_KEY",
               "timeout_seconds": 2}  # fmt: skip
    ca = adapter_for(CAProfile("corp-acme", "acme", options), ENVIRON)
    with pytest.raises(RetryableError):
        ca.revoke(ordered)  # type: ignore[attr-defined]


def test_check_reads_the_directory_and_finds_the_account(pebble: PebbleServer, ordered: str) -> None:
    """A configured account key: the directory is read and its account found; nothing is ordered."""
    line = adapter(pebble).check()
    assert pebble.directory_url in line
    assert "account found" in line
    assert "revokeCert" in line
    assert "BEGIN" not in line


def test_check_without_an_account_key_only_reads_the_directory(pebble: PebbleServer) -> None:
    """A key generated per process has no account to find: the check says so instead of creating one."""
    assert "no account key configured" in adapter(pebble, None).check()


def test_check_with_a_key_that_has_no_account_is_a_permanent_error(pebble: PebbleServer) -> None:
    """A configured key the server does not know: permanent, acme_account_does_not_exist."""
    options = acme_options(pebble, account_key_setting="FRESH")
    ca = adapter_for(CAProfile("corp-acme", "acme", options), {"FRESH": pem_key()})
    with pytest.raises(PermanentError) as caught:
        ca.check()  # type: ignore[attr-defined]
    assert caught.value.reason == "acme_account_does_not_exist"
