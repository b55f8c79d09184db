"""Verify: a CA's answer is checked against the CSR before anything is merged."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from renewal.ca import Issued
from renewal.errors import VerificationError
from renewal.verify import verify_issued

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SANS: list[x509.GeneralName] = [
    x509.DNSName("web.example.com"),
    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    x509.RFC822Name("ops@example.com"),
    x509.UniformResourceIdentifier("spiffe://example/web"),
]


@dataclass
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return pem(self.cert)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(cn: str, parent: CA | None = None, *, is_ca: bool = True) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = parent.key if parent else key
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(parent.cert.subject if parent else name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=100))
        .not_valid_after(NOW + timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return CA(cert, key)


ROOT = make_ca("Test Root")
INTERMEDIATE = make_ca("Test Issuing", ROOT)
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def make_csr(sans: Sequence[x509.GeneralName] = SANS, key: ec.EllipticCurvePrivateKey = LEAF_KEY) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(name("web"))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_leaf(
    *,
    issuer: CA = INTERMEDIATE,
    key: ec.EllipticCurvePrivateKey = LEAF_KEY,
    sans: Sequence[x509.GeneralName] = SANS,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=90),
    issuer_name: x509.Name | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name("web"))
        .issuer_name(issuer_name or issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(0x0ABC)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer.key, hashes.SHA256())


def test_good_answer_verifies_and_reports_the_leaf() -> None:
    """A leaf for the CSR's key and SANs, valid now, with an ordered chain, verifies."""
    leaf = make_leaf()
    verified = verify_issued(make_csr(), Issued(pem(leaf), (INTERMEDIATE.pem, ROOT.pem)), now=NOW)
    assert verified.leaf_der == leaf.public_bytes(serialization.Encoding.DER)
    assert len(verified.chain_der) == 2
    assert verified.thumbprint_sha1 == leaf.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert verified.serial_number == "0ABC"
    assert verified.not_after == NOW + timedelta(days=90)


def test_bundle_in_leaf_pem_is_split_into_leaf_and_chain() -> None:
    """A full-chain PEM in leaf_pem (leaf first) is accepted as leaf plus chain."""
    verified = verify_issued(make_csr(), Issued(pem(make_leaf()) + INTERMEDIATE.pem + ROOT.pem), now=NOW)
    assert len(verified.chain_der) == 2


def test_leaf_without_chain_verifies() -> None:
    """An answer with no chain certificates has nothing to link and verifies on the leaf alone."""
    assert verify_issued(make_csr(), Issued(pem(make_leaf())), now=NOW).chain_der == ()


def test_dns_sans_compare_case_insensitively() -> None:
    """A leaf naming WEB.example.com covers a CSR asking for web.example.com."""
    leaf = make_leaf(sans=[x509.DNSName("WEB.Example.com"), *SANS[1:]])
    verify_issued(make_csr(), Issued(pem(leaf), (INTERMEDIATE.pem,)), now=NOW)


def test_leaf_with_extra_sans_verifies() -> None:
    """A leaf may carry more SANs than asked for."""
    leaf = make_leaf(sans=[*SANS, x509.DNSName("extra.example.com")])
    verify_issued(make_csr(), Issued(pem(leaf), (INTERMEDIATE.pem,)), now=NOW)


OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = make_ca("Stranger")
NOT_A_CA = make_ca("Not a CA", ROOT, is_ca=False)

FAILURES: list[tuple[str, Issued, str]] = [
    ("garbage-leaf", Issued("hello, I am a certificate"), "unparsable_certificate"),
    (
        "truncated-pem",
        Issued("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        "unparsable_certificate",
    ),
    ("garbage-chain", Issued(pem(make_leaf()), ("nope",)), "unparsable_certificate"),
    ("other-key", Issued(pem(make_leaf(key=OTHER_KEY)), (INTERMEDIATE.pem,)), "key_mismatch"),
    ("missing-dns", Issued(pem(make_leaf(sans=SANS[1:])), (INTERMEDIATE.pem,)), "sans_not_covered"),
    ("missing-ip", Issued(pem(make_leaf(sans=[SANS[0], *SANS[2:]])), ()), "sans_not_covered"),
    ("missing-email", Issued(pem(make_leaf(sans=[*SANS[:2], SANS[3]])), ()), "sans_not_covered"),
    ("missing-uri", Issued(pem(make_leaf(sans=SANS[:3])), ()), "sans_not_covered"),
    ("no-sans", Issued(pem(make_leaf(sans=[])), ()), "sans_not_covered"),
    ("not-yet-valid", Issued(pem(make_leaf(not_before=NOW + timedelta(hours=1))), ()), "not_yet_valid"),
    ("expired", Issued(pem(make_leaf(not_after=NOW - timedelta(seconds=1))), ()), "expired"),
    ("chain-reversed", Issued(pem(make_leaf()), (ROOT.pem, INTERMEDIATE.pem)), "chain_broken"),
    ("chain-unrelated", Issued(pem(make_leaf()), (STRANGER.pem,)), "chain_broken"),
    # Same issuer name, different key: the names link up but the signature does not verify.
    (
        "forged-issuer-name",
        Issued(pem(make_leaf(issuer=STRANGER, issuer_name=INTERMEDIATE.cert.subject)), (INTERMEDIATE.pem,)),
        "chain_broken",
    ),
    ("chain-cert-not-ca", Issued(pem(make_leaf(issuer=NOT_A_CA)), (NOT_A_CA.pem, ROOT.pem)), "chain_not_ca"),
]


@pytest.mark.parametrize(("issued", "reason"), [(i, r) for _, i, r in FAILURES], ids=[n for n, _, _ in FAILURES])
def test_failures_have_specific_reasons(issued: Issued, reason: str) -> None:
    """Each kind of bad answer raises VerificationError with its own reason."""
    with pytest.raises(VerificationError) as caught:
        verify_issued(make_csr(), issued, now=NOW)
    assert caught.value.reason == reason


def test_error_messages_never_contain_pem() -> None:
    """No verification error message includes a PEM body."""
    for _, issued, _ in FAILURES:
        with pytest.raises(VerificationError) as caught:
            verify_issued(make_csr(), issued, now=NOW)
        assert "BEGIN" not in caught.value.message
        assert "MII" not in caught.value.message


def test_unreadable_csr_is_a_verification_error() -> None:
    """A CSR that is not DER PKCS#10 raises VerificationError(unparsable_csr)."""
    with pytest.raises(VerificationError) as caught:
        verify_issued(b"\x30\x03junk", Issued(pem(make_leaf())), now=NOW)
    assert caught.value.reason == "unparsable_csr"
