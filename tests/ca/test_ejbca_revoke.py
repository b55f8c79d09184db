"""EJBCA REST revocation and the harmless check, against the loopback HTTPS fake with TLS client authentication."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.localca import LocalCAFiles
from renewal.ca import CAProfile, HealthChecked, Issued, RevokingCAAdapter, SigningRequest, adapter_for
from renewal.ca.ejbca import EjbcaCA
from renewal.ca.local import LocalCA
from renewal.errors import PermanentError, RetryableError
from tests.ca.conftest import issued_leaf_pem
from tests.fakes.ejbca import FakeEjbca


def adapter(ejbca: FakeEjbca, **options: object) -> EjbcaCA:
    base: dict[str, object] = {
        "url": ejbca.url,
        "certificate_profile_name": "TLSServer",
        "end_entity_profile_name": "KeyVault",
        "certificate_authority_name": "Corp Issuing CA 1",
        "client_pem_setting": "EJBCA_CLIENT_PEM",
        "ca_bundle_path": str(ejbca.tls.ca_path),
    }
    environ = {"EJBCA_CLIENT_PEM": ejbca.tls.client_pem}
    built = adapter_for(CAProfile("corp-ejbca", "ejbca", {**base, **options}), environ)
    assert isinstance(built, EjbcaCA)
    return built


def test_ejbca_is_a_revoking_and_health_checked_adapter(ejbca: FakeEjbca) -> None:
    """The flow asks for revocation and the check by type."""
    ca = adapter(ejbca)
    assert isinstance(ca, RevokingCAAdapter)
    assert isinstance(ca, HealthChecked)


def test_revoke_puts_the_issuer_and_serial_with_reason_superseded(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest
) -> None:
    """PUT .../certificate/{issuer_dn}/{serial hex}/revoke?reason=SUPERSEDED, over mutual TLS."""
    ca = adapter(ejbca)
    leaf = x509.load_pem_x509_certificate(issued_leaf_pem(ca, keyvault_signing_request).encode())
    ca.revoke(leaf.public_bytes(serialization.Encoding.PEM).decode())
    assert ejbca.revoked == {(leaf.issuer.rfc4514_string(), leaf.serial_number): "SUPERSEDED"}


def test_a_certificate_already_revoked_counts_as_revoked(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest
) -> None:
    """EJBCA's 409 "already revoked" on a redelivered retirement is success."""
    ca = adapter(ejbca)
    leaf = issued_leaf_pem(ca, keyvault_signing_request)
    ca.revoke(leaf)
    ca.revoke(leaf)
    assert len(ejbca.revoked) == 1


def test_a_certificate_ejbca_does_not_know_is_refused_for_good(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest, ca_files: LocalCAFiles
) -> None:
    """404 for an unknown serial: permanent, with its own reason."""
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    chain = tuple(x509.load_pem_x509_certificates(ca_files.chain_path.read_bytes()))
    other = LocalCA(ca_certificate=chain[0], ca_key=key, chain=chain).submit(keyvault_signing_request)  # type: ignore[arg-type]
    assert isinstance(other, Issued)
    with pytest.raises(PermanentError) as caught:
        adapter(ejbca).revoke(other.leaf_pem)
    assert caught.value.reason == "ejbca_revoke_refused"


def test_an_unavailable_ejbca_makes_revocation_retryable(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest
) -> None:
    """503: the outbox tries again later."""
    ca = adapter(ejbca)
    leaf = issued_leaf_pem(ca, keyvault_signing_request)
    ejbca.down = True
    with pytest.raises(RetryableError) as caught:
        ca.revoke(leaf)
    assert caught.value.reason == "ca_unavailable"


def test_check_finds_the_profiles_ca_in_the_list(ejbca: FakeEjbca) -> None:
    """GET .../v1/ca with the client certificate: one line naming EJBCA and the CA; nothing enrolled."""
    line = adapter(ejbca).check()
    assert "Corp Issuing CA 1" in line
    assert ejbca.url in line
    assert ejbca.enrollments == []


def test_check_fails_when_the_ca_is_not_listed(ejbca: FakeEjbca) -> None:
    """A CA name EJBCA does not list for this client is a permanent, named problem."""
    with pytest.raises(PermanentError) as caught:
        adapter(ejbca, certificate_authority_name="Other CA").check()
    assert caught.value.reason == "unknown_profile"


def test_check_is_retryable_when_ejbca_is_down(ejbca: FakeEjbca) -> None:
    """503 from the CA list is retryable."""
    ejbca.down = True
    with pytest.raises(RetryableError):
        adapter(ejbca).check()
