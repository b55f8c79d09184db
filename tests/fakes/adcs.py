"""A loopback fake of AD CS web enrollment (``/certsrv``): the pages a client parses, and the authentication.

What it serves, modelled on certsrv's answers:

- ``POST /certsrv/certfnsh.asp`` (form ``Mode=newreq``, ``CertRequest``, ``CertAttrib=CertificateTemplate:<t>``):
  "Certificate Issued" with ``certnew.cer?ReqID=<n>&amp;Enc=bin`` links; "Certificate Pending" with "Your Request
  Id is <n>." for a template that needs certificate manager approval; "Certificate Request Denied" with "The
  disposition message is "Denied by Policy Module ..."" for an unknown template; an error page for an
  unreadable request;
- ``GET /certsrv/certnew.cer?ReqID=<n>&Enc=b64``: the PEM certificate (``application/pkix-cert``), or an error
  page whose "Disposition message:" is "Taken Under Submission" (still pending) or "Denied by ..." (denied);
- ``GET /certsrv/certnew.p7b?ReqID=<n>&Enc=b64``: ``-----BEGIN PKCS7-----`` holding root, leaf and issuing CA,
  in that (unhelpful) order;
- ``GET /certsrv/``: the welcome page ("Welcome ... Microsoft Active Directory Certificate Services");
- authentication: HTTP Basic, or NTLM verified for real with ``pyspnego``'s NTLM acceptor (negotiate → challenge →
  authenticate on one kept-alive connection; the acceptor checks the NTLMv2 response against the password in
  the ``NTLM_USER_FILE`` that ``ntlm_user_file`` writes); 401 otherwise; ``down`` answers 503.
"""

from __future__ import annotations

import base64
import html
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from renewal.ca import Issued, SigningRequest
from renewal.ca.local import LocalCA
from tests.fakes.loopback import LoopbackServer, Request, Response

__all__ = ["FakeCertsrv", "running"]

_PAGE = """<HTML><Head><Title>Microsoft Active Directory Certificate Services</Title></Head>
<Body><Font ID=locPageFont Face="Arial"><P ID=locPageTitle> <B> {title} </B>
<P>{body}
</Font></Body></HTML>
"""


@dataclass
class FakeCertsrv:
    """certsrv on loopback HTTP. ``templates`` maps a template name to ``"issue"`` or ``"approve"``."""

    ca: LocalCA
    chain: tuple[x509.Certificate, ...]
    username: str
    password: str
    auth: str = "basic"
    templates: dict[str, str] = field(default_factory=lambda: {"WebServer": "issue", "ApprovedWebServer": "approve"})
    down: bool = False
    paths: list[str] = field(default_factory=list)
    authenticated: list[str] = field(default_factory=list)
    ntlm_negotiations: int = 0
    _requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    _next_id: int = 41
    _ntlm: dict[tuple[str, int], Any] = field(default_factory=dict)
    _server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def ntlm_user_file(self, directory: Path) -> Path:
        """Write the acceptor's credential store (``DOMAIN:USER:PASSWORD``) for ``NTLM_USER_FILE``."""
        domain, _, user = self.username.rpartition("\\")
        path = directory / "ntlm-users"
        path.write_text(f"{domain}:{user}:{self.password}\n")
        return path

    def approve(self, request_id: str) -> None:
        """A certificate manager issues the pending request."""
        self._requests[int(request_id)]["state"] = "approved"

    def deny(self, request_id: str) -> None:
        """A certificate manager denies the pending request."""
        self._requests[int(request_id)]["state"] = "denied"

    def start(self) -> None:
        self._server = LoopbackServer(self.handle).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def handle(self, request: Request) -> Response:
        """The answer function: certsrv's answer to ``request``, once it is authenticated."""
        self.paths.append(request.path)
        if self.down:
            return _html(503, _PAGE.format(title="Service Unavailable", body="").encode())
        challenge = self._authenticate(request)
        if challenge is not None:
            return _html(401, b"<HTML>401 - Unauthorized</HTML>", {"WWW-Authenticate": challenge})
        status, content_type, data = self._answer(request.method, request.target, request.body)
        return Response(status, data, {"Content-Type": content_type})

    def _authenticate(self, request: Request) -> str | None:
        """``None`` when ``request`` is authenticated, else the ``WWW-Authenticate`` challenge to answer."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if self.auth == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if scheme.lower() == "basic" and secrets.compare_digest(token.strip(), expected):
                self.authenticated.append(self.username)
                return None
            return 'Basic realm="ca01.corp.example"'
        if scheme.upper() != "NTLM" or not token:
            return "NTLM"
        # NTLM authenticates a connection: negotiate, challenge and authenticate come on one kept-alive
        # connection, so the acceptor is kept per client port.
        message = base64.b64decode(token)
        try:
            if message[8:12] == b"\x01\x00\x00\x00":
                self.ntlm_negotiations += 1
                acceptor = self._ntlm[request.peer] = spnego.server(protocol="ntlm")
                return "NTLM " + base64.b64encode(acceptor.step(message) or b"").decode()
            acceptor = self._ntlm.pop(request.peer, None)
            if acceptor is None:
                return "NTLM"
            acceptor.step(message)
        except spnego.exceptions.SpnegoError:
            self._ntlm.pop(request.peer, None)
            return "NTLM"
        self.authenticated.append(str(acceptor.client_principal))
        return None

    def _answer(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if method == "GET" and parts.path == "/certsrv/":
            welcome = "<P>Use this Web site to request a certificate ...</P>"
            page = _PAGE.format(title="Microsoft Active Directory Certificate Services - Welcome", body=welcome)
            return 200, "text/html", page.encode()
        if method == "POST" and parts.path == "/certsrv/certfnsh.asp":
            return self._submit({k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()})
        if method == "GET" and parts.path in ("/certsrv/certnew.cer", "/certsrv/certnew.p7b"):
            entry = self._requests.get(int(query.get("ReqID", "0") or "0"))
            if entry is None:
                return 200, "text/html", _error_page("Error", "The request ID is not valid. 0x80070057")
            if entry["state"] == "pending":
                return 200, "text/html", _error_page("Certificate Pending", "Taken Under Submission")
            if entry["state"] == "denied":
                return 200, "text/html", _error_page("Certificate Request Denied", "Denied by CORP\\pki-manager")
            leaf = self._issue(entry)
            if parts.path.endswith(".cer"):
                return 200, "application/pkix-cert", leaf.public_bytes(serialization.Encoding.PEM)
            root, *rest = reversed(self.chain)
            bundle = pkcs7.serialize_certificates([root, leaf, *reversed(rest)], serialization.Encoding.PEM)
            return 200, "application/x-pkcs7-certificates", bundle
        return 404, "text/html", _PAGE.format(title="404 - File or directory not found.", body="").encode()

    def _submit(self, form: dict[str, str]) -> tuple[int, str, bytes]:
        attributes = dict(line.split(":", 1) for line in form.get("CertAttrib", "").splitlines() if ":" in line)
        template = attributes.get("CertificateTemplate", "")
        try:
            assert form.get("Mode") == "newreq"
            csr = x509.load_pem_x509_csr(form.get("CertRequest", "").encode())
        except (AssertionError, ValueError):
            return (
                200,
                "text/html",
                _PAGE.format(
                    title="Certificate Request Error",
                    body="Your certificate request could not be processed. The disposition message is "
                    '"Error Parsing Request  ASN1 bad tag value met. 0x8009310b (ASN: 267)".',
                ).encode(),
            )
        request_id = self._next_id
        self._next_id += 1
        if template not in self.templates:
            return (
                200,
                "text/html",
                _PAGE.format(
                    title="Certificate Request Denied",
                    body=f"Your certificate request was denied. Your Request Id is {request_id}. "
                    "The disposition message is "
                    '"Denied by Policy Module  0x80094800, The request was for a certificate template that is not '
                    f'supported by the Active Directory Certificate Services policy: {html.escape(template)}."',
                ).encode(),
            )
        state = "approved" if self.templates[template] == "issue" else "pending"
        self._requests[request_id] = {"csr": csr, "state": state}
        if state == "pending":
            return (
                200,
                "text/html",
                _PAGE.format(
                    title="Certificate Pending",
                    body="Your certificate request has been received. However, you must wait for an administrator to "
                    f"issue the certificate you requested.<P>Your Request Id is {request_id}.",
                ).encode(),
            )
        return (
            200,
            "text/html",
            _PAGE.format(
                title="Certificate Issued",
                body="The certificate you requested was issued to you.<P>"
                f'<A Href="certnew.cer?ReqID={request_id}&amp;Enc=bin">Download certificate</A><P>'
                f'<A Href="certnew.p7b?ReqID={request_id}&amp;Enc=bin">Download certificate chain</A>',
            ).encode(),
        )

    def _issue(self, entry: dict[str, Any]) -> x509.Certificate:
        if "certificate" not in entry:
            csr = entry["csr"]
            issued = self.ca.submit(SigningRequest(csr.public_bytes(serialization.Encoding.DER), "adcs", "cert"))
            assert isinstance(issued, Issued)
            entry["certificate"] = x509.load_pem_x509_certificate(issued.leaf_pem.encode())
        certificate: x509.Certificate = entry["certificate"]
        return certificate


def _html(status: int, page: bytes, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, page, {"Content-Type": "text/html", **(headers or {})})


def _error_page(title: str, disposition: str) -> bytes:
    return _PAGE.format(
        title=title, body=f"Disposition message:\t\t{html.escape(disposition)}\r\n<P>Contact your administrator."
    ).encode()


@contextmanager
def running(fake: FakeCertsrv) -> Iterator[FakeCertsrv]:
    """Serve ``fake`` on loopback for the duration of the block."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
