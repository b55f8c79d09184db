"""Loopback servers for the "credentials never leave their host" tests: a recorder, a redirector, a tiny ACME server.

- ``LoopbackServer(handler)`` is ``tests.fakes.loopback``'s: one answer function on 127.0.0.1 that records every
  connection and request it gets, so a test can assert that *nothing at all* arrived;
- ``redirect_to(target, status)`` is the answer of a CA URL that redirects: ``status`` with a ``Location`` on
  ``target`` that carries userinfo, a path and a query, none of which an error message may repeat;
- ``AcmeDirectory`` speaks just enough RFC 8555 (directory, nonces, account, order, finalize) for the adapter to
  reach a chosen URL, with entries that can point anywhere or answer a redirect; it does not verify JWS;
- ``tls_files(directory, names)`` makes a throw-away CA and a server certificate for ``names``.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fakes import loopback
from tests.fakes.loopback import Request, Response

__all__ = [
    "LEAK_PATH",
    "LEAK_QUERY",
    "LEAK_USERINFO",
    "AcmeDirectory",
    "Answer",
    "LoopbackServer",
    "Received",
    "TlsFiles",
    "redirect_to",
    "tls_files",
]

# What a redirect's Location carries besides the host: no message may repeat any of it.
LEAK_USERINFO = "leaked-user:leaked-password"
LEAK_PATH = "/collect/leaked-path"
LEAK_QUERY = "token=leaked-query-token"


# The names these tests give the loopback server's types.
Received = Request


class Answer(Response):
    """A ``Response`` written status, headers, body: the order a redirect is read in."""

    __slots__ = ()

    def __init__(self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        Response.__init__(self, status, body, dict(headers or {}))

    @classmethod
    def json(cls, status: int, value: object, **headers: str) -> Answer:
        """A JSON answer."""
        return cls(status, {"Content-Type": "application/json", **headers}, json.dumps(value).encode())


class LoopbackServer(loopback.LoopbackServer):
    """The loopback server (a recorder, answering 200, without a handler); ``received`` is its ``requests``."""

    @property
    def received(self) -> list[Request]:
        """Every request, in order."""
        return self.requests


def redirect_to(target: loopback.LoopbackServer, status: int) -> Callable[[Received], Answer]:
    """Answer every request with ``status`` and a ``Location`` on ``target`` (with userinfo, path and query)."""
    scheme, _, rest = target.url.partition("://")
    location = f"{scheme}://{LEAK_USERINFO}@{rest}{LEAK_PATH}?{LEAK_QUERY}"

    def answer(request: Received) -> Answer:
        return Answer(status, {"Location": location, "Content-Type": "text/plain"}, b"moved\n")

    return answer


class AcmeDirectory:
    """Just enough RFC 8555 on loopback for a client to reach a chosen URL (no JWS checks; a fake, not a CA).

    ``GET /directory`` answers ``newNonce``, ``newAccount`` and ``newOrder`` here, each replaceable through
    ``entries``; ``HEAD /nonce`` gives a nonce (every answer carries ``Replay-Nonce``, §6.5); ``POST /account``
    finds the account (200 with its ``Location``, §7.3.1); ``POST /order`` creates order 1 without
    authorizations (``ready``, §7.1.6); ``POST /order/1`` and ``POST /finalize/1`` answer it. A path in
    ``redirects`` answers ``redirect`` instead; ``POST /order`` answers the problem ``rejected_order`` when set.

    Attributes:
        server: the loopback server; its ``received`` lists every request.
    """

    def __init__(
        self,
        *,
        entries: Mapping[str, str] | None = None,
        redirects: Mapping[str, Callable[[Received], Answer]] | None = None,
        rejected_order: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._entries = dict(entries or {})
        self._redirects = dict(redirects or {})
        self._rejected_order = rejected_order
        self.server = LoopbackServer(self._answer, tls=tls)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def directory_url(self) -> str:
        return f"{self.url}/directory"

    def __enter__(self) -> AcmeDirectory:
        self.server.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.server.__exit__(kind, value, traceback)

    def _answer(self, request: Received) -> Answer:
        path = request.path
        nonce = {"Replay-Nonce": secrets.token_urlsafe(16)}
        if path in self._redirects:
            return self._redirects[path](request)
        order = {
            "status": "ready",
            "identifiers": [{"type": "dns", "value": "redirect.devstack.test"}],
            "authorizations": [],
            "finalize": f"{self.url}/finalize/1",
        }
        match request.method, path:
            case "GET", "/directory":
                directory = {
                    "newNonce": f"{self.url}/nonce",
                    "newAccount": f"{self.url}/account",
                    "newOrder": f"{self.url}/order",
                }
                return Answer.json(200, {**directory, **self._entries})
            case "HEAD" | "GET", "/nonce":
                return Answer(200, {**nonce, "Cache-Control": "no-store"})
            case "POST", "/account":
                return Answer.json(200, {"status": "valid"}, Location=f"{self.url}/account/1", **nonce)
            case "POST", "/order" if self._rejected_order is not None:
                problem = {"type": f"urn:ietf:params:acme:error:{self._rejected_order}", "detail": "not here"}
                return Answer(400, {"Content-Type": "application/problem+json", **nonce}, json.dumps(problem).encode())
            case "POST", "/order":
                return Answer.json(201, order, Location=f"{self.url}/order/1", **nonce)
            case "POST", "/order/1" | "/finalize/1":
                return Answer.json(200, {**order, "status": "processing"}, **nonce)
        return Answer.json(404, {"type": "urn:ietf:params:acme:error:malformed"}, **nonce)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A throw-away TLS CA and a server certificate.

    Attributes:
        ca_path: the CA certificate (PEM), for a client's trust.
        chain_path: the server certificate and its key (PEM), for ``SSLContext.load_cert_chain``.
    """

    ca_path: Path
    chain_path: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.chain_path)
        return context


def tls_files(directory: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """Make a CA and a server certificate for ``names`` (DNS names or IP addresses) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Throw-away TLS CA {secrets.token_hex(4)}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alternative: list[x509.GeneralName] = []
    for name in names:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Python 3.13's default context is X.509-strict: it wants the AKI on the server certificate.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, chain_path = directory / "ca.pem", directory / "server.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_path.write_bytes(
        server.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return TlsFiles(ca_path=ca_path, chain_path=chain_path)
