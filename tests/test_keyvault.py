"""The Key Vault shell, driven over HTTPS against the emulator with the real SDK."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import stamina
from azure.core.credentials import AccessToken
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyCurveName, KeyType, KeyUsageType
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.keyvault import KeyVaultEmulator
from renewal.errors import PermanentError, RetryableError, ThrottledError
from renewal.shells.keyvault import (
    THROTTLE_DELAYS,
    THROTTLE_TIMEOUT,
    KeyVaultClients,
    StaticTokenCredential,
    ThrottleWaits,
    VaultCertificates,
)
from tests.fakes.redirecting import LEAK_PATH, LEAK_QUERY, LEAK_USERINFO, LoopbackServer, redirect_to, tls_files

TOKEN = "shell-test-token"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[KeyVaultEmulator]:
    """An emulator with two vaults and no background ticker."""
    with KeyVaultEmulator(state_dir=tmp_path, vaults=["kv1", "kv2"], tick_interval=None) as emu:
        yield emu


@pytest.fixture(autouse=True)
def no_waits() -> Iterator[None]:
    """stamina's test mode: no waits between attempts, and (capped at 100) the shell's own attempt counts."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def _clients(emulator: KeyVaultEmulator, *, retry_total: int = 4) -> KeyVaultClients:
    # retry_total=0 keeps azure-core from retrying (and really sleeping on) a 429 that carries Retry-After.
    return KeyVaultClients(
        credential=StaticTokenCredential(TOKEN),
        connection_verify=str(emulator.ca_pem_path),
        retry_total=retry_total,
        retry_backoff_factor=0.01,
    )


def _vault_with_db(emulator: KeyVaultEmulator, *, retry_total: int = 4) -> VaultCertificates:
    """kv1 holding certificate ``db`` with no operation pending, so the next create begins a new version."""
    sdk = emulator.certificate_client("kv1")
    sdk.begin_create_certificate("db", _ec_policy()).result()
    sdk.delete_certificate_operation("db")
    return _clients(emulator, retry_total=retry_total).vault(emulator.url("kv1"))


def _ec_policy() -> CertificatePolicy:
    return CertificatePolicy(
        issuer_name="Unknown",
        subject="CN=db.corp.internal",
        san_dns_names=["db.corp.internal"],
        san_ip_addresses=["10.1.2.3"],
        key_type=KeyType.ec,
        key_curve_name=KeyCurveName.p_384,
        key_usage=[KeyUsageType.digital_signature],
        enhanced_key_usage=["1.3.6.1.5.5.7.3.2"],
        validity_in_months=6,
        exportable=False,
    )


def test_one_client_per_vault_is_created_and_reused(emulator: KeyVaultEmulator) -> None:
    """Each vault gets one SDK client, reused for every later call; vaults do not share one."""
    clients = _clients(emulator)
    first = clients.client_for(emulator.url("kv1"))
    assert clients.client_for(emulator.url("kv1") + "/") is first
    assert clients.client_for(emulator.url("kv2")) is not first


def test_static_token_is_refused_for_a_vault_off_loopback(emulator: KeyVaultEmulator) -> None:
    """A development token can never be sent to a real vault: building that client fails first."""
    with pytest.raises(PermanentError, match="loopback"):
        _clients(emulator).client_for("https://contoso.vault.azure.net")


def test_new_version_carries_the_policy_over_with_issuer_unknown(emulator: KeyVaultEmulator) -> None:
    """Begin a version: Key Vault makes a CSR with the same key type, curve and SANs, and the policy is unchanged."""
    sdk = emulator.certificate_client("kv1")
    sdk.begin_create_certificate("db", _ec_policy()).result()
    sdk.delete_certificate_operation("db")
    vault = _clients(emulator).vault(emulator.url("kv1"))

    snapshot = vault.read("db")
    pending = vault.create_version(snapshot, tags={"renewal-ca": "corp"})

    csr = x509.load_der_x509_csr(pending.csr_der)
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp384r1"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["db.corp.internal"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    policy = sdk.get_certificate_policy("db")
    assert (policy.issuer_name, policy.key_curve_name, policy.validity_in_months, policy.exportable) == (
        "Unknown",
        KeyCurveName.p_384,
        6,
        False,
    )
    assert policy.enhanced_key_usage == ["1.3.6.1.5.5.7.3.2"]
    assert not pending.resumed


def test_create_while_pending_resumes_the_operation(emulator: KeyVaultEmulator) -> None:
    """Key Vault's 409 while an operation is pending becomes a resume with the operation's own CSR."""
    sdk = emulator.certificate_client("kv1")
    operation = sdk.begin_create_certificate("db", _ec_policy()).result()
    vault = _clients(emulator).vault(emulator.url("kv1"))
    snapshot = vault.read("db")

    pending = vault.create_version(snapshot, tags={})

    assert pending.resumed
    assert pending.csr_der == bytes(operation.csr)
    assert emulator.request_log.statuses(vault="kv1", operation="create") == [202, 409]


def test_throttle_waits_are_short_and_steady() -> None:
    """Throttled calls wait 1, 1, 1, then 2 s, 15 s over nine retries: Key Vault counts 10-second windows and not
    the 429s, so steady waits take a slot soon after one frees (exponential ones sleep through whole windows)."""
    waits = ThrottleWaits()
    assert [waits(ThrottledError("429")) for _ in THROTTLE_DELAYS] == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert sum(THROTTLE_DELAYS) == 15.0
    assert THROTTLE_TIMEOUT < 300, "well under host.json's functionTimeout (5 minutes)"


def test_a_longer_retry_after_wins_over_the_steady_wait() -> None:
    """Key Vault's Retry-After is the wait when it is longer than the schedule's, and changes nothing when shorter."""
    waits = ThrottleWaits((1.0, 2.0))
    assert waits(ThrottledError("429", retry_after=5.0)) == 5.0
    assert waits(ThrottledError("429", retry_after=0.5)) == 2.0
    assert waits(ThrottledError("429", retry_after=0.0)) == 2.0, "the last wait repeats"


def test_only_throttling_is_retried_by_the_shell() -> None:
    """Outages, permanent errors and a Retry-After beyond the budget are not retried here; the journal takes them."""
    waits = ThrottleWaits()
    assert waits(RetryableError("503", reason="keyvault_unavailable", retry_after=1.0)) is False
    assert waits(PermanentError("403", reason="keyvault_access_denied")) is False
    assert waits(ValueError("garbled")) is False
    assert waits(ThrottledError("429", retry_after=THROTTLE_TIMEOUT + 1)) is False
    assert waits(ThrottledError("429")) == 1.0, "declined errors do not use up the schedule"


def test_throttled_create_is_retried_on_key_vaults_schedule(emulator: KeyVaultEmulator) -> None:
    """A POST 429 without Retry-After, which the SDK does not retry, is retried by the shell until admitted."""
    vault = _vault_with_db(emulator)
    snapshot = vault.read("db")
    emulator.faults.script("create", 429, vault="kv1", count=2)

    pending = vault.create_version(snapshot, tags={})

    assert not pending.resumed
    assert emulator.request_log.statuses(vault="kv1", operation="create")[-3:] == [429, 429, 202]


def test_throttling_gives_up_after_ten_attempts(emulator: KeyVaultEmulator) -> None:
    """A create throttled on every attempt is tried ten times (nine retries), then raised as a ThrottledError."""
    vault = _vault_with_db(emulator)
    snapshot = vault.read("db")
    emulator.request_log.clear()
    emulator.faults.script("create", 429, vault="kv1", count=13)

    with pytest.raises(ThrottledError) as caught:
        vault.create_version(snapshot, tags={})

    assert caught.value.reason == "keyvault_throttled"
    assert emulator.request_log.statuses(vault="kv1", operation="create") == [429] * 10
    assert emulator.faults.pending(operation="create") == 3


def test_throttling_that_outlasts_the_budget_is_a_retryable_error(emulator: KeyVaultEmulator) -> None:
    """When every attempt is throttled the shell gives up with a RetryableError, after a bounded number of tries."""
    _vault_with_db(emulator)
    vault = VaultCertificates(_clients(emulator).client_for(emulator.url("kv1")), throttle_delays=(1.0, 2.0))
    snapshot = vault.read("db")
    emulator.faults.script("create", 429, vault="kv1", count=10)

    with pytest.raises(RetryableError) as caught:
        vault.create_version(snapshot, tags={})

    assert caught.value.reason == "keyvault_throttled"
    assert emulator.request_log.statuses(vault="kv1", operation="create")[-3:] == [429, 429, 429]
    assert emulator.faults.pending(operation="create") == 7


def test_retry_after_seconds_reach_the_error(emulator: KeyVaultEmulator) -> None:
    """Key Vault's Retry-After in seconds is retried within the budget and carried by the last ThrottledError."""
    vault = _vault_with_db(emulator, retry_total=0)
    snapshot = vault.read("db")
    emulator.request_log.clear()
    emulator.faults.script("create", 429, vault="kv1", count=12, retry_after=7)

    with pytest.raises(ThrottledError) as caught:
        vault.create_version(snapshot, tags={})

    assert caught.value.retry_after == 7.0
    assert emulator.request_log.statuses(vault="kv1", operation="create") == [429] * 10


def test_a_retry_after_date_beyond_the_budget_is_left_to_the_journal(emulator: KeyVaultEmulator) -> None:
    """A Retry-After HTTP-date ten minutes ahead is not slept through: one attempt, and the error carries the wait."""
    vault = _vault_with_db(emulator, retry_total=0)
    snapshot = vault.read("db")
    emulator.request_log.clear()
    later = format_datetime(datetime.now(UTC) + timedelta(minutes=10), usegmt=True)
    emulator.faults.script("create", 429, vault="kv1", count=3, retry_after=later)

    with pytest.raises(ThrottledError) as caught:
        vault.create_version(snapshot, tags={})

    assert caught.value.retry_after is not None
    assert 570 <= caught.value.retry_after <= 600
    assert emulator.request_log.statuses(vault="kv1", operation="create") == [429]


def test_an_outage_is_not_retried_by_the_throttle_policy(emulator: KeyVaultEmulator) -> None:
    """A 503 past the SDK's own retries is raised at once as keyvault_unavailable, not retried as throttling."""
    vault = _vault_with_db(emulator, retry_total=0)
    snapshot = vault.read("db")
    emulator.request_log.clear()
    emulator.faults.script("create", 503, vault="kv1", count=3)

    with pytest.raises(RetryableError) as caught:
        vault.create_version(snapshot, tags={})

    assert not isinstance(caught.value, ThrottledError)
    assert caught.value.reason == "keyvault_unavailable"
    assert emulator.request_log.statuses(vault="kv1", operation="create") == [503]


def test_missing_certificate_is_a_permanent_error(emulator: KeyVaultEmulator) -> None:
    """Reading a certificate that does not exist says so, and retrying cannot help."""
    vault = _clients(emulator).vault(emulator.url("kv1"))
    with pytest.raises(PermanentError) as caught:
        vault.read("nothing-here")
    assert caught.value.reason == "certificate_not_found"


# Credentials never leave their host (docs/architecture.md §6): the token goes only to the vault's own, verified host.


class RecordingCredential:
    """A TokenCredential standing in for a real identity (the third-party seam); records every token asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("real-identity-token", 2**31)


def test_real_credential_is_refused_for_a_vault_on_loopback(emulator: KeyVaultEmulator) -> None:
    """A loopback vault is the emulator: a real identity's credential is refused there before any token is asked."""
    credential = RecordingCredential()
    with pytest.raises(PermanentError) as caught:
        KeyVaultClients(credential=credential).client_for(emulator.url("kv1"))
    assert caught.value.reason == "bad_configuration"
    assert credential.scopes == []


def test_static_token_reads_from_the_emulator(emulator: KeyVaultEmulator) -> None:
    """The development static token still works against the loopback emulator (challenge check off for it only)."""
    emulator.certificate_client("kv1").begin_create_certificate("web", _ec_policy()).result()
    snapshot = _clients(emulator).vault(emulator.url("kv1")).read("web")
    assert snapshot.state.name == "web"


def test_challenge_for_another_resource_is_permanent(emulator: KeyVaultEmulator) -> None:
    """A 401 challenge naming a resource outside the vault's domain is permanent, and no token is requested."""
    credential = RecordingCredential()
    # The emulator's challenge names resource vault.azure.net, which 127.0.0.1 does not belong to: the SDK's
    # resource check (on for every real credential) refuses it.
    client = CertificateClient(
        emulator.url("kv1"), credential, connection_verify=str(emulator.ca_pem_path), retry_total=0
    )
    with pytest.raises(PermanentError) as caught:
        VaultCertificates(client).read("web")
    assert caught.value.reason == "keyvault_challenge_refused"
    assert credential.scopes == []


@pytest.mark.parametrize("status", [302, 307])
def test_redirect_from_the_vault_is_refused(status: int, tmp_path: Path) -> None:
    """A vault URL answering 302/307 is permanent (keyvault_redirect_refused); nothing reaches the Location."""
    tls = tls_files(tmp_path / "tls")
    with (
        LoopbackServer(tls=tls.server_context()) as elsewhere,
        LoopbackServer(redirect_to(elsewhere, status), tls=tls.server_context()) as vault_server,
    ):
        clients = KeyVaultClients(credential=StaticTokenCredential(TOKEN), connection_verify=str(tls.ca_path))
        with pytest.raises(PermanentError) as caught:
            clients.vault(vault_server.url).read("web")
        assert vault_server.received
    assert elsewhere.connections == 0
    assert caught.value.reason == "keyvault_redirect_refused"
    assert "redirecting to 127.0.0.1" in caught.value.message
    for leak in (LEAK_PATH, LEAK_QUERY, *LEAK_USERINFO.split(":"), str(elsewhere.port), TOKEN):
        assert leak not in caught.value.message


def test_untrusted_vault_tls_is_permanent(emulator: KeyVaultEmulator, tmp_path: Path) -> None:
    """A vault whose TLS certificate the configured bundle does not trust is permanent keyvault_tls_untrusted."""
    other_ca = tls_files(tmp_path / "other-ca").ca_path
    clients = KeyVaultClients(credential=StaticTokenCredential(TOKEN), connection_verify=str(other_ca), retry_total=0)
    with pytest.raises(PermanentError) as caught:
        clients.vault(emulator.url("kv1")).read("web")
    assert caught.value.reason == "keyvault_tls_untrusted"
    assert "127.0.0.1" in caught.value.message
