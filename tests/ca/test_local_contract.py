"""The local file-based CA against the shared adapter contract."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.localca import LocalCAFiles, create_local_ca
from renewal.ca import CAAdapter, CAProfile, SigningRequest, adapter_for
from renewal.ca.local import LocalCA
from tests.ca.contract import DeferringCAContract


@pytest.fixture(scope="module")
def local_ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("local-ca"))


def _profile(files: LocalCAFiles, **extra: str) -> CAProfile:
    options = {key: value for key, value in files.profile_options().items() if key != "adapter"}
    return CAProfile("local", "local", {**options, **extra})


def _manual(files: LocalCAFiles, approvals: Path) -> CAAdapter:
    return adapter_for(_profile(files, approval="manual", approval_dir=str(approvals)), {})


class TestLocalCAContract(DeferringCAContract):
    """The local CA keeps the contract, including deferral in its manual-approval mode."""

    @pytest.fixture
    def adapter(self, local_ca_files: LocalCAFiles) -> CAAdapter:
        return adapter_for(_profile(local_ca_files), {})

    @pytest.fixture
    def rejecting_adapter(
        self, local_ca_files: LocalCAFiles, tmp_path: Path, keyvault_signing_request: SigningRequest
    ) -> CAAdapter:
        # The local CA refuses through its approver: the request is denied before it is even submitted.
        reference = hashlib.sha256(keyvault_signing_request.csr_der).hexdigest()[:32]
        (tmp_path / f"{reference}.denied").touch()
        return _manual(local_ca_files, tmp_path)

    @pytest.fixture
    def unreachable_adapter(self, local_ca_files: LocalCAFiles, tmp_path: Path) -> CAAdapter:
        # The local CA's outage: its approval store cannot be written (a file stands where the folder should).
        blocked = tmp_path / "store"
        blocked.write_text("not a directory")
        key = serialization.load_pem_private_key(local_ca_files.issuing_key_path.read_bytes(), None)
        return LocalCA(
            ca_certificate=x509.load_pem_x509_certificate(local_ca_files.issuing_cert_path.read_bytes()),
            ca_key=key,  # type: ignore[arg-type]
            approval_dir=blocked,
        )

    @pytest.fixture
    def deferring_adapter(self, local_ca_files: LocalCAFiles, tmp_path: Path) -> CAAdapter:
        return _manual(local_ca_files, tmp_path)

    @pytest.fixture
    def approve(self, tmp_path: Path) -> Callable[[str], None]:
        return lambda reference: (tmp_path / f"{reference}.approved").touch()
