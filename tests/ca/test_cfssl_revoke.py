"""CFSSL revocation against a real ``cfssl serve`` with a SQLite certificate database, and the harmless check."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from renewal.ca import CAProfile, HealthChecked, Issued, RevokingCAAdapter, SigningRequest, adapter_for
from renewal.ca.cfssl import CfsslCA
from renewal.errors import PermanentError, RetryableError
from tests.ca.servers import CfsslServer, cfssl_server, cfssl_status, failing_server, free_port


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cfssl-db")


@pytest.fixture(scope="module")
def cfssl(directory: Path) -> Iterator[CfsslServer]:
    with cfssl_server(directory, auth_key_hex=secrets.token_hex(16), database=True) as server:
        yield server


@pytest.fixture(scope="module")
def without_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfsslServer]:
    with cfssl_server(tmp_path_factory.mktemp("cfssl-nodb"), auth_key_hex=secrets.token_hex(16)) as server:
        yield server


def adapter(url: str, **options: object) -> CfsslCA:
    built = adapter_for(CAProfile("corp-cfssl", "cfssl", {"url": url, "profile": "open", **options}), {})
    assert isinstance(built, CfsslCA)
    return built


def signed(server: CfsslServer, request: SigningRequest) -> str:
    answer = adapter(server.url).submit(request)
    assert isinstance(answer, Issued)
    return answer.leaf_pem


def serial(pem: str) -> int:
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def test_cfssl_is_a_revoking_and_health_checked_adapter(cfssl: CfsslServer) -> None:
    """The flow asks for revocation and the check by type."""
    ca = adapter(cfssl.url)
    assert isinstance(ca, RevokingCAAdapter)
    assert isinstance(ca, HealthChecked)


def test_revoke_marks_the_certificate_revoked_in_the_database(
    cfssl: CfsslServer, directory: Path, keyvault_signing_request: SigningRequest
) -> None:
    """A certificate the server signed (and recorded) is revoked; a second revocation succeeds too."""
    leaf = signed(cfssl, keyvault_signing_request)
    assert cfssl_status(directory, serial(leaf)) == "good"
    adapter(cfssl.url).revoke(leaf)
    assert cfssl_status(directory, serial(leaf)) == "revoked"
    adapter(cfssl.url).revoke(leaf)


def test_a_certificate_the_database_does_not_hold_is_refused_for_good(
    cfssl: CfsslServer, without_database: CfsslServer, keyvault_signing_request: SigningRequest
) -> None:
    """Signed elsewhere: CFSSL has no row of it, a permanent refusal naming -db-config."""
    leaf = signed(without_database, keyvault_signing_request)
    with pytest.raises(PermanentError) as caught:
        adapter(cfssl.url).revoke(leaf)
    assert caught.value.reason == "cfssl_revoke_not_found"
    assert "-db-config" in caught.value.message


def test_a_server_without_a_database_cannot_revoke(
    without_database: CfsslServer, keyvault_signing_request: SigningRequest
) -> None:
    """Without -db-config CFSSL keeps no record: revocation is refused for good, never pretended."""
    leaf = signed(without_database, keyvault_signing_request)
    with pytest.raises(PermanentError):
        adapter(without_database.url).revoke(leaf)


def test_an_unreachable_or_failing_cfssl_makes_revocation_retryable(
    cfssl: CfsslServer, keyvault_signing_request: SigningRequest
) -> None:
    """Nothing listening, or a 503: retryable."""
    leaf = signed(cfssl, keyvault_signing_request)
    with pytest.raises(RetryableError):
        adapter(f"http://127.0.0.1:{free_port()}", timeout_seconds=2).revoke(leaf)
    with failing_server(503) as url, pytest.raises(RetryableError):
        adapter(url, timeout_seconds=2).revoke(leaf)


def test_check_names_the_signer_and_signs_nothing(cfssl: CfsslServer, directory: Path) -> None:
    """/info answers the signer's certificate: the line names it and the profile."""
    line = adapter(cfssl.url).check()
    assert cfssl.url in line
    assert "profile open" in line
    assert "BEGIN" not in line


def test_check_is_retryable_when_cfssl_is_down() -> None:
    """A 503 from /info is retryable."""
    with failing_server(503) as url, pytest.raises(RetryableError):
        adapter(url, timeout_seconds=2).check()
