"""The contract every CA adapter's tests run (issue: CA adapters, "A shared contract test").

Subclass ``CAAdapterContract`` in an adapter's test module and provide the fixtures it names; pytest then runs
every ``test_*`` method below against that adapter:

- ``adapter``: an adapter wired to a CA that issues (real server or wire fake, on loopback);
- ``rejecting_adapter``: an adapter whose CA refuses the request (denied, unknown role/profile, bad CSR);
- ``unreachable_adapter``: an adapter whose CA is down or answers 5xx;

and, for CAs that can defer issuance, subclass ``DeferringCAContract`` instead, which also needs
``deferring_adapter`` and ``approve``. A CA that cannot defer has no deferral test at all (not a skipped one).

The CSR comes from the Key Vault emulator (``keyvault_signing_request``), exactly as a renewal gets it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography import x509

from renewal.ca import CAAdapter, Issued, Pending, SigningRequest
from renewal.errors import PermanentError, RetryableError
from renewal.pure.verify import VerifiedCertificate, verify_issued

__all__ = ["CAAdapterContract", "DeferringCAContract", "poll_until_issued", "verify_against_its_own_chain"]


def verify_against_its_own_chain(csr_der: bytes, answer: Issued, *, now: datetime) -> VerifiedCertificate:
    """Verify ``answer`` against the CSR, trusting the top of the chain the CA sent.

    The contract checks what the adapter hands over (the CSR's key and names, validity, a chain that links and
    ends where the CA says); which CA to trust is the verifier's own concern, tested in ``tests/test_verify.py``
    and against a hostile CA in ``tests/integration/test_hostile_ca.py``.
    """
    assert answer.chain_pem, "the adapter returned no chain"
    top = x509.load_pem_x509_certificates(answer.chain_pem[-1].encode())[-1]
    return verify_issued(csr_der, answer, now=now, anchors=(top,))


def poll_until_issued(adapter: CAAdapter, answer: Issued | Pending, *, timeout: float = 30.0) -> Issued:
    """Poll a pending answer until the CA issues, honouring a short ``retry_after``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while isinstance(answer, Pending):
        if time.monotonic() > deadline:
            pytest.fail(f"the CA kept request {answer.reference!r} pending for {timeout} s")
        time.sleep(min(answer.retry_after or 0.2, 1.0))
        answer = adapter.poll(answer.reference)
    return answer


class CAAdapterContract:
    """What every adapter promises; see the module docstring for the fixtures a subclass provides."""

    def test_signs_a_csr_from_the_keyvault_emulator(
        self, adapter: CAAdapter, keyvault_signing_request: SigningRequest
    ) -> None:
        """The CA signs Key Vault's CSR: the answer verifies against it (key, SANs, validity, chain)."""
        answer = poll_until_issued(adapter, adapter.submit(keyvault_signing_request))
        verified = verify_against_its_own_chain(keyvault_signing_request.csr_der, answer, now=datetime.now(UTC))
        assert verified.leaf_der

    def test_answer_is_leaf_first_then_chain(
        self, adapter: CAAdapter, keyvault_signing_request: SigningRequest
    ) -> None:
        """The issued answer holds the end-entity certificate first and only CA certificates after it."""
        answer = poll_until_issued(adapter, adapter.submit(keyvault_signing_request))
        leaf = x509.load_pem_x509_certificate(answer.leaf_pem.encode())
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca is False
        assert answer.chain_pem, "the adapter returned no chain"
        for pem in answer.chain_pem:
            certificate = x509.load_pem_x509_certificate(pem.encode())
            assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True

    def test_rejection_is_permanent(
        self, rejecting_adapter: CAAdapter, keyvault_signing_request: SigningRequest
    ) -> None:
        """A CA that refuses the request gives a PermanentError: retrying cannot help."""
        with pytest.raises(PermanentError) as caught:
            poll_until_issued(rejecting_adapter, rejecting_adapter.submit(keyvault_signing_request))
        assert not isinstance(caught.value, RetryableError)

    def test_outage_is_retryable(
        self, unreachable_adapter: CAAdapter, keyvault_signing_request: SigningRequest
    ) -> None:
        """A CA that is down or failing gives a RetryableError: a later attempt may succeed."""
        with pytest.raises(RetryableError):
            unreachable_adapter.submit(keyvault_signing_request)


class DeferringCAContract(CAAdapterContract):
    """The contract of a CA that can hold a request (approval, slow issuance) and answer it later."""

    def test_deferred_request_is_polled_to_completion(
        self,
        deferring_adapter: CAAdapter,
        approve: Callable[[str], None],
        keyvault_signing_request: SigningRequest,
    ) -> None:
        """Submit answers pending, polling stays pending until approved, then returns the certificate."""
        first = deferring_adapter.submit(keyvault_signing_request)
        assert isinstance(first, Pending)
        assert isinstance(deferring_adapter.poll(first.reference), Pending)
        approve(first.reference)
        answer = poll_until_issued(deferring_adapter, deferring_adapter.poll(first.reference))
        verify_against_its_own_chain(keyvault_signing_request.csr_der, answer, now=datetime.now(UTC))
