"""A loopback HTTPS fake of EJBCA's REST ``pkcs10enroll``, with TLS client authentication.

- ``POST /ejbca/ejbca-rest-api/v1/certificate/pkcs10enroll`` with ``{"certificate_request", "certificate_profile_name",
  "end_entity_profile_name", "certificate_authority_name", "username", "password"?, "include_chain",
  "account_binding_id"?}`` → 201 ``{"certificate": base64 DER, "serial_number", "response_format": "DER",
  "certificate_chain": [base64 DER, ...]}`` (the chain only with ``include_chain``);
- the TLS handshake asks for a client certificate and verifies it against ``LoopbackTls``'s CA (a certificate from
  another CA fails the handshake); a request without one gets 403, as EJBCA answers an unauthorized client;
- ``PUT /ejbca/ejbca-rest-api/v1/certificate/{issuer_dn}/{serial}/revoke?reason=...`` → 200 ``{"issuer_dn",
  "serial_number", "revocation_reason", "revocation_date", "message", "revoked": true}`` for a certificate it
  enrolled; 409 ``Certificate is already revoked``, 404 for one it does not know, 400 for an unknown reason;
- ``GET /ejbca/ejbca-rest-api/v1/ca`` → ``{"certificate_authorities": [{"id", "name", "subject_dn", ...}]}``;
- errors in EJBCA's shape ``{"error_code", "error_message"}``: 404 for an unknown CA, 400 for an unknown profile
  or an unreadable request, 503 when told to go ``down``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from renewal.ca import Issued, SigningRequest
from renewal.ca.local import LocalCA
from tests.fakes.est import LoopbackTls
from tests.fakes.loopback import LoopbackServer, Request, Response, json_response

__all__ = ["FakeEjbca", "running"]

_API = "/ejbca/ejbca-rest-api/v1"
_PATH = _API + "/certificate/pkcs10enroll"
_REASONS = frozenset({"UNSPECIFIED", "KEY_COMPROMISE", "SUPERSEDED", "CESSATION_OF_OPERATION", "AFFILIATION_CHANGED"})


@dataclass
class FakeEjbca:
    """EJBCA's enrollment endpoint on loopback HTTPS; records each enrollment's fields (never the password)."""

    ca: LocalCA
    chain: tuple[x509.Certificate, ...]
    tls: LoopbackTls
    ca_name: str = "Corp Issuing CA 1"
    certificate_profiles: frozenset[str] = frozenset({"TLSServer"})
    end_entity_profiles: frozenset[str] = frozenset({"KeyVault"})
    down: bool = False
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    client_subjects: list[str] = field(default_factory=list)
    issued: set[tuple[str, int]] = field(default_factory=set)
    revoked: dict[tuple[str, int], str] = field(default_factory=dict)
    url: str = ""
    _server: LoopbackServer | None = None

    def start(self) -> None:
        # Mutual TLS: the handshake asks for a client certificate and verifies it against the TLS CA.
        self._server = LoopbackServer(self.handle, tls=self.tls.server_context(client_certificates="optional"))
        self.url = self._server.start().url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def handle(self, request: Request) -> Response:
        """The answer function: EJBCA's answer to ``request``."""
        if request.method == "GET" and request.path == _API + "/ca":
            status, answer = self._authorized(request.client_certificate) or self._ca_list()
        elif request.method == "PUT" and request.path.startswith(_API + "/certificate/"):
            status, answer = self._authorized(request.client_certificate) or self._revoke(request)
        elif request.method != "POST":
            return json_response(405, {"error_code": 405, "error_message": "HTTP 405 Method Not Allowed"})
        else:
            status, answer = self._answer(request.target, request.body, request.client_certificate)
        return json_response(status, answer)

    def _authorized(self, peer: Any) -> tuple[int, dict[str, Any]] | None:
        if self.down:
            return 503, {"error_code": 503, "error_message": "Service unavailable"}
        if not peer:
            return 403, {"error_code": 403, "error_message": "Not authorized to resource /ca_functionality/view_ca."}
        return None

    def _ca_list(self) -> tuple[int, dict[str, Any]]:
        subject = self.chain[0].subject.rfc4514_string()
        return 200, {"certificate_authorities": [{"id": 1, "name": self.ca_name, "subject_dn": subject}]}

    def _revoke(self, request: Request) -> tuple[int, dict[str, Any]]:
        parts = request.path[len(_API + "/certificate/") :].split("/")
        if len(parts) != 3 or parts[2] != "revoke":
            return 404, {"error_code": 404, "error_message": "HTTP 404 Not Found"}
        issuer, serial_hex = unquote(parts[0]), parts[1]
        reason = request.query.get("reason", "")
        if reason not in _REASONS:
            return 400, {"error_code": 400, "error_message": f"Invalid revocation reason: {reason}"}
        key = (issuer, int(serial_hex, 16))
        if key not in self.issued:
            return 404, {"error_code": 404, "error_message": "Could not find certificate with the given serial."}
        if key in self.revoked:
            return 409, {"error_code": 409, "error_message": "Certificate is already revoked"}
        self.revoked[key] = reason
        return 200, {
            "issuer_dn": issuer,
            "serial_number": serial_hex,
            "revocation_reason": reason,
            "revocation_date": "2027-03-01T12:00:00Z",
            "message": "Successfully revoked",
            "revoked": True,
        }

    def _answer(self, path: str, body: bytes, peer: Any) -> tuple[int, dict[str, Any]]:
        if self.down:
            return 503, {"error_code": 503, "error_message": "Service unavailable"}
        if not peer:
            return 403, {"error_code": 403, "error_message": "Not authorized to resource /ra_functionality/create."}
        self.client_subjects.append(str(dict(x[0] for x in peer["subject"]).get("commonName")))
        if path != _PATH:
            return 404, {"error_code": 404, "error_message": "HTTP 404 Not Found"}
        try:
            request = json.loads(body)
            csr = x509.load_pem_x509_csr(str(request["certificate_request"]).encode())
        except (ValueError, KeyError, TypeError):
            return 400, {"error_code": 400, "error_message": "Failed to parse the certificate request."}
        self.enrollments.append({k: v for k, v in request.items() if k not in ("password", "certificate_request")})
        if request.get("certificate_authority_name") != self.ca_name:
            return 404, {
                "error_code": 404,
                "error_message": f"CA with name {request.get('certificate_authority_name')} doesn't exist.",
            }
        if request.get("certificate_profile_name") not in self.certificate_profiles:
            return 400, {"error_code": 400, "error_message": "Certificate profile not found or not authorized."}
        if request.get("end_entity_profile_name") not in self.end_entity_profiles:
            return 400, {"error_code": 400, "error_message": "End entity profile not found or not authorized."}
        issued = self.ca.submit(SigningRequest(csr.public_bytes(serialization.Encoding.DER), "ejbca", "enrolled"))
        assert isinstance(issued, Issued)
        leaf = x509.load_pem_x509_certificate(issued.leaf_pem.encode())
        self.issued.add((leaf.issuer.rfc4514_string(), leaf.serial_number))
        chain = list(reversed(self.chain)) if request.get("include_chain") else []
        return 201, {
            "certificate": _der_b64(leaf),
            "serial_number": f"{leaf.serial_number:X}",
            "response_format": "DER",
            "certificate_chain": [_der_b64(c) for c in chain],
        }


def _der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


@contextmanager
def running(fake: FakeEjbca) -> Iterator[FakeEjbca]:
    """Serve ``fake`` on loopback for the duration of the block."""
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
