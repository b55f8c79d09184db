"""Fixtures shared by the CA adapter tests: a CSR made by the Key Vault emulator, as a renewal gets it."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.keyvault.certificates import CertificatePolicy

from devstack.keyvault import KeyVaultEmulator
from renewal.ca import SigningRequest

CONTRACT_DNS_NAMES = ("contract.devstack.test", "www.contract.devstack.test")


@pytest.fixture(scope="module")
def keyvault_signing_request(tmp_path_factory: pytest.TempPathFactory) -> SigningRequest:
    """A fresh RSA-2048 CSR from the emulator's Unknown-issuer create, with two DNS SANs, per test module."""
    state: Path = tmp_path_factory.mktemp("keyvault")
    with KeyVaultEmulator(state_dir=state, vaults=["contract"], tick_interval=None) as emulator:
        client = emulator.certificate_client("contract")
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
