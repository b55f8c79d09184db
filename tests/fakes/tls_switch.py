"""A loopback TLS endpoint that presents one certificate until told to present another, as a service does when it
picks up a new Key Vault version (or one that never does: just never tell it).

It is the ``LoopbackServer`` with a server context whose SNI callback hands each handshake the context of the
certificate presented now, so a switch takes effect on the next connection, and every SNI name asked for is kept.
"""

from __future__ import annotations

import hashlib
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fakes.loopback import LoopbackServer

__all__ = ["ServedCertificate", "TlsSwitch", "served_certificate"]


@dataclass(frozen=True, slots=True)
class ServedCertificate:
    """A certificate and key an endpoint can present.

    Attributes:
        certificate_pem: the certificate, PEM.
        key_pem: its private key, PEM (unencrypted: a test key).
        der: the certificate, DER.
    """

    certificate_pem: bytes
    key_pem: bytes = field(repr=False)
    der: bytes

    @property
    def thumbprint(self) -> str:
        """Lowercase hex SHA-1 of the DER, as Key Vault's x5t."""
        return hashlib.sha1(self.der, usedforsecurity=False).hexdigest()


def served_certificate(common_name: str, *, dns_names: tuple[str, ...] = ()) -> ServedCertificate:
    """A fresh self-signed P-256 certificate for ``common_name`` (the probe does not validate chains)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    # A fixed validity: the probe compares thumbprints and reads no dates.
    now = datetime(2026, 1, 1, tzinfo=UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
    )
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)
    certificate = builder.sign(key, hashes.SHA256())
    return ServedCertificate(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        der=certificate.public_bytes(serialization.Encoding.DER),
    )


def _context(served: ServedCertificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "served.pem"
        path.write_bytes(served.certificate_pem + served.key_pem)
        context.load_cert_chain(path)
    return context


class TlsSwitch:
    """A TLS endpoint on 127.0.0.1 presenting ``first`` until ``switch_to`` is called.

    Attributes:
        server_names: the SNI name of every handshake, in order (``None`` when the client sent none).
    """

    def __init__(self, first: ServedCertificate) -> None:
        self.server_names: list[str | None] = []
        self._lock = threading.Lock()
        self._current = _context(first)
        self._outer = _context(first)
        self._outer.sni_callback = self._choose
        self._server = LoopbackServer(tls=self._outer)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._server.port

    @property
    def handshakes(self) -> int:
        """Connections accepted so far."""
        return self._server.connections

    def switch_to(self, served: ServedCertificate) -> None:
        """Present ``served`` from the next handshake on."""
        context = _context(served)
        with self._lock:
            self._current = context

    def _choose(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        with self._lock:
            self.server_names.append(server_name)
            connection.context = self._current

    def __enter__(self) -> TlsSwitch:
        self._server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.stop()
