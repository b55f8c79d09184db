"""Scripted faults and Key Vault-style throttling in front of the vault."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import CertificatePolicy

from devstack.keyvault import THROTTLED_MESSAGE, KeyVaultEmulator, Throttle, ThrottleLimits

from .conftest import RawCall, raw_call

THROTTLED_BODY = {"error": {"code": "Throttled", "message": THROTTLED_MESSAGE}}
EC_CREATE = json.dumps(
    {
        "policy": {
            "key_props": {"kty": "EC", "crv": "P-256"},
            "issuer": {"name": "Unknown"},
            "x509_props": {"subject": "CN=storm"},
        }
    }
).encode()


class FakeMonotonic:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_scripted_faults_are_consumed_in_order_for_one_operation_only(
    keyvault_emulator: KeyVaultEmulator, kv_call: RawCall
) -> None:
    """Two scripted `get` faults answer the next two gets in order; a list in between and later gets are real."""
    keyvault_emulator.faults.script("get", 503)
    keyvault_emulator.faults.script("get", 500, code="Boom", message="scripted")
    first = kv_call("GET", "/certificates/x/?api-version=7.6")
    listed = kv_call("GET", "/certificates?api-version=7.6")
    second = kv_call("GET", "/certificates/x/?api-version=7.6")
    third = kv_call("GET", "/certificates/x/?api-version=7.6")
    assert first.status == 503
    assert first.json() == {"error": {"code": "ServiceUnavailable", "message": "Fault injected by the emulator (503)."}}
    assert listed.status == 200
    assert (second.status, second.json()) == (500, {"error": {"code": "Boom", "message": "scripted"}})
    assert third.status == 404
    log = keyvault_emulator.request_log.entries(authenticated=True)
    assert [(e.operation, e.status, e.answered_by, e.injected) for e in log] == [
        ("get", 503, "fault", True),
        ("list", 200, "vault", False),
        ("get", 500, "fault", True),
        ("get", 404, "vault", False),
    ]
    assert keyvault_emulator.faults.pending() == 0


def test_fault_count_body_retry_after_and_delay(keyvault_emulator: KeyVaultEmulator, kv_call: RawCall) -> None:
    """A fault with count, a custom body, Retry-After and a delay answers exactly that, count times."""
    keyvault_emulator.faults.script("list", 409, count=2, body={"custom": True}, retry_after=7, delay=0.2)
    started = time.monotonic()
    answers = [kv_call("GET", "/certificates?api-version=7.6") for _ in range(3)]
    assert time.monotonic() - started >= 0.4
    assert [a.status for a in answers] == [409, 409, 200]
    assert answers[0].json() == {"custom": True}
    assert answers[0].headers["retry-after"] == "7"
    assert "retry-after" not in answers[2].headers


def test_faults_for_one_vault_leave_the_other_alone(tmp_path: Path) -> None:
    """A fault scripted for kv2 does not answer kv1's requests."""
    with KeyVaultEmulator(state_dir=tmp_path, vaults=["kv1", "kv2"]) as emu:
        emu.faults.script("list", 503, vault="kv2")
        assert raw_call(emu.url("kv1"), emu.ca_pem_path, "GET", "/certificates").status == 200
        assert raw_call(emu.url("kv2"), emu.ca_pem_path, "GET", "/certificates").status == 503


def test_fault_validation() -> None:
    """Scripting a nonsensical fault raises ValueError."""
    from devstack.keyvault import Faults

    with pytest.raises(ValueError, match="count"):
        Faults().script("get", 503, count=0)
    with pytest.raises(ValueError, match="status"):
        Faults().script("get", 42)


def test_throttling_answers_429_past_the_create_limit_and_not_before(
    keyvault_emulator: KeyVaultEmulator, kv_call: RawCall
) -> None:
    """With Key Vault's default limits the 21st create within 10 s gets the real 429 body; gets still pass."""
    keyvault_emulator.throttle.enable()
    statuses = [kv_call("POST", f"/certificates/storm{i}/create", body=EC_CREATE).status for i in range(21)]
    assert statuses == [202] * 20 + [429]
    throttled = keyvault_emulator.request_log.entries()[-1]
    assert (throttled.operation, throttled.answered_by) == ("create", "throttle")
    again = kv_call("POST", "/certificates/storm99/create", body=EC_CREATE)
    assert again.json() == THROTTLED_BODY
    assert "retry-after" not in again.headers
    assert kv_call("GET", "/certificates/storm0/pending").status == 200


def test_retry_after_header_can_be_switched_on(keyvault_emulator: KeyVaultEmulator, kv_call: RawCall) -> None:
    """With retry_after set, the 429 carries Retry-After; 0 means the seconds until the window frees a slot."""
    keyvault_emulator.throttle.enable(ThrottleLimits(other=1, retry_after=3))
    assert kv_call("GET", "/certificates").status == 200
    assert kv_call("GET", "/certificates").headers["retry-after"] == "3"
    keyvault_emulator.throttle.enable(ThrottleLimits(other=1, window_seconds=5, retry_after=0))
    assert kv_call("GET", "/certificates").status == 200
    assert kv_call("GET", "/certificates").headers["retry-after"] == "5"


def test_throttled_requests_do_not_count_towards_the_limit() -> None:
    """ "Failed requests that return a 429 do not count towards the throttle limits": the window frees on time."""
    now = FakeMonotonic()
    throttle = Throttle(monotonic=now)
    throttle.enable(ThrottleLimits(other=2, window_seconds=10))
    assert throttle.admit("kv1", "get") is None
    assert throttle.admit("kv1", "get") is None
    now.now += 6
    rejected = [throttle.admit("kv1", "get") for _ in range(5)]
    assert all(r is not None and r.status == 429 for r in rejected)
    now.now += 4.01
    assert throttle.admit("kv1", "get") is None
    assert throttle.admit("kv1", "get") is None
    assert throttle.admit("kv1", "get") is not None


def test_throttle_windows_are_per_vault_and_per_class() -> None:
    """Creates, imports and other requests have separate windows, per vault."""
    throttle = Throttle(monotonic=FakeMonotonic())
    throttle.enable(ThrottleLimits(create=1, import_=1, other=1))
    assert throttle.admit("kv1", "create") is None
    assert throttle.admit("kv1", "create") is not None
    assert throttle.admit("kv1", "import") is None
    assert throttle.admit("kv1", "merge") is None
    assert throttle.admit("kv1", "get") is not None
    assert throttle.admit("kv2", "create") is None


def test_throttling_ignores_the_emulator_clock(keyvault_emulator: KeyVaultEmulator, kv_call: RawCall) -> None:
    """Moving the emulator clock a day ahead does not empty the throttle's window."""
    keyvault_emulator.throttle.enable(ThrottleLimits(other=1))
    assert kv_call("GET", "/certificates").status == 200
    keyvault_emulator.clock.advance(86400)
    assert kv_call("GET", "/certificates").status == 429
    keyvault_emulator.throttle.disable()
    assert kv_call("GET", "/certificates").status == 200


def test_sdk_survives_a_429_with_retry_after(keyvault_emulator: KeyVaultEmulator) -> None:
    """The SDK honours Retry-After on a scripted 429 and its retry succeeds."""
    client = keyvault_emulator.certificate_client()
    client.begin_create_certificate("patient", policy=CertificatePolicy.get_default()).result()
    keyvault_emulator.request_log.clear()
    keyvault_emulator.faults.script("get", 429, retry_after=1)
    started = time.monotonic()
    assert client.get_certificate("patient").name == "patient"
    assert time.monotonic() - started >= 0.9
    assert keyvault_emulator.request_log.statuses(operation="get") == [429, 200]


def test_sdk_survives_a_503(keyvault_emulator: KeyVaultEmulator) -> None:
    """A 503 without Retry-After is retried with backoff and the retry's 404 reaches the caller."""
    client = keyvault_emulator.certificate_client(retry_backoff_factor=0.01)
    keyvault_emulator.faults.script("get", 503)
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate("absent")
    assert keyvault_emulator.request_log.statuses(operation="get") == [503, 404]


def test_sdk_gives_up_when_faults_outlast_its_retries(keyvault_emulator: KeyVaultEmulator) -> None:
    """With more 503s than retry_total allows, the SDK raises HttpResponseError with the fault's code."""
    client = keyvault_emulator.certificate_client(retry_total=1, retry_backoff_factor=0.01)
    keyvault_emulator.faults.script("get", 503, count=5)
    with pytest.raises(HttpResponseError) as raised:
        client.get_certificate("absent")
    assert raised.value.status_code == 503
    assert keyvault_emulator.faults.pending(operation="get") == 3


def test_control_api_scripts_faults_and_throttling(keyvault_emulator: KeyVaultEmulator, kv_call: RawCall) -> None:
    """POST /_emulator/faults and /_emulator/throttle configure the same machinery over HTTP."""
    fault = {"operation": "list", "status": 429, "retryAfter": 2}
    assert kv_call("POST", "/_emulator/faults", body=json.dumps(fault).encode(), token=None).status == 201
    answer = kv_call("GET", "/certificates")
    assert (answer.status, answer.headers["retry-after"], answer.json()) == (429, "2", THROTTLED_BODY)
    throttle = {"enabled": True, "other": 1, "retryAfter": 4}
    configured = kv_call("POST", "/_emulator/throttle", body=json.dumps(throttle).encode(), token=None)
    assert configured.json()["limits"]["other"] == 1  # type: ignore[index]
    assert kv_call("GET", "/certificates").status == 200
    assert kv_call("GET", "/certificates").headers["retry-after"] == "4"
    assert kv_call("POST", "/_emulator/throttle", body=b'{"enabled": false}', token=None).status == 200
    assert kv_call("GET", "/certificates").status == 200
    assert kv_call("POST", "/_emulator/faults", body=b'{"status": 503}', token=None).status == 400
