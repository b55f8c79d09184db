"""The ARM client against the loopback ARM fake: tokens, long-running operations, throttling and ARM's errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from renewal.errors import PermanentError, RetryableError, ThrottledError
from renewal.shells.arm import ArmClient
from tests.fakes.arm_targets import ArmTargetsFake, arm_error
from tests.fakes.loopback import LoopbackServer, Response
from tests.fakes.redirecting import tls_files
from tests.targets.conftest import TOKEN, RecordedSleep, StaticCredential, resource_id

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = resource_id("Microsoft.Network/applicationGateways/edge")
VERSION = "2024-05-01"
ROLE = "Network Contributor on the gateway"


@pytest.fixture
def gateway(arm_fake: ArmTargetsFake) -> dict[str, object]:
    return arm_fake.seed(
        {
            "id": GATEWAY,
            "name": "edge",
            "type": "Microsoft.Network/applicationGateways",
            "location": "westeurope",
            "tags": {"team": "edge"},
            "properties": {"provisioningState": "Succeeded", "sslCertificates": []},
        }
    )


def _patch(arm: ArmClient) -> None:
    arm.send("PATCH", GATEWAY, api_version=VERSION, role=ROLE, body={"tags": {"a": "b"}})


def test_requests_carry_the_token_for_the_endpoints_scope_and_are_counted(
    arm: ArmClient, arm_fake: ArmTargetsFake, credential: StaticCredential, gateway: object
) -> None:
    """Each request sends the identity's bearer token for ``{endpoint}/.default`` and the api-version, and counts."""
    body = arm.get(GATEWAY, api_version=VERSION, role=ROLE)

    assert body["name"] == "edge"
    assert arm.requests_sent == 1
    assert credential.scopes[0] == (f"{arm_fake.url}/.default",)
    [request] = arm_fake.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.query["api-version"] == VERSION


def test_an_azure_asyncoperation_is_polled_until_it_succeeds_waiting_what_retry_after_says(
    arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep, gateway: object
) -> None:
    """201 + Azure-AsyncOperation: poll its status (InProgress, then Succeeded) after Retry-After, then GET."""
    arm_fake.write_mode, arm_fake.poll_rounds, arm_fake.retry_after = "async_operation", 2, 7

    answer = arm.send("PATCH", GATEWAY, api_version=VERSION, role=ROLE, body={"tags": {"a": "b"}})

    assert answer.body["tags"] == {"a": "b"}
    assert [r.path.split("/")[1] for r in arm_fake.requests] == [
        "subscriptions",
        "operations",
        "operations",
        "operations",
        "subscriptions",
    ]
    assert sleep.waits == [7, 7, 7]
    assert arm.requests_sent == 5


def test_a_location_is_polled_until_it_stops_answering_202(
    arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep, gateway: object
) -> None:
    """202 + Location: GET the Location until it answers something other than 202 (here 204)."""
    arm_fake.write_mode, arm_fake.poll_rounds = "location", 1

    answer = arm.send("PATCH", GATEWAY, api_version=VERSION, role=ROLE, body={"tags": {"a": "b"}})

    assert answer.status == 204
    assert [r.path.split("/")[1] for r in arm_fake.requests] == ["subscriptions", "locations", "locations"]
    assert sleep.waits == [3, 3]


def test_an_operation_that_fails_is_permanent_and_names_arms_error(
    arm: ArmClient, arm_fake: ArmTargetsFake, gateway: object
) -> None:
    """An operation whose status ends Failed raises arm_operation_failed with ARM's code and message."""
    arm_fake.write_mode, arm_fake.operation_fails = "async_operation", ("InvalidResourceReference", "bad listener")

    with pytest.raises(PermanentError) as caught:
        _patch(arm)

    assert caught.value.reason == "arm_operation_failed"
    assert "InvalidResourceReference" in caught.value.message
    assert "bad listener" in caught.value.message


def test_an_operation_that_fails_because_another_runs_is_retryable(
    arm: ArmClient, arm_fake: ArmTargetsFake, gateway: object
) -> None:
    """A Failed operation with code AnotherOperationInProgress is worth another attempt."""
    arm_fake.write_mode, arm_fake.operation_fails = "async_operation", ("AnotherOperationInProgress", "busy")

    with pytest.raises(RetryableError) as caught:
        _patch(arm)

    assert caught.value.reason == "arm_operation_failed"


def test_an_operation_still_running_when_the_budget_is_spent_is_retryable(
    arm_fake: ArmTargetsFake, credential: StaticCredential, sleep: RecordedSleep, gateway: object
) -> None:
    """Polls wait at most the budget in total; past it the push ends retryable (arm_operation_timeout)."""
    arm_fake.write_mode, arm_fake.poll_rounds, arm_fake.retry_after = "async_operation", 1000, 10
    arm = ArmClient(
        credential=credential,
        endpoint=arm_fake.url,
        ca_bundle=str(arm_fake.tls.ca_path),
        sleep=sleep,
        wait_budget_seconds=60,
    )

    with pytest.raises(RetryableError) as caught:
        _patch(arm)

    assert caught.value.reason == "arm_operation_timeout"
    assert sum(sleep.waits) <= 60
    assert len(sleep.waits) == 6


def test_429_is_retried_in_place_after_retry_after(
    arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep, gateway: object
) -> None:
    """A throttled request is sent again after the Retry-After ARM gave, and the call succeeds."""
    arm_fake.throttle_next(4, times=2)

    body = arm.get(GATEWAY, api_version=VERSION, role=ROLE)

    assert body["name"] == "edge"
    assert sleep.waits == [4, 4]
    assert arm.requests_sent == 3


def test_429_past_the_budget_is_a_throttled_error_carrying_retry_after(
    arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep, gateway: object
) -> None:
    """When Retry-After exceeds what is left of the budget, nothing waits and ThrottledError carries the delay."""
    arm_fake.throttle_next(500)

    with pytest.raises(ThrottledError) as caught:
        arm.get(GATEWAY, api_version=VERSION, role=ROLE)

    assert caught.value.retry_after == 500
    assert sleep.waits == []


def test_409_another_operation_in_progress_is_retryable_with_its_retry_after(
    arm: ArmClient, arm_fake: ArmTargetsFake, gateway: object
) -> None:
    """409 AnotherOperationInProgress: retryable (arm_conflict), with ARM's Retry-After and code in the message."""
    arm_fake.conflict_once()

    with pytest.raises(RetryableError) as caught:
        _patch(arm)

    assert caught.value.reason == "arm_conflict"
    assert caught.value.retry_after == 10
    assert "AnotherOperationInProgress" in caught.value.message


def test_404_is_permanent(arm: ArmClient) -> None:
    """A resource that does not exist is arm_not_found, naming the path ARM answered for."""
    with pytest.raises(PermanentError) as caught:
        arm.get(GATEWAY, api_version=VERSION, role=ROLE)

    assert caught.value.reason == "arm_not_found"
    assert "ResourceNotFound" in caught.value.message


def test_403_authorization_failed_names_the_role_the_identity_needs(
    arm: ArmClient, arm_fake: ArmTargetsFake, gateway: object
) -> None:
    """403 AuthorizationFailed is permanent and says which role on what is missing."""
    arm_fake.forbid(GATEWAY)

    with pytest.raises(PermanentError) as caught:
        _patch(arm)

    assert caught.value.reason == "arm_authorization_failed"
    assert "AuthorizationFailed" in caught.value.message
    assert ROLE in caught.value.message


def test_a_token_arm_refuses_is_permanent(arm_fake: ArmTargetsFake, sleep: RecordedSleep, gateway: object) -> None:
    """401 InvalidAuthenticationToken is arm_unauthenticated, and the token is not in the message."""
    arm = ArmClient(
        credential=StaticCredential("not-the-token"),
        endpoint=arm_fake.url,
        ca_bundle=str(arm_fake.tls.ca_path),
        sleep=sleep,
    )

    with pytest.raises(PermanentError) as caught:
        arm.get(GATEWAY, api_version=VERSION, role=ROLE)

    assert caught.value.reason == "arm_unauthenticated"
    assert "not-the-token" not in caught.value.message


def test_a_redirect_is_never_followed(arm: ArmClient, arm_fake: ArmTargetsFake, tmp_path: Path) -> None:
    """A 3xx answer is refused (arm_redirect_refused): its Location never receives the token."""
    with LoopbackServer() as elsewhere:
        arm_fake.fail_next(Response(307, b"", {"Location": f"{elsewhere.url}/steal"}))

        with pytest.raises(PermanentError) as caught:
            arm.get(GATEWAY, api_version=VERSION, role=ROLE)

        assert caught.value.reason == "arm_redirect_refused"
        assert elsewhere.connections == 0


def test_a_poll_url_on_another_host_is_refused_before_any_token_goes_there(
    arm: ArmClient, arm_fake: ArmTargetsFake, tmp_path: Path
) -> None:
    """An Azure-AsyncOperation URL off the ARM endpoint's host is refused; it never gets a request."""
    with LoopbackServer(tls=tls_files(tmp_path / "other").server_context()) as elsewhere:
        arm_fake.fail_next(Response(201, b"{}", {"Azure-AsyncOperation": f"https://localhost:{elsewhere.port}/op"}))

        with pytest.raises(PermanentError) as caught:
            _patch(arm)

        assert caught.value.reason == "arm_redirect_refused"
        assert elsewhere.connections == 0


def test_an_untrusted_arm_certificate_is_permanent(
    arm_fake: ArmTargetsFake, credential: StaticCredential, sleep: RecordedSleep
) -> None:
    """Without the fake's CA in the trust, the TLS handshake fails: arm_tls_untrusted, nothing retried."""
    arm = ArmClient(credential=credential, endpoint=arm_fake.url, sleep=sleep)

    with pytest.raises(PermanentError) as caught:
        arm.get(GATEWAY, api_version=VERSION, role=ROLE)

    assert caught.value.reason == "arm_tls_untrusted"
    assert sleep.waits == []


def test_5xx_is_retried_then_retryable(arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep) -> None:
    """A server error is retried in place with backoff, then raised as arm_unavailable with ARM's code."""
    for _ in range(4):
        arm_fake.fail_next(arm_error(503, "ServiceUnavailable", "try later"))

    with pytest.raises(RetryableError) as caught:
        arm.get(GATEWAY, api_version=VERSION, role=ROLE)

    assert caught.value.reason == "arm_unavailable"
    assert "ServiceUnavailable" in caught.value.message
    assert sleep.waits == [2.0, 4.0, 8.0]


def test_importing_the_app_and_the_targets_loads_no_azure_sdk_until_a_request() -> None:
    """Cold start: ``import function_app`` loads no azure.mgmt, and the targets and ARM shells load no azure.core."""
    code = (
        "import sys, function_app, renewal.targets, renewal.shells.arm, renewal.shells.resource_graph\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('azure.mgmt', 'azure.core')))\n"
        "mgmt = [m for m in loaded if m.startswith('azure.mgmt')]\n"
        "print('mgmt', mgmt)\n"
        "assert not mgmt, mgmt\n"
    )
    run = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    code = (
        "import sys, renewal.targets, renewal.shells.arm, renewal.shells.resource_graph\n"
        "assert not [m for m in sys.modules if m.startswith(('azure.mgmt', 'azure.core'))]\n"
    )
    run = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
