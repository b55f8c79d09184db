"""Vault PKI revocation and the harmless check, against the loopback fake of Vault's HTTP API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509

from renewal.ca import CAProfile, HealthChecked, Issued, RevokingCAAdapter, SigningRequest, adapter_for
from renewal.ca.local import LocalCA
from renewal.ca.vault import VaultPKI
from renewal.errors import PermanentError, RetryableError
from tests.ca.conftest import issued_leaf_pem
from tests.fakes.vault_pki import FakeVault, running

TOKEN = "hvs.revoke-token-never-logged"
SECRET_ID = "secret-id-never-logged-0815"


@pytest.fixture
def vault(signing_ca: LocalCA) -> Iterator[FakeVault]:
    with running(FakeVault(signing_ca, root_token=TOKEN, approle=("role-1", SECRET_ID))) as fake:
        yield fake


def adapter(url: str, **options: object) -> VaultPKI:
    profile = CAProfile("corp-vault", "vault", {"url": url, "role": "web", "token_setting": "VAULT_TOKEN", **options})
    built = adapter_for(profile, {"VAULT_TOKEN": TOKEN, "VAULT_SECRET_ID": SECRET_ID, "OTHER": "other-token"})
    assert isinstance(built, VaultPKI)
    return built


def test_vault_is_a_revoking_and_health_checked_adapter(vault: FakeVault) -> None:
    """The flow asks for revocation and the check by type."""
    ca = adapter(vault.url)
    assert isinstance(ca, RevokingCAAdapter)
    assert isinstance(ca, HealthChecked)


def test_revoke_posts_the_serial_number_to_the_mount(
    vault: FakeVault, keyvault_signing_request: SigningRequest
) -> None:
    """POST /v1/{mount}/revoke with the serial as Vault writes it (colon-separated hex), and the token."""
    ca = adapter(vault.url)
    leaf = issued_leaf_pem(ca, keyvault_signing_request)
    ca.revoke(leaf)
    serial = x509.load_pem_x509_certificate(leaf.encode()).serial_number
    expected = ":".join(f"{b:02x}" for b in serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
    assert list(vault.revoked) == [expected]
    last = vault.requests[-1]
    assert (last.method, last.path, last.headers["x-vault-token"]) == ("POST", "/v1/pki/revoke", TOKEN)


def test_revoking_twice_succeeds(vault: FakeVault, keyvault_signing_request: SigningRequest) -> None:
    """A redelivered retirement revokes again: Vault answers with the first revocation, and so do we."""
    ca = adapter(vault.url)
    leaf = issued_leaf_pem(ca, keyvault_signing_request)
    ca.revoke(leaf)
    ca.revoke(leaf)
    assert len(vault.revoked) == 1


def test_a_serial_the_mount_never_issued_is_refused_for_good(
    vault: FakeVault, keyvault_signing_request: SigningRequest, signing_ca: LocalCA
) -> None:
    """400 "certificate with serial ... not found": permanent, with its own reason (retrying cannot help)."""
    other = signing_ca.submit(keyvault_signing_request)
    assert isinstance(other, Issued)
    with pytest.raises(PermanentError) as caught:
        adapter(vault.url).revoke(other.leaf_pem)
    assert caught.value.reason == "vault_revoke_refused"
    assert "not found" in caught.value.message


def test_a_sealed_vault_makes_revocation_retryable(vault: FakeVault, keyvault_signing_request: SigningRequest) -> None:
    """503 sealed: the outbox tries again later."""
    ca = adapter(vault.url)
    leaf = issued_leaf_pem(ca, keyvault_signing_request)
    vault.down = True
    with pytest.raises(RetryableError) as caught:
        ca.revoke(leaf)
    assert caught.value.reason == "ca_unavailable"


def test_a_token_without_the_right_is_permission_denied(
    vault: FakeVault, keyvault_signing_request: SigningRequest
) -> None:
    """403 is permanent, and names no token."""
    leaf = issued_leaf_pem(adapter(vault.url), keyvault_signing_request)
    with pytest.raises(PermanentError) as caught:
        adapter(vault.url, token_setting="OTHER").revoke(leaf)
    assert caught.value.reason == "permission_denied"
    assert TOKEN not in str(caught.value)
    assert "other-token" not in str(caught.value)


def test_check_looks_the_token_up_and_issues_nothing(vault: FakeVault) -> None:
    """GET /v1/auth/token/lookup-self: one line naming Vault and the role, no token; nothing signed."""
    line = adapter(vault.url).check()
    assert vault.url in line
    assert "pki/sign/web" in line
    assert TOKEN not in line
    assert [(r.method, r.path) for r in vault.requests] == [("GET", "/v1/auth/token/lookup-self")]
    assert vault.issued == set()


def test_check_logs_in_with_approle_first(vault: FakeVault) -> None:
    """An AppRole profile proves the login works too, and reports when its token expires."""
    line = adapter(vault.url, token_setting=None, role_id="role-1", secret_id_setting="VAULT_SECRET_ID").check()
    assert "expires in" in line
    assert vault.logins == 1


@pytest.mark.parametrize(
    ("setting", "down", "error"), [("OTHER", False, PermanentError), ("VAULT_TOKEN", True, RetryableError)]
)
def test_check_fails_with_the_error_that_says_whether_retrying_helps(
    vault: FakeVault, setting: str, down: bool, error: type[Exception]
) -> None:
    """A refused token is permanent; a sealed Vault is retryable."""
    vault.down = down
    with pytest.raises(error):
        adapter(vault.url, token_setting=setting).check()
