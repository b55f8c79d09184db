"""The Application Gateway target against the ARM fake: a tag update makes the gateway re-read Key Vault."""

from __future__ import annotations

from typing import Any

import pytest

from renewal.errors import PermanentError, RetryableError
from renewal.shells.arm import ArmClient
from renewal.targets import PICKUP_DEADLINES, PushResult, TargetConfig, build_target
from renewal.targets.app_gateway import PUSHED_TAG, AppGatewayOptions
from tests.fakes.arm_targets import ArmTargetsFake
from tests.targets.conftest import VAULT_URL, RecordedSleep, new_version, resource_id

GATEWAY = resource_id("Microsoft.Network/applicationGateways/edge")


def _gateway(*secret_ids: str, names: tuple[str, ...] = ()) -> dict[str, Any]:
    certificates = [
        {"name": (names[i] if names else f"cert{i}"), "properties": {"keyVaultSecretId": secret_id}}
        for i, secret_id in enumerate(secret_ids)
    ]
    return {
        "id": GATEWAY,
        "name": "edge",
        "type": "Microsoft.Network/applicationGateways",
        "location": "westeurope",
        "tags": {"team": "edge"},
        "properties": {"provisioningState": "Succeeded", "sslCertificates": certificates},
    }


def _target(arm: ArmClient, **options: Any) -> Any:
    config = TargetConfig("edge", "app_gateway", GATEWAY, None, None, AppGatewayOptions(**options))
    return build_target(config, arm)


def test_a_versionless_reference_is_pushed_by_tagging_the_gateway_in_two_requests(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """GET the gateway, PATCH its tags with renewal-pushed=<version> keeping the others: pushed, 2 ARM requests."""
    arm_fake.seed(_gateway(f"{VAULT_URL}/secrets/other", f"{VAULT_URL}/secrets/www/"))
    target = _target(arm)

    assert target.push(new_version()) is PushResult.PUSHED

    assert arm_fake.resources[GATEWAY.lower()]["tags"] == {"team": "edge", PUSHED_TAG: "v2"}
    assert arm_fake.pushes == [("tags", GATEWAY)]
    assert [r.method for r in arm_fake.requests] == ["GET", "PATCH"]
    assert arm.requests_sent == 2
    assert target.pickup_deadline == PICKUP_DEADLINES["app_gateway"]


def test_a_listener_certificate_pinned_to_a_version_is_refused_as_never_rotating(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """A keyVaultSecretId with a version never rotates: version_pinned, saying how to fix it, and no write."""
    arm_fake.seed(_gateway(f"{VAULT_URL}/secrets/www/0123abcd", names=("www-listener",)))

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "version_pinned"
    assert "never rotate" in caught.value.message
    assert "www-listener" in caught.value.message
    assert "versionless" in caught.value.message
    assert arm_fake.pushes == []


def test_a_gateway_that_does_not_reference_the_certificate_is_a_configuration_mistake(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """Names match whole: a gateway serving www-old (or another vault's www) does not reference www."""
    arm_fake.seed(_gateway(f"{VAULT_URL}/secrets/www-old", "https://kv-other.vault.azure.net/secrets/www"))

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "certificate_not_referenced"
    assert arm_fake.pushes == []


def test_certificate_names_limit_which_listener_certificates_count(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """With certificate_names, a pinned entry outside the list is ignored and the listed one is pushed."""
    arm_fake.seed(_gateway(f"{VAULT_URL}/secrets/www/0123", f"{VAULT_URL}/secrets/WWW", names=("legacy", "current")))

    assert _target(arm, certificate_names=("current",)).push(new_version()) is PushResult.PUSHED


def test_a_gateway_busy_with_another_update_is_retried_and_then_pushed(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """409 AnotherOperationInProgress on the PATCH is retryable; the next push goes through."""
    arm_fake.seed(_gateway(f"{VAULT_URL}/secrets/www"))
    arm_fake.conflict_once(method="PATCH")
    target = _target(arm)

    with pytest.raises(RetryableError) as caught:
        target.push(new_version())
    assert caught.value.reason == "arm_conflict"

    assert target.push(new_version()) is PushResult.PUSHED


def test_a_long_running_tag_update_is_waited_for(
    arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep
) -> None:
    """When the gateway answers the update with Azure-AsyncOperation, the push returns only once it Succeeded."""
    arm_fake.seed(_gateway(f"{VAULT_URL}/secrets/www"))
    arm_fake.write_mode, arm_fake.poll_rounds, arm_fake.retry_after = "async_operation", 3, 10

    assert _target(arm).push(new_version()) is PushResult.PUSHED

    assert arm.requests_sent == 2 + 4 + 1
    assert sum(sleep.waits) == 40


def test_an_identity_without_the_role_hears_which_role(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """403 on the gateway names Network Contributor on the application gateway."""
    arm_fake.seed(_gateway(f"{VAULT_URL}/secrets/www"))
    arm_fake.forbid(GATEWAY)

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "arm_authorization_failed"
    assert "Network Contributor" in caught.value.message
