"""The Vault / OpenBao PKI adapter, against a loopback fake of Vault's HTTP API."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from renewal.ca import CAAdapter, CAProfile, SigningRequest, adapter_for
from renewal.ca.local import LocalCA
from renewal.ca.vault import VaultPKI
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.ca.contract import CAAdapterContract
from tests.fakes.vault_pki import FakeVault, running

TOKEN = "hvs.contract-token-never-logged"
SECRET_ID = "secret-id-never-logged-4711"
JWT = "eyJ.managed-identity-token.never-logged"
ENVIRON = {"VAULT_TOKEN": TOKEN, "VAULT_SECRET_ID": SECRET_ID, "WRONG_SECRET_ID": "not-the-secret-id-0815"}


@pytest.fixture
def vault(signing_ca: LocalCA) -> Iterator[FakeVault]:
    fake = FakeVault(
        signing_ca,
        root_token=TOKEN,
        roles={"web": None, "corp-only": ["corp.example"]},
        approle=("role-1234", SECRET_ID),
        azure=("renewal-app", JWT),
    )
    with running(fake):
        yield fake


def _vault_adapter(url: str, **options: object) -> CAAdapter:
    return adapter_for(CAProfile("corp-vault", "vault", {"url": url, "role": "web", **options}), ENVIRON)


@dataclass
class FakeAzureCredential:
    """Stands in for DefaultAzureCredential: the third-party seam that needs a real Azure identity."""

    token: str
    scopes: tuple[str, ...] = ()

    @dataclass(frozen=True)
    class AccessToken:
        token: str
        expires_on: int

    def get_token(self, *scopes: str) -> FakeAzureCredential.AccessToken:
        self.scopes = scopes
        return self.AccessToken(self.token, int(time.time()) + 3600)


class TestVaultContract(CAAdapterContract):
    """Vault's PKI keeps the contract; Vault cannot defer issuance."""

    @pytest.fixture
    def adapter(self, vault: FakeVault) -> CAAdapter:
        return _vault_adapter(vault.url, token_setting="VAULT_TOKEN")

    @pytest.fixture
    def rejecting_adapter(self, vault: FakeVault) -> CAAdapter:
        # The role only allows names under corp.example; the contract CSR asks for devstack.test names.
        return _vault_adapter(vault.url, token_setting="VAULT_TOKEN", role="corp-only")

    @pytest.fixture
    def unreachable_adapter(self, vault: FakeVault) -> CAAdapter:
        vault.down = True
        return _vault_adapter(vault.url, token_setting="VAULT_TOKEN")


def test_sign_goes_to_the_mount_and_role_with_the_token(
    vault: FakeVault, keyvault_signing_request: SigningRequest
) -> None:
    """The CSR is posted to /v1/{mount}/sign/{role} with the token in X-Vault-Token."""
    vault.mount = "pki_int"
    _vault_adapter(vault.url, token_setting="VAULT_TOKEN", mount="pki_int").submit(keyvault_signing_request)
    assert [r.path for r in vault.requests] == ["/v1/pki_int/sign/web"]
    assert vault.requests[0].headers["x-vault-token"] == TOKEN


def test_namespace_header_is_sent(vault: FakeVault, keyvault_signing_request: SigningRequest) -> None:
    """With a namespace, every request carries X-Vault-Namespace (Vault Enterprise, OpenBao)."""
    vault.namespace = "teams/web"
    _vault_adapter(vault.url, token_setting="VAULT_TOKEN", namespace="teams/web").submit(keyvault_signing_request)
    assert vault.requests[0].headers["x-vault-namespace"] == "teams/web"


def test_approle_logs_in_once_and_reuses_the_token(vault: FakeVault, keyvault_signing_request: SigningRequest) -> None:
    """AppRole logs in once, then signs twice with the same client token until its lease ends."""
    adapter = _vault_adapter(vault.url, role_id="role-1234", secret_id_setting="VAULT_SECRET_ID")
    adapter.submit(keyvault_signing_request)
    adapter.submit(keyvault_signing_request)
    assert vault.logins == 1
    assert [r.path for r in vault.requests] == ["/v1/auth/approle/login", "/v1/pki/sign/web", "/v1/pki/sign/web"]
    tokens = {r.headers["x-vault-token"] for r in vault.requests[1:]}
    assert len(tokens) == 1
    assert tokens.pop().startswith("hvs.")


def test_approle_logs_in_again_when_the_lease_ends(vault: FakeVault, keyvault_signing_request: SigningRequest) -> None:
    """A login token is not used past its lease: the next submit logs in again."""
    vault.lease_duration = 1
    adapter = _vault_adapter(vault.url, role_id="role-1234", secret_id_setting="VAULT_SECRET_ID")
    adapter.submit(keyvault_signing_request)
    time.sleep(1.1)
    adapter.submit(keyvault_signing_request)
    assert vault.logins == 2


def test_wrong_approle_secret_is_a_permanent_auth_failure(
    vault: FakeVault, keyvault_signing_request: SigningRequest
) -> None:
    """Vault refusing the AppRole login is permanent, reason auth_failed."""
    adapter = _vault_adapter(vault.url, role_id="role-1234", secret_id_setting="WRONG_SECRET_ID")
    with pytest.raises(PermanentError) as caught:
        adapter.submit(keyvault_signing_request)
    assert caught.value.reason == "auth_failed"


def test_azure_auth_sends_the_managed_identity_token(
    vault: FakeVault, keyvault_signing_request: SigningRequest
) -> None:
    """Azure auth logs in with the managed identity's token for Azure Resource Manager, then signs."""
    credential = FakeAzureCredential(JWT)
    profile = CAProfile(
        "corp-vault",
        "vault",
        {"url": vault.url, "role": "web", "azure_role": "renewal-app", "subscription_id": "sub-1"},
    )
    VaultPKI.from_profile(profile, ENVIRON, credential=credential).submit(keyvault_signing_request)
    assert credential.scopes == ("https://management.azure.com/.default",)
    assert [r.path for r in vault.requests] == ["/v1/auth/azure/login", "/v1/pki/sign/web"]
    assert vault.logins == 1


def test_bad_token_is_permission_denied(vault: FakeVault, keyvault_signing_request: SigningRequest) -> None:
    """Vault's 403 permission denied is permanent, reason permission_denied."""
    adapter = adapter_for(
        CAProfile("v", "vault", {"url": vault.url, "role": "web", "token_setting": "T"}), {"T": "hvs.wrong"}
    )
    with pytest.raises(PermanentError) as caught:
        adapter.submit(keyvault_signing_request)
    assert caught.value.reason == "permission_denied"
    assert "permission denied" in caught.value.message


@pytest.mark.parametrize(
    ("options", "reason"), [({"role": "nope"}, "csr_rejected"), ({"mount": "nope"}, "unknown_role")]
)
def test_unknown_role_or_mount_is_permanent(
    vault: FakeVault, keyvault_signing_request: SigningRequest, options: dict[str, str], reason: str
) -> None:
    """An unknown role (Vault: 400) or mount (404) is permanent."""
    with pytest.raises(PermanentError) as caught:
        _vault_adapter(vault.url, token_setting="VAULT_TOKEN", **options).submit(keyvault_signing_request)
    assert caught.value.reason == reason


def test_sealed_vault_is_retryable(vault: FakeVault, keyvault_signing_request: SigningRequest) -> None:
    """A sealed Vault (503) is retryable, reason ca_unavailable, and its error text is kept."""
    vault.down = True
    with pytest.raises(RetryableError) as caught:
        _vault_adapter(vault.url, token_setting="VAULT_TOKEN").submit(keyvault_signing_request)
    assert caught.value.reason == "ca_unavailable"
    assert "sealed" in caught.value.message


def test_connection_refused_is_retryable(keyvault_signing_request: SigningRequest) -> None:
    """Nothing listening on the port is retryable, reason ca_unreachable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableError) as caught:
        _vault_adapter(f"http://127.0.0.1:{port}", token_setting="VAULT_TOKEN", timeout=2).submit(
            keyvault_signing_request
        )
    assert caught.value.reason == "ca_unreachable"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": "https://vault.example"}, "role"),
        ({"url": "http://vault.example", "role": "web", "token_setting": "VAULT_TOKEN"}, "url"),
        ({"url": "https://v", "role": "web", "token_setting": "VAULT_TOKEN", "role_id": "r"}, "token_setting"),
        ({"url": "https://v", "role": "web", "role_id": "r"}, "secret_id_setting"),
        ({"url": "https://v", "role": "web", "token_setting": "VAULT_TOKEN", "tll": "1h"}, "tll"),
        ({"url": "https://v", "role": "web", "token_setting": "VAULT_TOKEN", "timeout": 0}, "timeout"),
        ({"url": "https://v", "role": "web", "token_setting": "VAULT_TOKEN", "ca_bundle_path": "/nope"}, "ca_bundle"),
    ],
)
def test_bad_options_name_the_profile_and_option(options: dict[str, object], named: str) -> None:
    """A malformed profile raises ConfigurationError naming RENEWAL_CA_PROFILES, the profile and the option."""
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(CAProfile("corp-vault", "vault", options), ENVIRON)
    assert caught.value.setting == "RENEWAL_CA_PROFILES"
    assert "corp-vault" in caught.value.message
    assert named in caught.value.message


def test_missing_secret_setting_names_the_option() -> None:
    """A token setting that is not set is a ConfigurationError naming the profile and option, not what it names."""
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(CAProfile("v", "vault", {"url": "https://v", "role": "web", "token_setting": "NOT_SET"}), {})
    assert caught.value.setting == "RENEWAL_CA_PROFILES"
    assert "profile 'v': option token_setting" in caught.value.message
    assert "NOT_SET" not in caught.value.message


def test_no_secret_reaches_logs_or_errors(
    vault: FakeVault, keyvault_signing_request: SigningRequest, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Tokens, secret ids and the managed identity token appear in no log record and no exception message."""
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    _vault_adapter(vault.url, role_id="role-1234", secret_id_setting="VAULT_SECRET_ID").submit(keyvault_signing_request)
    for adapter in (
        _vault_adapter(vault.url, role_id="role-1234", secret_id_setting="WRONG_SECRET_ID"),
        adapter_for(CAProfile("v", "vault", {"url": vault.url, "role": "x", "token_setting": "T"}), {"T": TOKEN}),
        VaultPKI.from_profile(
            CAProfile("v", "vault", {"url": vault.url, "role": "web", "azure_role": "other"}),
            ENVIRON,
            credential=FakeAzureCredential(JWT),
        ),
    ):
        with pytest.raises(PermanentError) as caught:
            adapter.submit(keyvault_signing_request)
        messages.append(str(caught.value))
    for secret in (TOKEN, SECRET_ID, "not-the-secret-id-0815", JWT, "BEGIN"):
        assert secret not in caplog.text
        assert not any(secret in message for message in messages)
