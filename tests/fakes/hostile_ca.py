"""A hostile CA behind Vault's PKI ``sign`` API: it signs each CSR as the local CA would, then breaks one rule.

It is the answer function of the Vault fake (``tests.fakes.vault_pki.FakeVault``, which serves it on loopback):
``HostileSigner.submit`` drafts the honest certificate for the CSR (its subject and SANs, serverAuth and
clientAuth, 90 days, signed by the local CA's issuing key, chain intermediate then root), applies its
``violation`` to the draft, and signs what results. Each violation names the verification reason it must cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.localca import LocalCAFiles
from renewal.ca import Issued, SigningRequest

__all__ = ["VIOLATIONS", "Draft", "HostileSigner", "Violation", "honest"]


@dataclass(frozen=True, slots=True)
class Draft:
    """The certificate the hostile CA is about to sign.

    Attributes:
        subject: the leaf's subject.
        public_key: the key it certifies.
        sans: its subjectAltName entries.
        ekus: its extendedKeyUsage.
        is_ca: its basicConstraints CA flag.
        not_before: its start.
        not_after: its end.
        extensions: more ``(extension, critical)`` pairs.
        signer: the key that signs it.
        issuer: the certificate whose subject is the leaf's issuer name.
        chain: what is sent as ``ca_chain``, nearest issuer first.
    """

    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    sans: tuple[x509.GeneralName, ...]
    ekus: tuple[x509.ObjectIdentifier, ...]
    is_ca: bool
    not_before: datetime
    not_after: datetime
    extensions: tuple[tuple[x509.ExtensionType, bool], ...]
    signer: ec.EllipticCurvePrivateKey
    issuer: x509.Certificate
    chain: tuple[x509.Certificate, ...]


Violation = Callable[[Draft], Draft]


@dataclass
class HostileSigner:
    """Signs like the local CA, then applies ``violation``; ``clock`` is the CA's now (tz-aware)."""

    ca: LocalCAFiles
    clock: Callable[[], datetime]
    violation: Violation = field(default=lambda draft: draft)
    signed: int = 0

    def submit(self, request: SigningRequest) -> Issued:
        csr = x509.load_der_x509_csr(request.csr_der)
        issuing = x509.load_pem_x509_certificate(self.ca.issuing_cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.ca.issuing_key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        now = self.clock()
        draft = self.violation(
            Draft(
                subject=csr.subject,
                public_key=csr.public_key(),
                sans=tuple(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value),
                ekus=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
                is_ca=False,
                not_before=now - timedelta(minutes=1),
                not_after=now + timedelta(days=90),
                extensions=(),
                signer=key,
                issuer=issuing,
                chain=tuple(x509.load_pem_x509_certificates(self.ca.chain_path.read_bytes())),
            )
        )
        self.signed += 1
        return Issued(_pem(_sign(draft)), tuple(_pem(c) for c in draft.chain))


def honest(draft: Draft) -> Draft:
    """No violation: the control."""
    return draft


def extra_name(draft: Draft) -> Draft:
    return replace(draft, sans=(*draft.sans, x509.DNSName("*.evil.example")))


def other_subject(draft: Draft) -> Draft:
    return replace(draft, subject=_name("www.evil.example", organization="Evil Corp"))


def ca_true(draft: Draft) -> Draft:
    return replace(draft, is_ca=True)


def code_signing(draft: Draft) -> Draft:
    return replace(draft, ekus=(ExtendedKeyUsageOID.CODE_SIGNING,))


def century(draft: Draft) -> Draft:
    return replace(draft, not_after=draft.not_before + timedelta(days=36525))


def starts_tomorrow(draft: Draft) -> Draft:
    return replace(draft, not_before=draft.not_before + timedelta(days=1))


def already_expired(draft: Draft) -> Draft:
    return replace(draft, not_before=draft.not_before - timedelta(days=10), not_after=draft.not_before)


def unknown_critical_extension(draft: Draft) -> Draft:
    private = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7"), b"\x05\x00")
    return replace(draft, extensions=(*draft.extensions, (private, True)))


def unrelated_root(draft: Draft) -> Draft:
    """Signed by a CA of the hostile CA's own, which sends its own well-formed chain."""
    now = draft.not_before
    root_key, issuing_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name, issuing_name = _name("Unrelated Root CA"), _name("Unrelated Issuing CA")
    root = _ca_certificate(root_name, root_key.public_key(), root_name, root_key, now)
    issuing = _ca_certificate(issuing_name, issuing_key.public_key(), root_name, root_key, now)
    return replace(draft, signer=issuing_key, issuer=issuing, chain=(issuing, root))


def broken_chain(draft: Draft) -> Draft:
    """The chain's issuing certificate has the right name but another key, so the leaf's signature fails it."""
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor = _ca_certificate(
        draft.issuer.subject, impostor_key.public_key(), draft.issuer.subject, impostor_key, draft.not_before
    )
    return replace(draft, chain=(impostor, *draft.chain[1:]))


def other_key(draft: Draft) -> Draft:
    return replace(draft, public_key=ec.generate_private_key(ec.SECP256R1()).public_key())


# Each violation and the verification reason it must end in.
VIOLATIONS: dict[str, tuple[Violation, str]] = {
    "extra-san": (extra_name, "unexpected_names"),
    "other-subject": (other_subject, "unexpected_names"),
    "ca-true": (ca_true, "leaf_not_end_entity"),
    "code-signing": (code_signing, "unexpected_usage"),
    "hundred-years": (century, "validity_too_long"),
    "not-yet-valid": (starts_tomorrow, "not_yet_valid"),
    "expired": (already_expired, "expired"),
    "unknown-critical-extension": (unknown_critical_extension, "unknown_critical_extension"),
    "unrelated-root": (unrelated_root, "untrusted_issuer"),
    "broken-chain": (broken_chain, "chain_invalid"),
    "other-key": (other_key, "key_mismatch"),
}


def _sign(draft: Draft) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(draft.subject)
        .issuer_name(draft.issuer.subject)
        .public_key(draft.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(draft.not_before)
        .not_valid_after(draft.not_after)
        .add_extension(x509.BasicConstraints(ca=draft.is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(draft.ekus)), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(draft.sans)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(draft.signer.public_key()), critical=False)
    )
    for extension, critical in draft.extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(draft.signer, hashes.SHA256())


def _ca_certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _name(common_name: str, *, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
