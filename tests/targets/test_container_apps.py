"""The Container Apps target against the ARM fake: re-put the environment certificate that points at Key Vault."""

from __future__ import annotations

from typing import Any

import pytest

from renewal.errors import PermanentError
from renewal.shells.arm import ArmClient
from renewal.targets import PushResult, TargetConfig, build_target
from renewal.targets.container_apps import ContainerAppsOptions
from tests.fakes.arm_targets import ArmTargetsFake
from tests.targets.conftest import VAULT_URL, RecordedSleep, new_version, resource_id

CERTIFICATE = resource_id("Microsoft.App/managedEnvironments/env/certificates/www")
IDENTITY = resource_id("Microsoft.ManagedIdentity/userAssignedIdentities/aca")


def _certificate(key_vault_url: str = f"{VAULT_URL}/secrets/www") -> dict[str, Any]:
    return {
        "id": CERTIFICATE,
        "name": "www",
        "type": "Microsoft.App/managedEnvironments/certificates",
        "location": "westeurope",
        "properties": {
            "provisioningState": "Succeeded",
            "certificateKeyVaultProperties": {"identity": IDENTITY, "keyVaultUrl": key_vault_url},
        },
    }


def _target(arm: ArmClient, **options: Any) -> Any:
    config = TargetConfig("aca", "container_apps", CERTIFICATE, None, None, ContainerAppsOptions(**options))
    return build_target(config, arm)


def test_the_certificate_is_put_back_and_its_provisioning_followed_until_it_succeeds(
    arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep
) -> None:
    """PUT with the same identity and keyVaultUrl answers Pending; the push GETs until Succeeded."""
    arm_fake.seed(_certificate())
    arm_fake.poll_rounds = 2

    assert _target(arm).push(new_version()) is PushResult.PUSHED

    put = next(r for r in arm_fake.requests if r.method == "PUT")
    assert put.json()["properties"] == {
        "certificateKeyVaultProperties": {"identity": IDENTITY, "keyVaultUrl": f"{VAULT_URL}/secrets/www"}
    }
    assert arm_fake.resources[CERTIFICATE.lower()]["properties"]["provisioningState"] == "Succeeded"
    assert arm.requests_sent == 2 + 3
    assert len(sleep.waits) == 3


@pytest.mark.parametrize("curve", ["P-384", "P-521"])
def test_ecdsa_p384_and_p521_are_refused_before_any_request(
    arm: ArmClient, arm_fake: ArmTargetsFake, curve: str
) -> None:
    """Container Apps refuse those curves: key_type_unsupported, and ARM hears nothing."""
    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version(key_curve=curve))

    assert caught.value.reason == "key_type_unsupported"
    assert curve in caught.value.message
    assert arm_fake.requests == []


def test_p256_is_accepted(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """An ECDSA P-256 version is pushed like RSA."""
    arm_fake.seed(_certificate())
    arm_fake.poll_rounds = 0

    assert _target(arm).push(new_version(key_curve="P-256")) is PushResult.PUSHED


def test_a_pinned_key_vault_url_is_refused(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """A keyVaultUrl with a version never rotates: version_pinned, no write."""
    arm_fake.seed(_certificate(f"{VAULT_URL}/secrets/www/v1"))

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "version_pinned"
    assert arm_fake.pushes == []


def test_with_refresh_off_a_push_is_nothing_to_do_and_sends_nothing(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """refresh false: wait-and-verify only, no ARM request."""
    assert _target(arm, refresh=False).push(new_version()) is PushResult.NOTHING_TO_DO
    assert arm_fake.requests == []


def test_a_certificate_uploaded_rather_than_from_key_vault_is_a_configuration_mistake(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """An environment certificate without certificateKeyVaultProperties cannot follow Key Vault."""
    resource = _certificate()
    del resource["properties"]["certificateKeyVaultProperties"]
    arm_fake.seed(resource)

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "certificate_not_referenced"
