"""The App Service target against the ARM fake: re-put the Microsoft.Web/certificates resource so it syncs now."""

from __future__ import annotations

import json
from typing import Any

import pytest

from renewal.errors import PermanentError, RetryableError
from renewal.shells.arm import ArmClient
from renewal.targets import PushResult, TargetConfig, build_target
from renewal.targets.app_service import AppServiceOptions
from tests.fakes.arm_targets import ArmTargetsFake
from tests.fakes.loopback import Response
from tests.targets.conftest import OLD_THUMBPRINT, THUMBPRINT, new_version, resource_id

CERTIFICATE = resource_id("Microsoft.Web/certificates/www-cert")
VAULT_ID = resource_id("Microsoft.KeyVault/vaults/kv-corp")
FARM_ID = resource_id("Microsoft.Web/serverfarms/plan")


def _certificate(name_in_vault: str = "www", vault_id: str = VAULT_ID) -> dict[str, Any]:
    return {
        "id": CERTIFICATE,
        "name": "www-cert",
        "type": "Microsoft.Web/certificates",
        "location": "westeurope",
        "tags": {"owner": "web"},
        "properties": {
            "keyVaultId": vault_id,
            "keyVaultSecretName": name_in_vault,
            "serverFarmId": FARM_ID,
            "thumbprint": OLD_THUMBPRINT.upper(),
            "keyVaultSecretStatus": "Succeeded",
        },
    }


def _answer(body: dict[str, Any]) -> Response:
    return Response(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _target(arm: ArmClient, **options: Any) -> Any:
    config = TargetConfig("web", "app_service", CERTIFICATE, None, None, AppServiceOptions(**options))
    return build_target(config, arm)


def test_the_certificate_is_put_back_unchanged_and_syncs_the_new_thumbprint(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """GET then PUT with the same keyVaultId, keyVaultSecretName, serverFarmId, location and tags: 2 requests."""
    arm_fake.seed(_certificate())
    arm_fake.key_vault["www"] = THUMBPRINT

    assert _target(arm).push(new_version()) is PushResult.PUSHED

    put = arm_fake.requests[-1]
    assert put.method == "PUT"
    assert put.json() == {
        "location": "westeurope",
        "tags": {"owner": "web"},
        "properties": {"keyVaultId": VAULT_ID, "keyVaultSecretName": "www", "serverFarmId": FARM_ID},
    }
    assert arm.requests_sent == 2


def test_an_answer_still_carrying_the_old_thumbprint_is_retried_later(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """If App Service answers the re-put with another thumbprint, the push is retryable (target_not_synced)."""
    arm_fake.seed(_certificate())
    arm_fake.key_vault["www"] = OLD_THUMBPRINT

    with pytest.raises(RetryableError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "target_not_synced"
    assert _target(arm, check_thumbprint=False).push(new_version()) is PushResult.PUSHED


def test_a_certificate_of_another_vault_or_name_is_a_configuration_mistake(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """keyVaultSecretName www-old, or the vault kv-corp2, is not the certificate: nothing is written."""
    arm_fake.seed(_certificate(name_in_vault="www-old"))
    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())
    assert caught.value.reason == "certificate_not_referenced"

    arm_fake.seed(_certificate(vault_id=resource_id("Microsoft.KeyVault/vaults/kv-corp2")))
    with pytest.raises(PermanentError):
        _target(arm).push(new_version())
    assert arm_fake.pushes == []


def test_app_service_unable_to_read_the_vault_is_permanent(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """keyVaultSecretStatus AzureServiceUnauthorizedToAccessKeyVault after the put says what to grant."""
    arm_fake.seed(_certificate())
    arm_fake.fail_next(
        _answer({**_certificate(), "properties": {"keyVaultSecretStatus": "AzureServiceUnauthorizedToAccessKeyVault"}}),
        method="PUT",
    )

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "target_cannot_read_key_vault"
    assert "Key Vault Secrets User" in caught.value.message


def test_a_missing_certificate_resource_is_permanent(arm: ArmClient) -> None:
    """A Microsoft.Web/certificates id that does not exist: arm_not_found."""
    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "arm_not_found"
