"""CA adapters that answer wrongly, for the tests of what must never be merged.

They implement the real ``CAAdapter`` protocol and are plugged in the way any adapter of one's own is: a CA
profile names one by module path (``GARBAGE``, ``WRONG_KEY``), or a test hands an instance to
``build_runtime(adapters=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.localca import LocalCAFiles, create_local_ca, issue_leaf
from renewal.ca import CAProfile, Issued, Pending, SigningRequest

__all__ = ["GARBAGE", "WRONG_KEY", "GarbageCA", "WrongKeyCA"]

# The adapter names a CA profile gives to use these fakes (adapters of one's own, by module path).
GARBAGE = "tests.fakes.ca:GarbageCA"
WRONG_KEY = "tests.fakes.ca:WrongKeyCA"


class WrongKeyCA:
    """Signs a proper certificate, chained to the local CA, but for a key other than the CSR's."""

    def __init__(self, files: LocalCAFiles) -> None:
        self._files = files
        self.submissions = 0

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> WrongKeyCA:
        directory = profile.options["ca_directory"]
        assert isinstance(directory, str)
        return cls(create_local_ca(Path(directory)))

    def submit(self, request: SigningRequest) -> Issued | Pending:
        self.submissions += 1
        csr = x509.load_der_x509_csr(request.csr_der)
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        now = datetime.now(UTC)
        leaf = issue_leaf(
            self._files,
            subject_cn="wrong-key",
            dns_names=names.get_values_for_type(x509.DNSName),
            public_key=other_key,
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(days=90),
        )
        return Issued(
            leaf_pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
            chain_pem=(self._files.chain_path.read_text(),),
        )

    def poll(self, reference: str) -> Issued | Pending:
        raise AssertionError("WrongKeyCA never defers")


class GarbageCA:
    """Answers "issued" with something that is not a certificate at all."""

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> GarbageCA:
        return cls()

    def submit(self, request: SigningRequest) -> Issued | Pending:
        return Issued(leaf_pem="<html><body>502 Bad Gateway</body></html>", chain_pem=())

    def poll(self, reference: str) -> Issued | Pending:
        raise AssertionError("GarbageCA never defers")
