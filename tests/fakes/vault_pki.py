"""A loopback fake of Vault's HTTP API, as far as the renewal app uses it, following Vault's API documentation.

- ``POST /v1/{mount}/sign/{role}`` (PKI secrets engine): ``{"csr", "common_name"?, "alt_names"?, "ttl"?,
  "format"?}`` → ``{"data": {"certificate", "issuing_ca", "ca_chain", "serial_number", "expiration"}}``;
- ``POST /v1/{mount}/revoke`` with ``{"serial_number": "39:dd:..."}`` → ``{"data": {"revocation_time",
  "revocation_time_rfc3339", "state": "revoked"}}`` (again for one already revoked, with its first time); 400
  ``certificate with serial ... not found`` for a serial the mount never issued;
- ``GET /v1/auth/token/lookup-self`` → ``{"data": {"ttl", "policies", ...}}`` for a valid token;
- ``POST /v1/auth/{approle}/login`` with ``{"role_id", "secret_id"}`` and ``POST /v1/auth/{azure}/login`` with
  ``{"role", "jwt", ...}`` → ``{"auth": {"client_token", "lease_duration", "renewable"}}``;
- errors as Vault gives them, ``{"errors": ["..."]}``: 403 ``permission denied`` for a missing, unknown or expired
  token (or the wrong namespace), 400 for an unreadable CSR, an unknown role or a name the role does not allow,
  404 for an unknown mount, 503 ``Vault is sealed`` when told to go down.

It signs with a throw-away ``LocalCA`` (or any ``submit``, such as ``tests.fakes.hostile_ca.HostileSigner``) and
records each request's path and headers for the tests to inspect. ``handle`` is its answer function, served by
``tests.fakes.loopback.LoopbackServer``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from renewal.ca import Issued, SigningRequest
from renewal.ca.local import LocalCA
from tests.fakes.loopback import LoopbackServer, Request, Response, json_response

__all__ = ["FakeVault", "RecordedRequest", "running"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake received (headers lower-cased; bodies are not kept)."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeVault:
    """Vault's PKI sign endpoint and two auth methods; set ``down`` to answer 503 like a sealed Vault.

    ``clock`` (seconds, monotonic) times the login tokens' leases: a test may advance it instead of sleeping.
    """

    ca: LocalCA
    root_token: str = "fake-root-token"
    mount: str = "pki"
    roles: dict[str, list[str] | None] = field(default_factory=lambda: {"web": None})
    namespace: str | None = None
    approle: tuple[str, str] | None = None
    azure: tuple[str, str] | None = None
    lease_duration: int = 3600
    down: bool = False
    clock: Callable[[], float] = time.monotonic
    requests: list[RecordedRequest] = field(default_factory=list)
    logins: int = 0
    issued: set[str] = field(default_factory=set)
    revoked: dict[str, int] = field(default_factory=dict)
    _tokens: dict[str, float] = field(default_factory=dict)
    _server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def start(self) -> None:
        self._server = LoopbackServer(self.handle).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def handle(self, request: Request) -> Response:
        """The answer function: Vault's answer to ``request``."""
        self.requests.append(RecordedRequest(request.method, request.target, dict(request.headers)))
        if request.method == "GET" and request.path == "/v1/auth/token/lookup-self":
            return json_response(*self._lookup_self(dict(request.headers)))
        if request.method != "POST":
            return json_response(405, {"errors": ["1 error occurred:\n\t* unsupported operation\n\n"]})
        status, answer = self._answer(request.target, dict(request.headers), request.body)
        return json_response(status, answer)

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if self.down:
            return 503, {"errors": ["Vault is sealed"]}
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {"errors": ["failed to parse JSON input"]}
        namespace = {k.lower(): v for k, v in headers.items()}.get("x-vault-namespace")
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "auth"] and len(parts) == 4 and parts[3] == "login":
            return self._login(parts[2], request)
        if len(parts) == 3 and parts[0] == "v1" and parts[2] == "revoke":
            token = {k.lower(): v for k, v in headers.items()}.get("x-vault-token", "")
            if not self._valid(token) or namespace != self.namespace:
                return 403, {"errors": ["permission denied"]}
            if parts[1] != self.mount:
                return 404, {"errors": [f'no handler for route "{parts[1]}/revoke". route entry not found.']}
            return self._revoke(request)
        if len(parts) == 4 and parts[0] == "v1" and parts[2] == "sign":
            token = {k.lower(): v for k, v in headers.items()}.get("x-vault-token", "")
            if not self._valid(token) or namespace != self.namespace:
                return 403, {"errors": ["permission denied"]}
            if parts[1] != self.mount:
                return 404, {"errors": [f'no handler for route "{parts[1]}/sign/{parts[3]}". route entry not found.']}
            return self._sign(parts[3], request)
        return 404, {"errors": ["route entry not found"]}

    def _lookup_self(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.down:
            return 503, {"errors": ["Vault is sealed"]}
        token = headers.get("x-vault-token", "")
        if not self._valid(token):
            return 403, {"errors": ["permission denied"]}
        expires = self._tokens.get(token)
        ttl = 0 if expires is None else int(expires - self.clock())
        return 200, {"data": {"display_name": "token", "policies": ["default", "pki-sign"], "ttl": ttl}}

    def _revoke(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        serial = str(request.get("serial_number") or "").lower().replace("-", ":")
        if serial not in self.issued:
            return 400, {"errors": [f"certificate with serial {serial} not found"]}
        moment = self.revoked.setdefault(serial, int(self.clock()))
        return 200, {
            "data": {"revocation_time": moment, "revocation_time_rfc3339": "", "state": "revoked"},
            "warnings": None,
        }

    def _valid(self, token: str) -> bool:
        if token and secrets.compare_digest(token, self.root_token):
            return True
        expires = self._tokens.get(token)
        return expires is not None and self.clock() < expires

    def _login(self, method: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "approle" and self.approle is not None:
            if (request.get("role_id"), request.get("secret_id")) != self.approle:
                return 400, {"errors": ["invalid role or secret ID"]}
        elif method == "azure" and self.azure is not None:
            role, jwt = self.azure
            if request.get("role") != role:
                return 400, {"errors": [f'role "{request.get("role")}" could not be found']}
            if request.get("jwt") != jwt:
                return 403, {"errors": ["permission denied"]}
        else:
            return 404, {"errors": ["route entry not found"]}
        self.logins += 1
        token = "hvs." + secrets.token_urlsafe(18)
        self._tokens[token] = self.clock() + self.lease_duration
        return 200, {
            "auth": {
                "client_token": token,
                "accessor": secrets.token_urlsafe(8),
                "policies": ["default", "pki-sign"],
                "lease_duration": self.lease_duration,
                "renewable": True,
            }
        }

    def _sign(self, role: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if role not in self.roles:
            return 400, {"errors": [f"unknown role: {role}"]}
        try:
            csr = x509.load_pem_x509_csr(str(request.get("csr", "")).encode())
        except ValueError:
            return 400, {"errors": ["certificate request could not be parsed"]}
        allowed = self.roles[role]
        if allowed is not None:
            for name in _names(csr):
                if not any(name == d or name.endswith("." + d) for d in allowed):
                    return 400, {"errors": [f"common name {name} not allowed by this role"]}
        issued = self.ca.submit(SigningRequest(csr.public_bytes(Encoding.DER), "fake-vault", "signed"))
        assert isinstance(issued, Issued)
        leaf = x509.load_pem_x509_certificate(issued.leaf_pem.encode())
        serial = ":".join(f"{b:02x}" for b in leaf.serial_number.to_bytes(20, "big").lstrip(b"\0"))
        self.issued.add(serial)
        return 200, {
            "request_id": secrets.token_hex(8),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {
                "certificate": issued.leaf_pem.strip(),
                "issuing_ca": issued.chain_pem[0].strip(),
                "ca_chain": [pem.strip() for pem in issued.chain_pem],
                "serial_number": serial,
                "expiration": int(leaf.not_valid_after_utc.timestamp()),
            },
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }


def _names(csr: x509.CertificateSigningRequest) -> list[str]:
    names = [str(a.value) for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    with suppress(x509.ExtensionNotFound):
        names += csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    return names


@contextmanager
def running(fake: FakeVault) -> Iterator[FakeVault]:
    """Serve ``fake`` on loopback for the duration of the block."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
