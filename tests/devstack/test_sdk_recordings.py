"""Recorded Key Vault sessions replayed through the real SDK against the emulator: same statuses, same errors."""

from __future__ import annotations

import re

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, WellKnownIssuerNames
from azure.keyvault.certificates._shared import http_challenge_cache

from devstack.keyvault import KeyVaultEmulator, LoggedRequest

from .recordings import RecordedCall, load_recording
from .test_sdk_flows import ThrowAwayCa

_VERSION = re.compile(r"/[0-9a-f]{32}$")
Step = tuple[str, str, int]


def _step(method: str, path: str, status: int) -> Step:
    return method, _VERSION.sub("/{version}", path.rstrip("/")), status


def _is_poll(step: Step) -> bool:
    # How often a client polls a pending operation is timing, not protocol.
    return step[0] == "GET" and step[1].endswith("/pending") and step[2] == 200


def recorded_steps(calls: list[RecordedCall], *, skip_polls: bool = True) -> list[Step]:
    """The recorded (method, path, status) steps after the challenge, polls of a pending operation dropped."""
    steps = [_step(c.method, c.path, c.status) for c in calls if not c.challenge]
    return [s for s in steps if not (skip_polls and _is_poll(s))]


def emulated_steps(entries: list[LoggedRequest], *, skip_polls: bool = True) -> list[Step]:
    """The same steps from the emulator's request log (authenticated requests only)."""
    steps = [_step(e.method, e.path, e.status) for e in entries if e.authenticated]
    return [s for s in steps if not (skip_polls and _is_poll(s))]


def recorded_error(calls: list[RecordedCall], index: int) -> tuple[str, str]:
    """The (code, message) of the recorded error answer at ``index`` among non-challenge calls."""
    error = [c for c in calls if not c.challenge][index].body["error"]
    return error["code"], error["message"]


@pytest.fixture
def client(keyvault_emulator: KeyVaultEmulator) -> CertificateClient:
    """An SDK client with the process-wide challenge cache emptied, so every session starts with the probe."""
    http_challenge_cache.clear()
    return keyvault_emulator.certificate_client(retry_total=0)


def self_policy() -> CertificatePolicy:
    """The Self-issued default policy with an EC key, as the recorded tests create it (key type aside)."""
    return CertificatePolicy(issuer_name="Self", subject="CN=DefaultPolicy", key_type="EC", key_curve_name="P-256")


def test_python_40x_handling(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """python-assets test_40x_handling: the probe gets 401, then 404 CertificateNotFound with the recorded message."""
    calls = load_recording(
        "python-assets/test_certificates_client.pyTestCertificateClienttest_40x_handling[2025-07-01].json"
    )
    with pytest.raises(ResourceNotFoundError) as raised:
        client.get_certificate("cert-that-does-not-exist")
    assert [e.status for e in keyvault_emulator.request_log] == [c.status for c in calls]
    assert raised.value.error is not None
    assert (raised.value.error.code, raised.value.error.message) == recorded_error(calls, 0)


def test_python_merge_certificate(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """python-assets test_merge_certificate: probe 401, create 202, get pending 200, merge 201."""
    calls = load_recording(
        "python-assets/test_merge_certificate.pyTestMergeCertificatetest_merge_certificate[2025-07-01].json"
    )
    name = "livekvtestmergeCertificate7c443357"
    policy = CertificatePolicy(issuer_name=WellKnownIssuerNames.unknown, subject="CN=MyCert", key_type="EC")
    client.begin_create_certificate(name, policy=policy).result()
    csr = client.get_certificate_operation(name).csr
    assert csr is not None
    ca = ThrowAwayCa()
    client.merge_certificate(name, [ca.sign(csr), ca.der])
    log = keyvault_emulator.request_log.entries()
    assert [(e.method, e.path, e.status) for e in log] == [(c.method, c.path, c.status) for c in calls]


def test_python_cancel_and_delete_operation(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """python-assets cancellation: cancel 200, delete op 200, then 404 PendingCertificateNotFound, delete 200.

    The recording creates with issuer Self, which the real service leaves inProgress for seconds; the emulator
    completes Self at once, so the replay uses issuer Unknown to have an operation to cancel.
    """
    calls = load_recording(
        "python-assets/test_certificates_client.pyTestCertificateClienttest_async_request_cancellation_and_deletion"
        "[2025-07-01].json"
    )
    name = "livekvtestasyncCanceledDeletedCert63d23dcd"
    policy = CertificatePolicy(issuer_name=WellKnownIssuerNames.unknown, subject="CN=DefaultPolicy", key_type="EC")
    client.begin_create_certificate(name, policy=policy).result()
    client.cancel_certificate_operation(name)
    assert client.get_certificate_operation(name).status == "cancelled"
    client.delete_certificate_operation(name)
    with pytest.raises(ResourceNotFoundError) as raised:
        client.get_certificate_operation(name)
    client.begin_delete_certificate(name, _polling_interval=0).wait(timeout=5)
    recorded = [s for s in recorded_steps(calls) if s[2] != 404 or not s[1].startswith("/deletedcertificates")]
    assert emulated_steps(keyvault_emulator.request_log.entries()) == recorded
    pending_not_found = next(c for c in calls if c.status == 404 and c.path.endswith("/pending")).body["error"]
    assert raised.value.error is not None
    assert raised.value.error.code == pending_not_found["code"]
    assert raised.value.error.message == pending_not_found["message"]


def test_rust_create_invalid_certificate(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """rust create_invalid_certificate: an underscore in the name gets 400 BadParameter with the recorded message."""
    calls = load_recording("rust/create_invalid_certificate.json")
    with pytest.raises(HttpResponseError) as raised:
        client.begin_create_certificate("create_invalid_certificate", policy=CertificatePolicy.get_default())
    assert emulated_steps(keyvault_emulator.request_log.entries()) == recorded_steps(calls)
    assert raised.value.error is not None
    assert (raised.value.error.code, raised.value.error.message) == recorded_error(calls, 0)


def test_rust_get_certificate_operation(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """rust get_certificate_operation: create 202, get the operation 200, get the certificate 200."""
    calls = load_recording("rust/get_certificate_operation.json")
    client.begin_create_certificate("get-certificate-operation", policy=self_policy()).wait(timeout=5)
    keyvault_emulator.request_log.clear()
    assert client.get_certificate_operation("get-certificate-operation").status == "completed"
    client.get_certificate("get-certificate-operation")
    assert (
        emulated_steps(keyvault_emulator.request_log.entries(), skip_polls=False)
        == recorded_steps(calls, skip_polls=False)[1:]
    )


def test_net_invalid_policy(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """.NET StartCreateCertificateError: a bad subject, key usage and issuer get the recorded 400 and message."""
    calls = load_recording("net/StartCreateCertificateError.json")
    policy = CertificatePolicy(issuer_name="invalid", subject="Self", key_usage=["invalid"])
    with pytest.raises(HttpResponseError) as raised:
        client.begin_create_certificate("1337940484", policy=policy)
    assert [e.status for e in keyvault_emulator.request_log] == [c.status for c in calls]
    assert raised.value.error is not None
    assert (raised.value.error.code, raised.value.error.message) == recorded_error(calls, 0)


def test_cpp_delete_wrong_certificate(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """C++ DeleteWrongCertificate: deleting and recovering an unknown certificate both get the recorded 404."""
    calls = load_recording("cpp/KeyVaultCertificateClientTest.DeleteWrongCertificate.json")
    with pytest.raises(ResourceNotFoundError) as deleting:
        client.begin_delete_certificate("DeleteWrongCertificate")
    with pytest.raises(ResourceNotFoundError) as recovering:
        client.begin_recover_deleted_certificate("DeleteWrongCertificate")
    assert emulated_steps(keyvault_emulator.request_log.entries()) == recorded_steps(calls)
    for index, raised in enumerate((deleting, recovering)):
        assert raised.value.error is not None
        assert (raised.value.error.code, raised.value.error.message) == recorded_error(calls, index)


def test_cpp_issuer_set_get_delete(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """C++ CreateGetIssuer: set, get and delete an issuer each answer 200."""
    calls = load_recording("cpp/KeyVaultCertificateClientTest.CreateGetIssuer.json")
    client.create_issuer("issuer01", provider="Test")
    assert client.get_issuer("issuer01").provider == "Test"
    client.delete_issuer("issuer01")
    assert emulated_steps(keyvault_emulator.request_log.entries()) == recorded_steps(calls)


def test_cpp_versions_and_policy(keyvault_emulator: KeyVaultEmulator, client: CertificateClient) -> None:
    """C++ GetPropertiesOfCertificateVersions and UpdateCertificatePolicy: the same calls answer the same statuses."""
    versions = load_recording("cpp/KeyVaultCertificateClientTest.GetPropertiesOfCertificateVersions.json")
    name = "GetPropertiesOfCertificateVersions"
    for _ in range(2):
        assert client.begin_create_certificate(name, policy=self_policy()).result() is not None
    assert len(list(client.list_properties_of_certificate_versions(name))) == 2
    assert emulated_steps(keyvault_emulator.request_log.entries()) == recorded_steps(versions)

    keyvault_emulator.request_log.clear()
    update = load_recording("cpp/KeyVaultCertificateClientTest.UpdateCertificatePolicy.json")
    name = "UpdateCertificatePolicy"
    assert client.begin_create_certificate(name, policy=self_policy()).result() is not None
    assert client.get_certificate_policy(name).validity_in_months == 12
    policy = CertificatePolicy(issuer_name="Self", subject="CN=DefaultPolicy", validity_in_months=24)
    assert client.update_certificate_policy(name, policy).validity_in_months == 24
    assert emulated_steps(keyvault_emulator.request_log.entries()) == recorded_steps(update)
