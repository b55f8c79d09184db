"""A loopback HTTPS fake of an EST server (RFC 7030), and the throw-away TLS material the HTTPS fakes use.

What ``FakeEst`` does, following RFC 7030:

- ``POST /.well-known/est[/{label}]/simpleenroll`` and ``.../simplereenroll`` (§4.2): checks
  ``Content-Type: application/pkcs10``, decodes the base64 PKCS#10 body, signs it with a throw-away ``LocalCA``
  and answers ``application/pkcs7-mime; smime-type=certs-only``, base64 (§4.2.3);
- ``GET .../cacerts`` (§4.1): the CA certificates as a base64 certs-only PKCS#7, root *first* (RFC 7030 sets
  no order, so the client must order them);
- client authentication (§3.2.3, §3.3.2): HTTP Basic (401 with ``WWW-Authenticate: Basic`` otherwise) and/or a
  TLS client certificate verified against ``LoopbackTls``'s CA;
- ``hold``: each new CSR gets 202 + ``Retry-After`` (§4.2.3) until ``approve_all()``; a labelled CA in
  ``rejecting_labels`` answers 400 with a ``text/plain`` reason; ``down`` answers 503; unknown labels 404.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from renewal.ca import Issued, SigningRequest
from renewal.ca.local import LocalCA
from tests.fakes.loopback import LoopbackServer, Request, Response

__all__ = ["FakeEst", "LoopbackTls", "running"]


@dataclass(frozen=True, slots=True)
class LoopbackTls:
    """A throw-away TLS CA with a server certificate for localhost/127.0.0.1 and a client certificate.

    Attributes:
        ca_path: the TLS CA certificate (PEM), for clients' ``ca_bundle_path`` and the server's client check.
        server_cert_path: server certificate + key (PEM).
        client_pem: the client certificate and its key, PEM text (what ``client_pem_setting`` holds).
        client_pfx_b64: the same as base64 PKCS#12 with ``client_pfx_password`` (a Key Vault secret's shape).
        client_pfx_password: the PKCS#12's password.
        stranger_pem: a client certificate and key from another CA, that the fakes must refuse.
    """

    ca_path: Path
    server_cert_path: Path
    client_pem: str
    client_pfx_b64: str
    client_pfx_password: str
    stranger_pem: str

    @classmethod
    def create(cls, directory: Path) -> LoopbackTls:
        """Make the CA and certificates in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("Fake TLS CA", ca_key.public_key(), ca_key, None, is_ca=True)
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _certificate("localhost", server_key.public_key(), ca_key, ca, server=True)
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = _certificate("renewal-app", client_key.public_key(), ca_key, ca)
        other_key = ec.generate_private_key(ec.SECP256R1())
        stranger = _certificate("stranger", other_key.public_key(), other_key, None)
        (directory / "tls-ca.pem").write_bytes(_pem(ca))
        (directory / "server.pem").write_bytes(_pem(server) + _key(server_key))
        password = secrets.token_urlsafe(12)
        pfx = pkcs12.serialize_key_and_certificates(
            b"client", client_key, client, [ca], serialization.BestAvailableEncryption(password.encode())
        )
        return cls(
            ca_path=directory / "tls-ca.pem",
            server_cert_path=directory / "server.pem",
            client_pem=(_pem(client) + _key(client_key)).decode(),
            client_pfx_b64=base64.b64encode(pfx).decode(),
            client_pfx_password=password,
            stranger_pem=(_pem(stranger) + _key(other_key)).decode(),
        )

    def server_context(self, *, client_certificates: str) -> ssl.SSLContext:
        """A server context; ``client_certificates`` is ``"required"``, ``"optional"`` or ``"none"``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert_path)
        context.load_verify_locations(self.ca_path)
        context.verify_mode = {
            "required": ssl.CERT_REQUIRED,
            "optional": ssl.CERT_OPTIONAL,
            "none": ssl.CERT_NONE,
        }[client_certificates]
        return context


def _certificate(
    name: str,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    *,
    is_ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class FakeEst:
    """An EST server on loopback HTTPS; see the module docstring for what it checks."""

    ca: LocalCA
    ca_certificates: tuple[x509.Certificate, ...]
    tls: LoopbackTls
    basic: tuple[str, str] | None = None
    require_client_certificate: bool = False
    labels: frozenset[str] = frozenset({"servers"})
    rejecting_labels: frozenset[str] = frozenset({"rejecting"})
    hold: bool = False
    retry_after: int = 1
    down: bool = False
    paths: list[str] = field(default_factory=list)
    client_subjects: list[str] = field(default_factory=list)
    _approved: set[str] = field(default_factory=set)
    _held: set[str] = field(default_factory=set)
    _server: LoopbackServer | None = None
    url: str = ""

    def approve_all(self) -> None:
        """Let every held request be issued the next time the client repeats it."""
        self._approved |= self._held

    def start(self) -> None:
        self._server = LoopbackServer(self.handle, tls=self.tls.server_context(client_certificates="optional"))
        self.url = self._server.start().url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def handle(self, request: Request) -> Response:
        """The answer function: the EST server's answer to ``request``."""
        self.paths.append(request.target)
        if request.client_common_name is not None:
            self.client_subjects.append(request.client_common_name)
        status, headers, data = self._answer(
            request.method, request.target, dict(request.headers), request.body, request.client_certificate
        )
        return Response(status, data, headers)

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes, peer: Any
    ) -> tuple[int, dict[str, str], bytes]:
        text = {"Content-Type": "text/plain"}
        if self.down:
            return 503, text, b"EST service unavailable"
        headers = {k.lower(): v for k, v in headers.items()}
        if self.basic is not None:
            expected = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if not secrets.compare_digest(headers.get("authorization", ""), expected):
                return 401, {**text, "WWW-Authenticate": 'Basic realm="estrealm"'}, b"authentication required"
        if self.require_client_certificate and not peer:
            return 401, text, b"a TLS client certificate is required"
        parts = path.split("?")[0].strip("/").split("/")
        if parts[:2] != [".well-known", "est"] or len(parts) not in (3, 4):
            return 404, text, b"not found"
        label, operation = (parts[2], parts[3]) if len(parts) == 4 else (None, parts[2])
        if label is not None and label not in self.labels | self.rejecting_labels:
            return 404, text, b"unknown CA label"
        certs_only = {
            "Content-Type": "application/pkcs7-mime; smime-type=certs-only",
            "Content-Transfer-Encoding": "base64",
        }
        if method == "GET" and operation == "cacerts":
            return 200, certs_only, _certs_only(list(reversed(self.ca_certificates)))
        if method != "POST" or operation not in ("simpleenroll", "simplereenroll"):
            return 404, text, b"not found"
        if headers.get("content-type", "").split(";")[0].strip() != "application/pkcs10":
            return 415, text, b"expected application/pkcs10"
        try:
            csr = x509.load_der_x509_csr(base64.b64decode(body))
        except ValueError:
            return 400, text, b"the body is not a base64 PKCS#10 request"
        if label in self.rejecting_labels:
            return 400, text, b"request rejected by the CA policy"
        digest = hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).hexdigest()
        if self.hold and digest not in self._approved:
            self._held.add(digest)
            return 202, {**text, "Retry-After": str(self.retry_after)}, b"request pending manual approval"
        issued = self.ca.submit(SigningRequest(csr.public_bytes(serialization.Encoding.DER), "est", "enrolled"))
        assert isinstance(issued, Issued)
        return 200, certs_only, _certs_only([x509.load_pem_x509_certificate(issued.leaf_pem.encode())])


def _certs_only(certificates: list[x509.Certificate]) -> bytes:
    return base64.encodebytes(pkcs7.serialize_certificates(certificates, serialization.Encoding.DER))


@contextmanager
def running(fake: FakeEst) -> Iterator[FakeEst]:
    """Serve ``fake`` on loopback for the duration of the block."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
