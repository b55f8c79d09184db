"""The real azure-keyvault-certificates SDK driving the emulator over HTTPS through the renewal app's flows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateOperation,
    CertificatePolicy,
    KeyVaultCertificate,
    WellKnownIssuerNames,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.keyvault import KeyVaultEmulator, LatestWhilePending


class ThrowAwayCa:
    """A one-test CA that signs CSRs (EC P-256, for speed)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "throw-away test CA")])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def sign(self, csr_der: bytes, *, public_key: ec.EllipticCurvePublicKey | None = None) -> bytes:
        """Issue a leaf for the CSR (or, to test key matching, for another ``public_key``) and return its DER."""
        csr = x509.load_der_x509_csr(csr_der)
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key or csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=20))
        )
        for extension in csr.extensions:
            if isinstance(extension.value, x509.SubjectAlternativeName):
                builder = builder.add_extension(extension.value, critical=extension.critical)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    @property
    def der(self) -> bytes:
        """The CA certificate's DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)


def version_of(certificate: KeyVaultCertificate) -> str:
    """The certificate's version (asserting the SDK parsed one)."""
    assert certificate.properties is not None
    assert certificate.properties.version is not None
    return certificate.properties.version


def unknown_policy(subject: str) -> CertificatePolicy:
    """A policy for the manual CSR flow (issuer Unknown, EC P-256)."""
    return CertificatePolicy(
        issuer_name=WellKnownIssuerNames.unknown,
        subject=subject,
        san_dns_names=[subject.removeprefix("CN=")],
        key_type="EC",
        key_curve_name="P-256",
        validity_in_months=1,
    )


def self_policy(subject: str = "CN=self.example") -> CertificatePolicy:
    """A Self-issued policy with an EC P-256 key (fast to generate)."""
    return CertificatePolicy(issuer_name="Self", subject=subject, key_type="EC", key_curve_name="P-256")


@pytest.fixture
def client(keyvault_emulator: KeyVaultEmulator) -> CertificateClient:
    """An SDK client for the fixture emulator's vault."""
    return keyvault_emulator.certificate_client()


def test_unknown_issuer_csr_is_signed_and_merged(
    keyvault_emulator: KeyVaultEmulator, client: CertificateClient
) -> None:
    """Create (issuer Unknown) → CSR → sign with an outside CA → merge → get_certificate returns the merged leaf."""
    ca = ThrowAwayCa()
    operation = client.begin_create_certificate("app", policy=unknown_policy("CN=app.contoso.internal")).result()
    assert isinstance(operation, CertificateOperation)
    assert operation.status == "inProgress"
    csr_der = client.get_certificate_operation("app").csr
    assert csr_der
    leaf_der = ca.sign(csr_der)
    merged = client.merge_certificate("app", [leaf_der, ca.der])
    assert bytes(merged.cer or b"") == leaf_der
    fetched = client.get_certificate("app")
    assert bytes(fetched.cer or b"") == leaf_der
    assert version_of(fetched) == version_of(merged)
    assert (fetched.id or "").startswith(keyvault_emulator.url() + "/certificates/app/")
    assert keyvault_emulator.request_log.statuses() == [202, 200, 201, 200]


def test_merge_with_a_certificate_for_another_key_is_rejected(client: CertificateClient) -> None:
    """Merging a leaf whose public key is not the pending key fails with Key Vault's BadParameter message."""
    ca = ThrowAwayCa()
    client.begin_create_certificate("mismatch", policy=unknown_policy("CN=mismatch.example")).result()
    csr_der = client.get_certificate_operation("mismatch").csr
    assert csr_der is not None
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(HttpResponseError) as raised:
        client.merge_certificate("mismatch", [ca.sign(csr_der, public_key=other_key)])
    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "BadParameter"
    assert "does not match the public part of the specified private key" in raised.value.message
    assert client.get_certificate_operation("mismatch").status == "inProgress"


def test_self_issued_create_completes(client: CertificateClient) -> None:
    """A Self-issued create finishes through the SDK poller and has a certificate and its policy."""
    certificate = client.begin_create_certificate("selfie", policy=self_policy()).result()
    assert isinstance(certificate, KeyVaultCertificate)
    assert certificate.name == "selfie"
    assert certificate.cer
    assert client.get_certificate_policy("selfie").issuer_name == "Self"


def test_versions_list_pages_past_25(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """Listing 27 versions follows the nextLink past the first page of 25."""
    for _ in range(27):
        client.begin_create_certificate("many", policy=self_policy()).result()
    keyvault_emulator.request_log.clear()
    versions = list(client.list_properties_of_certificate_versions("many"))
    assert len(versions) == 27
    assert len({v.version for v in versions}) == 27
    assert keyvault_emulator.request_log.statuses(operation="list_versions") == [200, 200]


def test_soft_delete_recover_and_purge(client: CertificateClient) -> None:
    """Delete → get deleted → recover → delete → purge, with the certificate gone for good at the end."""
    client.begin_create_certificate("phoenix", policy=self_policy()).result()
    deleted = client.begin_delete_certificate("phoenix", _polling_interval=0).result()
    assert deleted.recovery_id
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate("phoenix")
    assert client.get_deleted_certificate("phoenix").name == "phoenix"
    recovered = client.begin_recover_deleted_certificate("phoenix", _polling_interval=0).result()
    assert recovered.name == "phoenix"
    assert client.get_certificate("phoenix").cer
    client.begin_delete_certificate("phoenix", _polling_interval=0).result()
    client.purge_deleted_certificate("phoenix")
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_certificate("phoenix")


@pytest.mark.parametrize("mode", ["placeholder", "previous"])
def test_latest_while_a_renewal_is_pending_follows_the_switch(tmp_path: Path, mode: LatestWhilePending) -> None:
    """While a second version is pending, get latest shows the placeholder (default) or the previous version."""
    with KeyVaultEmulator(state_dir=tmp_path, latest_while_pending=mode) as emu:
        sdk = emu.certificate_client()
        sdk.begin_create_certificate("renewing", policy=self_policy("CN=renewing")).wait(timeout=5)
        first = sdk.get_certificate("renewing")
        sdk.begin_create_certificate("renewing", policy=unknown_policy("CN=renewing")).result()
        latest = sdk.get_certificate("renewing")
        if mode == "previous":
            assert version_of(latest) == version_of(first)
            assert latest.cer == first.cer
        else:
            assert version_of(latest) != version_of(first)
