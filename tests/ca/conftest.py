"""Fixtures shared by the CA adapter tests: a CSR made by the Key Vault emulator, as a renewal gets it, and the
CAs (or their fakes) more than one test module talks to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.certificates import CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles, create_local_ca
from renewal.ca import CAAdapter, Issued, SigningRequest
from renewal.ca.local import LocalCA
from tests.ca.servers import ChallTestServer, PebbleServer, challtestsrv, pebble_server
from tests.fakes.ejbca import FakeEjbca, running
from tests.fakes.est import LoopbackTls

CONTRACT_DNS_NAMES = ("contract.devstack.test", "www.contract.devstack.test")


@pytest.fixture(scope="module")
def keyvault_signing_request(tmp_path_factory: pytest.TempPathFactory) -> SigningRequest:
    """A fresh RSA-2048 CSR from the emulator's Unknown-issuer create, with two DNS SANs, per test module."""
    state: Path = tmp_path_factory.mktemp("keyvault")
    with KeyVaultEmulator(state_dir=state, vaults=["contract"], tick_interval=None) as emulator:
        client: Any = emulator.certificate_client("contract")
        policy = CertificatePolicy(
            issuer_name="Unknown",
            subject=f"CN={CONTRACT_DNS_NAMES[0]}",
            san_dns_names=list(CONTRACT_DNS_NAMES),
            validity_in_months=3,
        )
        operation = client.begin_create_certificate("contract-cert", policy).result()
        return SigningRequest(
            csr_der=bytes(operation.csr),
            vault_name="contract",
            certificate_name="contract-cert",
            validity_months=3,
            key_usage=("digitalSignature", "keyEncipherment"),
            ekus=("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"),
        )


def issued_leaf_pem(ca: CAAdapter, request: SigningRequest) -> str:
    """The leaf ``ca`` issues for ``request`` at once (the CAs these tests revoke at never answer pending)."""
    answer = ca.submit(request)
    assert isinstance(answer, Issued)
    return answer.leaf_pem


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("ejbca-ca"))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    return LoopbackTls.create(tmp_path_factory.mktemp("ejbca-tls"))


@pytest.fixture
def ejbca(ca_files: LocalCAFiles, tls: LoopbackTls) -> Iterator[FakeEjbca]:
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    chain = tuple(x509.load_pem_x509_certificates(ca_files.chain_path.read_bytes()))
    signing = LocalCA(ca_certificate=chain[0], ca_key=key, chain=chain)  # type: ignore[arg-type]
    with running(FakeEjbca(signing, chain, tls)) as fake:
        yield fake


@pytest.fixture(scope="module")
def signing_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    files = create_local_ca(tmp_path_factory.mktemp("vault-ca"))
    key = serialization.load_pem_private_key(files.issuing_key_path.read_bytes(), None)
    return LocalCA(
        ca_certificate=x509.load_pem_x509_certificate(files.issuing_cert_path.read_bytes()),
        ca_key=key,  # type: ignore[arg-type]
        chain=tuple(x509.load_pem_x509_certificates(files.chain_path.read_bytes())),
    )


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestServer]:
    with challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as server:
        yield server


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, dns_server: ChallTestServer) -> Iterator[PebbleServer]:
    with pebble_server(tmp_path_factory.mktemp("pebble"), dns_server) as server:
        yield server
