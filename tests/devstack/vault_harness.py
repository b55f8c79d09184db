"""Drive the vault model directly: an injected clock, an event collector, one-line calls and a throw-away CA."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.keyvault._types import ApiRequest, ApiResponse, LatestWhilePending, VaultEvent
from devstack.keyvault._vault import Vault

BASE_URL = "https://127.0.0.1:8443"
START = 1_800_000_000  # 2027-01-15, Unix seconds
API_VERSION = "2025-07-01"


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """A vault with its clock and the events it emitted."""

    latest_while_pending: LatestWhilePending = "placeholder"
    clock: FakeClock = field(default_factory=FakeClock)
    events: list[VaultEvent] = field(default_factory=list)
    vault: Vault = field(init=False)

    def __post_init__(self) -> None:
        self.vault = Vault(
            name="kv1",
            base_url=BASE_URL,
            clock=self.clock,
            emit=self.events.append,
            latest_while_pending=self.latest_while_pending,
        )

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        **query: str,
    ) -> ApiResponse:
        """Send one request; ``body`` is JSON-encoded as the Python SDK does, ``raw`` is sent as is."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        headers = {"content-type": content_type} if data else {}
        all_query = {"api-version": API_VERSION, **(params or {}), **query}
        return self.vault.handle(ApiRequest(method, path, all_query, headers, data))

    def create(self, name: str, policy: dict[str, Any] | None = None, **extra: object) -> ApiResponse:
        """Create ``name`` (issuer Unknown, subject CN=<name> unless the policy says otherwise)."""
        body: dict[str, Any] = {
            "policy": policy or {"x509_props": {"subject": f"CN={name}"}, "issuer": {"name": "Unknown"}}
        }
        body.update(extra)
        return self.call("POST", f"/certificates/{name}/create", body)

    def csr(self, name: str) -> x509.CertificateSigningRequest:
        """The CSR of the pending operation of ``name``."""
        answer = self.call("GET", f"/certificates/{name}/pending")
        assert answer.status == 200, answer.body
        assert isinstance(answer.body, dict)
        return x509.load_der_x509_csr(base64.b64decode(answer.body["csr"]))


@dataclass
class TestCA:
    """A throw-away EC CA that signs CSRs (no extensions copied: Key Vault only checks the key)."""

    __test__ = False  # not a pytest class

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    certificate: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Test CA")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2036, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def sign(self, csr: x509.CertificateSigningRequest, *, not_before: int, not_after: int) -> x509.Certificate:
        """Issue a leaf for the CSR's key and subject, valid between the given Unix times."""
        return (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.certificate.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime.fromtimestamp(not_before, dt.UTC))
            .not_valid_after(dt.datetime.fromtimestamp(not_after, dt.UTC))
            .sign(self.key, hashes.SHA256())
        )

    @property
    def der(self) -> bytes:
        """The CA certificate, DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)


def der(certificate: x509.Certificate) -> bytes:
    """DER of a certificate."""
    return certificate.public_bytes(serialization.Encoding.DER)


def b64(data: bytes) -> str:
    """Standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def body_of(answer: ApiResponse) -> dict[str, Any]:
    """The JSON object body of an answer."""
    assert isinstance(answer.body, dict), answer.body
    return answer.body
