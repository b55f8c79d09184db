"""The local file-based CA: signs Key Vault's CSRs with every extension right, or holds them for approval."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.localca import LocalCAFiles, create_local_ca, issue_leaf
from renewal.ca import ADAPTERS, CAProfile, Issued, Pending, SigningRequest, adapter_for
from renewal.ca.local import LocalCA
from renewal.errors import ConfigurationError, PermanentError
from renewal.pure.verify import verify_issued

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example.com")])
SANS = x509.SubjectAlternativeName([x509.DNSName("web.example.com"), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("ca"), clock=lambda: NOW - timedelta(days=30))


def root_of(files: LocalCAFiles) -> x509.Certificate:
    """The local CA's root: the anchor its answers are verified against."""
    return x509.load_pem_x509_certificate(files.root_path.read_bytes())


def load_ca(files: LocalCAFiles, *, now: datetime = NOW, **kwargs: object) -> LocalCA:
    key = serialization.load_pem_private_key(files.issuing_key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = tuple(x509.load_pem_x509_certificates(files.chain_path.read_bytes()))
    return LocalCA(
        ca_certificate=x509.load_pem_x509_certificate(files.issuing_cert_path.read_bytes()),
        ca_key=key,
        chain=chain,
        clock=lambda: now,
        **kwargs,  # type: ignore[arg-type]
    )


def csr_der(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    sans: x509.SubjectAlternativeName | None = SANS,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(SUBJECT)
    if sans is not None:
        builder = builder.add_extension(sans, critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def request(csr: bytes, **kwargs: object) -> SigningRequest:
    return SigningRequest(csr_der=csr, vault_name="kv1", certificate_name="web", **kwargs)  # type: ignore[arg-type]


def leaf_of(issued: Issued | Pending) -> x509.Certificate:
    assert isinstance(issued, Issued)
    return x509.load_pem_x509_certificate(issued.leaf_pem.encode())


@pytest.mark.parametrize(
    "key",
    [rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1())],
    ids=["rsa", "ec"],
)
def test_signs_a_csr_with_every_extension(ca_files: LocalCAFiles, key: CertificateIssuerPrivateKeyTypes) -> None:
    """The leaf has the CSR's key, subject and SANs, the policy's validity, key usage and EKUs, CA:FALSE critical,
    SKI/AKI, a positive 128-bit-or-less serial and SHA-256, and passes verification with its chain."""
    ca = load_ca(ca_files)
    der = csr_der(key)
    issued = ca.submit(
        request(der, validity_months=12, key_usage=("digitalSignature", "keyEncipherment"), ekus=("1.3.6.1.5.5.7.3.1",))
    )
    leaf = leaf_of(issued)
    issuer = x509.load_pem_x509_certificate(ca_files.issuing_cert_path.read_bytes())
    ext = leaf.extensions
    assert leaf.subject == SUBJECT
    assert leaf.issuer == issuer.subject
    assert leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value == SANS
    assert leaf.not_valid_after_utc == datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    assert leaf.not_valid_before_utc == NOW - timedelta(minutes=1)
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert (basic.critical, basic.value.ca) == (True, False)
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert (usage.value.digital_signature, usage.value.key_encipherment, usage.value.data_encipherment) == (
        True,
        True,
        False,
    )
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert 0 < leaf.serial_number < 2**128
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert isinstance(issued, Issued)
    assert len(issued.chain_pem) == 2  # the intermediate, then the root; the issuing CA is not repeated
    verified = verify_issued(der, issued, now=NOW, anchors=(root_of(ca_files),))
    assert verified.serial_number.lstrip("0") == f"{leaf.serial_number:X}"


def test_ekus_and_key_usage_fall_back_to_the_csr(ca_files: LocalCAFiles) -> None:
    """Without policy key usage or EKUs, the CSR's extension request supplies them."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
    ekus = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    leaf = leaf_of(load_ca(ca_files).submit(request(csr_der(key, extensions=((usage, True), (ekus, False))))))
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value == usage
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == ekus


def test_defaults_without_policy_or_csr_extensions(ca_files: LocalCAFiles) -> None:
    """With nothing asked: digitalSignature only for EC, no EKU, and the default validity."""
    leaf = leaf_of(
        load_ca(ca_files, default_validity_days=30).submit(request(csr_der(ec.generate_private_key(ec.SECP256R1()))))
    )
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert leaf.not_valid_after_utc == NOW + timedelta(days=30)


def test_validity_never_outlives_the_ca(ca_files: LocalCAFiles) -> None:
    """A validity past the CA's own notAfter is cut to it."""
    issuer = x509.load_pem_x509_certificate(ca_files.issuing_cert_path.read_bytes())
    leaf = leaf_of(
        load_ca(ca_files).submit(request(csr_der(ec.generate_private_key(ec.SECP256R1())), validity_months=1200))
    )
    assert leaf.not_valid_after_utc == issuer.not_valid_after_utc


def test_month_arithmetic_clamps_the_day(ca_files: LocalCAFiles) -> None:
    """One month after 31 January is the last day of February."""
    ca = load_ca(ca_files, now=datetime(2027, 1, 31, tzinfo=UTC))
    leaf = leaf_of(ca.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1())), validity_months=1)))
    assert leaf.not_valid_after_utc == datetime(2027, 2, 28, tzinfo=UTC)


def test_a_validity_cap_shortens_what_the_policy_asks_for(ca_files: LocalCAFiles) -> None:
    """With max_validity_hours, a policy asking for a month gets the cap (as Vault roles' max_ttl do)."""
    ca = load_ca(ca_files, max_validity=timedelta(hours=24))
    leaf = leaf_of(ca.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1())), validity_months=1)))
    assert leaf.not_valid_after_utc == NOW + timedelta(hours=24)


@pytest.mark.parametrize("value", [0, -1, True, "24", 24 * 36500 + 1])
def test_a_validity_cap_must_be_a_positive_number_of_hours(ca_files: LocalCAFiles, value: object) -> None:
    """max_validity_hours that is not a positive number of hours is a configuration error naming it."""
    options = {**ca_files.profile_options(), "max_validity_hours": value}
    options.pop("adapter")
    with pytest.raises(ConfigurationError) as caught:
        LocalCA.from_profile(CAProfile("corp", "local", options), {})
    assert "max_validity_hours" in caught.value.message


def test_subjectless_csr_gets_critical_sans(ca_files: LocalCAFiles) -> None:
    """RFC 5280: with an empty subject, the SAN extension is critical."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(SANS, critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    leaf = leaf_of(load_ca(ca_files).submit(request(der)))
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: b"not a csr", "csr_invalid"),
        (lambda: _tampered_csr(), "csr_invalid"),
        (lambda: csr_der(ec.generate_private_key(ec.SECP256R1())), None),
    ],
    ids=["garbage", "bad-signature", "control"],
)
def test_bad_csr_is_refused(ca_files: LocalCAFiles, make: object, reason: str | None) -> None:
    """A CSR that does not parse or whose signature does not verify raises PermanentError(csr_invalid)."""
    assert callable(make)
    ca = load_ca(ca_files)
    if reason is None:
        assert isinstance(ca.submit(request(make())), Issued)
        return
    with pytest.raises(PermanentError) as caught:
        ca.submit(request(make()))
    assert caught.value.reason == reason


def _tampered_csr() -> bytes:
    der = bytearray(csr_der(ec.generate_private_key(ec.SECP256R1())))
    index = der.find(b"web.example.com")
    der[index] = ord("W")
    return bytes(der)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"key_usage": ("digitalSignature", "teleport")}, "unsupported_key_usage"),
        ({"key_usage": ("keyCertSign",)}, "unsupported_key_usage"),
        ({"key_usage": ("encipherOnly",)}, "unsupported_key_usage"),
        ({"ekus": ("serverAuth",)}, "unsupported_eku"),
    ],
    ids=["unknown-usage", "ca-usage", "encipher-without-agreement", "eku-not-oid"],
)
def test_policies_a_leaf_cannot_carry_are_refused(
    ca_files: LocalCAFiles, kwargs: dict[str, object], reason: str
) -> None:
    """Key usages and EKUs the CA cannot put in a leaf raise PermanentError with a reason."""
    with pytest.raises(PermanentError) as caught:
        load_ca(ca_files).submit(request(csr_der(ec.generate_private_key(ec.SECP256R1())), **kwargs))
    assert caught.value.reason == reason


def test_expired_ca_refuses(ca_files: LocalCAFiles) -> None:
    """A CA past its notAfter raises PermanentError(ca_expired)."""
    ca = load_ca(ca_files, now=NOW + timedelta(days=5000))
    with pytest.raises(PermanentError) as caught:
        ca.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1()))))
    assert caught.value.reason == "ca_expired"


def test_manual_approval_holds_then_issues_once(ca_files: LocalCAFiles, tmp_path: Path) -> None:
    """In approval mode submit answers Pending and stores the CSR; poll stays Pending until <ref>.approved
    exists, then issues, and later polls return the same certificate."""
    ca = load_ca(ca_files, approval_dir=tmp_path)
    der = csr_der(ec.generate_private_key(ec.SECP256R1()))
    pending = ca.submit(request(der, validity_months=3))
    assert isinstance(pending, Pending)
    assert ca.submit(request(der, validity_months=3)) == pending
    assert (tmp_path / f"{pending.reference}.csr.pem").exists()
    assert json.loads((tmp_path / f"{pending.reference}.request.json").read_text())["certificate_name"] == "web"
    assert ca.poll(pending.reference) == pending
    (tmp_path / f"{pending.reference}.approved").touch()
    first = ca.poll(pending.reference)
    assert leaf_of(first).not_valid_after_utc == datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
    assert ca.poll(pending.reference) == first
    verify_issued(der, first, now=NOW, anchors=(root_of(ca_files),))  # type: ignore[arg-type]


def test_manual_approval_denied(ca_files: LocalCAFiles, tmp_path: Path) -> None:
    """A <ref>.denied file makes poll raise PermanentError(denied)."""
    ca = load_ca(ca_files, approval_dir=tmp_path)
    pending = ca.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1()))))
    assert isinstance(pending, Pending)
    (tmp_path / f"{pending.reference}.denied").touch()
    with pytest.raises(PermanentError) as caught:
        ca.poll(pending.reference)
    assert caught.value.reason == "denied"


@pytest.mark.parametrize("reference", ["0" * 32, "../../etc/passwd", ""], ids=["never-submitted", "traversal", "empty"])
def test_poll_unknown_reference(ca_files: LocalCAFiles, tmp_path: Path, reference: str) -> None:
    """Polling a reference the CA never issued, or a path-like one, raises PermanentError(unknown_reference)."""
    with pytest.raises(PermanentError) as caught:
        load_ca(ca_files, approval_dir=tmp_path).poll(reference)
    assert caught.value.reason == "unknown_reference"


def test_registry_builds_local_from_file_paths(ca_files: LocalCAFiles) -> None:
    """The registry maps 'local' to LocalCA, whose from_profile reads the CA from PEM files."""
    assert ADAPTERS["local"] == ("renewal.ca.local", "LocalCA")
    options = ca_files.profile_options()
    options.pop("adapter")
    adapter = adapter_for(CAProfile("corp", "local", options), {})
    assert isinstance(adapter.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1())))), Issued)


def test_from_profile_reads_pem_settings_and_an_encrypted_key(ca_files: LocalCAFiles) -> None:
    """PEM text in app settings works, including an encrypted key with its password in another setting."""
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    environ = {
        "CA_CERT": ca_files.issuing_cert_path.read_text().replace("\n", "\\n"),
        "CA_KEY": encrypted.decode(),
        "CA_KEY_PASSWORD": "pw",
    }
    profile = CAProfile(
        "corp",
        "local",
        {"ca_cert_setting": "CA_CERT", "ca_key_setting": "CA_KEY", "ca_key_password_setting": "CA_KEY_PASSWORD"},
    )
    assert isinstance(LocalCA.from_profile(profile, environ), LocalCA)


def test_from_profile_reads_a_pkcs12_setting(ca_files: LocalCAFiles) -> None:
    """A base64 PKCS#12, as a Key Vault certificate's secret holds it, is a CA source."""
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate(ca_files.issuing_cert_path.read_bytes())
    pfx = pkcs12.serialize_key_and_certificates(b"ca", key, cert, None, serialization.NoEncryption())
    ca = LocalCA.from_profile(
        CAProfile("corp", "local", {"ca_pfx_setting": "CA_PFX"}), {"CA_PFX": base64.b64encode(pfx).decode()}
    )
    assert isinstance(ca.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1())))), Issued)


def test_from_profile_approval_mode(ca_files: LocalCAFiles, tmp_path: Path) -> None:
    """approval 'manual' with approval_dir gives an adapter that answers Pending."""
    options = ca_files.profile_options() | {"approval": "manual", "approval_dir": str(tmp_path / "approvals")}
    options.pop("adapter")
    ca = LocalCA.from_profile(CAProfile("corp", "local", options), {})
    assert isinstance(ca.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1())))), Pending)


@pytest.mark.parametrize(
    ("options", "environ", "setting"),
    [
        ({"ca_cert_path": "/nonexistent/ca.pem", "ca_key_path": "/nonexistent/key.pem"}, {}, "RENEWAL_CA_PROFILES"),
        ({"ca_cert_path": "CERT", "ca_key_path": "KEY", "colour": "blue"}, {}, "RENEWAL_CA_PROFILES"),
        ({}, {}, "RENEWAL_CA_PROFILES"),
        ({"ca_cert_path": "CERT"}, {}, "RENEWAL_CA_PROFILES"),
        ({"ca_cert_setting": "C", "ca_key_setting": "K", "ca_pfx_setting": "P"}, {}, "RENEWAL_CA_PROFILES"),
        ({"ca_cert_setting": "C", "ca_key_setting": "K"}, {"C": "nope", "K": "SECRETKEY"}, "C"),
        ({"ca_cert_setting": "C", "ca_key_setting": "K"}, {"C": "CERT", "K": "SECRETKEY"}, "K"),
        ({"ca_cert_setting": "C", "ca_key_setting": "K"}, {"C": "CERT"}, "RENEWAL_CA_PROFILES"),
        ({"ca_pfx_setting": "P"}, {"P": "SECRETKEY"}, "P"),
        ({"ca_cert_path": "CERT", "ca_key_path": "KEY", "validity_days": 0}, {}, "RENEWAL_CA_PROFILES"),
        ({"ca_cert_path": "CERT", "ca_key_path": "KEY", "approval": "manual"}, {}, "RENEWAL_CA_PROFILES"),
        ({"ca_cert_path": "CERT", "ca_key_path": "OTHER_KEY"}, {}, "RENEWAL_CA_PROFILES"),
    ],
    ids=[
        "unreadable-files",
        "unknown-option",
        "no-source",
        "half-a-source",
        "two-sources",
        "cert-setting-not-pem",
        "key-setting-not-pem",
        "key-setting-missing",
        "pfx-not-base64",
        "validity-zero",
        "manual-without-dir",
        "key-of-another-ca",
    ],
)
def test_bad_options_raise_configuration_error(
    ca_files: LocalCAFiles, tmp_path: Path, options: dict[str, object], environ: dict[str, str], setting: str
) -> None:
    """Bad options or unreadable CA material raise ConfigurationError naming the setting, never a secret."""
    other = create_local_ca(tmp_path / "other")
    paths = {
        "CERT": str(ca_files.issuing_cert_path),
        "KEY": str(ca_files.issuing_key_path),
        "OTHER_KEY": str(other.issuing_key_path),
    }
    options = {k: paths.get(v, v) if isinstance(v, str) and k.endswith("_path") else v for k, v in options.items()}
    environ = {k: ca_files.issuing_cert_path.read_text() if v == "CERT" else v for k, v in environ.items()}
    with pytest.raises(ConfigurationError) as caught:
        LocalCA.from_profile(CAProfile("corp", "local", options), environ)
    assert caught.value.setting == setting
    assert "SECRETKEY" not in str(caught.value)
    assert "BEGIN" not in str(caught.value)


def test_create_local_ca_is_idempotent_and_issue_leaf_chains(tmp_path: Path) -> None:
    """A second create_local_ca reuses the files, and issue_leaf signs a leaf that verifies against chain.pem."""
    first = create_local_ca(tmp_path)
    before = first.issuing_key_path.read_bytes()
    second = create_local_ca(tmp_path)
    assert second == first
    assert second.issuing_key_path.read_bytes() == before
    assert first.issuing_key_path.stat().st_mode & 0o077 == 0
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = issue_leaf(
        first,
        subject_cn="web.example.com",
        dns_names=["web.example.com"],
        public_key=key.public_key(),
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=10),
    )
    csr = csr_der(key, sans=x509.SubjectAlternativeName([x509.DNSName("web.example.com")]))
    chain = tuple(
        c.public_bytes(serialization.Encoding.PEM).decode()
        for c in x509.load_pem_x509_certificates(first.chain_path.read_bytes())
    )
    leaf_pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    verify_issued(csr, Issued(leaf_pem, chain), now=now, anchors=(root_of(first),))


def test_poll_with_damaged_store_is_permanent(ca_files: LocalCAFiles, tmp_path: Path) -> None:
    """An approved request whose stored metadata is unreadable raises PermanentError(unknown_reference)."""
    ca = load_ca(ca_files, approval_dir=tmp_path)
    pending = ca.submit(request(csr_der(ec.generate_private_key(ec.SECP256R1()))))
    assert isinstance(pending, Pending)
    (tmp_path / f"{pending.reference}.request.json").write_text("{")
    (tmp_path / f"{pending.reference}.approved").touch()
    with pytest.raises(PermanentError) as caught:
        ca.poll(pending.reference)
    assert caught.value.reason == "unknown_reference"
