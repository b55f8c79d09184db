"""The emulator's TLS material: its own CA and a loopback server certificate, kept in the state folder."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsFiles", "ensure_tls_files"]

_CA_VALIDITY = dt.timedelta(days=3650)
_SERVER_VALIDITY = dt.timedelta(days=825)
# Regenerate a stored server certificate this long before it expires, so a long-lived state dir keeps working.
_RENEW_MARGIN = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the emulator's TLS material lives.

    Attributes:
        ca_pem_path: the CA certificate clients must trust (``STATE_DIR/tls-ca.pem``).
        server_cert_path: the server certificate followed by the CA certificate.
        server_key_path: the server's private key (mode 0600).
    """

    ca_pem_path: Path
    server_cert_path: Path
    server_key_path: Path


@dataclass(frozen=True, slots=True)
class _Material:
    ca_cert_pem: bytes
    server_chain_pem: bytes
    server_key_pem: bytes


# Generated once per process: a fresh state dir then costs a file write, not a key generation.
_generated: dict[None, _Material] = {}
_generate_lock = threading.Lock()


def _generate() -> _Material:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devstack Key Vault emulator CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _SERVER_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    return _Material(
        ca_cert_pem=ca_pem,
        server_chain_pem=server_cert.public_bytes(serialization.Encoding.PEM) + ca_pem,
        server_key_pem=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _process_material() -> _Material:
    with _generate_lock:
        if None not in _generated:
            _generated[None] = _generate()
        return _generated[None]


def _usable(files: TlsFiles) -> bool:
    if not (files.ca_pem_path.is_file() and files.server_cert_path.is_file() and files.server_key_path.is_file()):
        return False
    try:
        server = x509.load_pem_x509_certificates(files.server_cert_path.read_bytes())[0]
    except ValueError:
        return False
    return server.not_valid_after_utc - _RENEW_MARGIN > dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def ensure_tls_files(state_dir: Path) -> TlsFiles:
    """Return the TLS files in ``state_dir``, creating them on first use and reusing them afterwards.

    Raises:
        OSError: the state folder cannot be written.
    """
    tls_dir = state_dir / "tls"
    files = TlsFiles(
        ca_pem_path=state_dir / "tls-ca.pem",
        server_cert_path=tls_dir / "server-chain.pem",
        server_key_path=tls_dir / "server-key.pem",
    )
    if _usable(files):
        return files
    tls_dir.mkdir(parents=True, exist_ok=True)
    material = _process_material()
    _write(files.server_key_path, material.server_key_pem, private=True)
    _write(files.server_cert_path, material.server_chain_pem)
    _write(files.ca_pem_path, material.ca_cert_pem)
    return files
