"""Make a local CA on disk for the devstack, the demo and tests (never for production).

``create_local_ca`` writes ``root.pem``, ``intermediate.pem`` (unless ``with_intermediate=False``),
``issuing-key.pem`` (the key of the issuing CA, mode 0600) and ``chain.pem`` (the issuing CA's chain: intermediate,
then root). It reuses the files when they already exist. The root's key is not kept once the intermediate is
signed. ``LocalCAFiles.profile_options()`` gives the options of a ``local`` CA profile using these files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LocalCAFiles", "create_local_ca", "issue_leaf"]

_ROOT_LIFETIME = timedelta(days=3650)
_INTERMEDIATE_LIFETIME = timedelta(days=1825)
_BACKDATE = timedelta(hours=1)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LocalCAFiles:
    """Where a local CA's files are.

    Attributes:
        directory: the directory holding them.
        root_path: the root certificate (the trust anchor to hand to clients).
        issuing_cert_path: the certificate that signs leaves (the intermediate, or the root without one).
        issuing_key_path: its private key, unencrypted PEM.
        chain_path: the issuing CA's chain, nearest first (intermediate then root; the root alone without one).
    """

    directory: Path
    root_path: Path
    issuing_cert_path: Path
    issuing_key_path: Path
    chain_path: Path

    def profile_options(self) -> dict[str, object]:
        """Options of a ``local`` CA profile (``RENEWAL_CA_PROFILES``) that signs with this CA."""
        return {
            "adapter": "local",
            "ca_cert_path": str(self.issuing_cert_path),
            "ca_key_path": str(self.issuing_key_path),
            "chain_path": str(self.chain_path),
        }


def create_local_ca(
    directory: Path,
    *,
    common_name: str = "Renewal Devstack Root CA",
    with_intermediate: bool = True,
    clock: Callable[[], datetime] = _utc_now,
) -> LocalCAFiles:
    """Create (or reuse) a local CA in ``directory``.

    Raises:
        OSError: the directory cannot be written.
        ValueError: existing files are not a readable CA.
    """
    directory.mkdir(parents=True, exist_ok=True)
    root_path = directory / "root.pem"
    intermediate_path = directory / "intermediate.pem"
    files = LocalCAFiles(
        directory=directory,
        root_path=root_path,
        issuing_cert_path=intermediate_path if with_intermediate else root_path,
        issuing_key_path=directory / "issuing-key.pem",
        chain_path=directory / "chain.pem",
    )
    if all(p.exists() for p in (files.root_path, files.issuing_cert_path, files.issuing_key_path, files.chain_path)):
        _load(files)
        return files

    now = clock()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    root = _ca_certificate(root_name, root_key.public_key(), root_name, root_key, now, _ROOT_LIFETIME, path_length=1)
    issuing_key, chain = root_key, [root]
    if with_intermediate:
        issuing_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} - Issuing")])
        intermediate = _ca_certificate(
            name, issuing_key.public_key(), root_name, root_key, now, _INTERMEDIATE_LIFETIME, path_length=0
        )
        chain = [intermediate, root]
        intermediate_path.write_bytes(_pem(intermediate))
    key_pem = issuing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(files.issuing_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_pem)
    root_path.write_bytes(_pem(root))
    files.chain_path.write_bytes(b"".join(_pem(c) for c in chain))
    return files


def issue_leaf(
    files: LocalCAFiles,
    *,
    subject_cn: str,
    dns_names: Sequence[str],
    public_key: CertificatePublicKeyTypes,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """Sign a TLS server leaf for ``public_key`` with the local CA (to seed a "before" certificate).

    Raises:
        ValueError: the CA files are not readable.
    """
    issuer, key = _load(files)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def _ca_certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    lifetime: timedelta,
    *,
    path_length: int,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _load(files: LocalCAFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    certificate = x509.load_pem_x509_certificate(files.issuing_cert_path.read_bytes())
    key = serialization.load_pem_private_key(files.issuing_key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.issuing_key_path} is not the EC key this module writes")
    return certificate, key


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)
