"""The API Management target against the ARM fake: refreshHostnames and refreshSecret for what uses the secret."""

from __future__ import annotations

from typing import Any

import pytest

from renewal.errors import PermanentError
from renewal.shells.arm import ArmClient
from renewal.targets import PushResult, TargetConfig, build_target
from renewal.targets.api_management import ApiManagementOptions
from tests.fakes.arm_targets import ArmTargetsFake
from tests.targets.conftest import VAULT_URL, RecordedSleep, new_version, resource_id

SERVICE = resource_id("Microsoft.ApiManagement/service/apim")


def _service(*hostnames: tuple[str, str]) -> dict[str, Any]:
    return {
        "id": SERVICE,
        "name": "apim",
        "type": "Microsoft.ApiManagement/service",
        "location": "westeurope",
        "properties": {
            "hostnameConfigurations": [
                {"type": "Proxy", "hostName": host, "keyVaultId": secret_id} for host, secret_id in hostnames
            ]
        },
    }


def _entity(name: str, secret_id: str) -> dict[str, Any]:
    return {
        "id": f"{SERVICE}/certificates/{name}",
        "name": name,
        "type": "Microsoft.ApiManagement/service/certificates",
        "properties": {"keyVault": {"secretIdentifier": secret_id}, "thumbprint": "00"},
    }


def _target(arm: ArmClient, **options: Any) -> Any:
    config = TargetConfig("apim", "api_management", SERVICE, None, None, ApiManagementOptions(**options))
    return build_target(config, arm)


def test_hostnames_and_certificate_entities_that_use_the_secret_are_refreshed(
    arm: ArmClient, arm_fake: ArmTargetsFake, sleep: RecordedSleep
) -> None:
    """refreshHostnames (202 + Location, polled) once, and refreshSecret for each entity naming the secret."""
    arm_fake.seed(
        _service(("api.corp.example", f"{VAULT_URL}/secrets/www"), ("old.corp.example", f"{VAULT_URL}/secrets/old"))
    )
    arm_fake.seed(_entity("www-cert", f"{VAULT_URL}/secrets/www"))
    arm_fake.seed(_entity("other-cert", f"{VAULT_URL}/secrets/other"))

    assert _target(arm).push(new_version()) is PushResult.PUSHED

    assert arm_fake.pushes == [("refreshHostnames", SERVICE), ("refreshSecret", f"{SERVICE}/certificates/www-cert")]
    refresh = next(r for r in arm_fake.requests if r.path.endswith("/refreshHostnames"))
    assert refresh.query["api-version"] == "2025-09-01-preview"
    # GET service, GET certificates, POST refreshHostnames, 2 polls of its Location, POST refreshSecret.
    assert arm.requests_sent == 6
    assert sleep.waits == [3, 3]


def test_only_certificate_entities_needs_no_hostname_refresh(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """A service whose hostnames use other secrets gets refreshSecret only: 3 requests."""
    arm_fake.seed(_service())
    arm_fake.seed(_entity("www-cert", f"{VAULT_URL}/secrets/www/"))

    assert _target(arm).push(new_version()) is PushResult.PUSHED

    assert arm_fake.pushes == [("refreshSecret", f"{SERVICE}/certificates/www-cert")]
    assert arm.requests_sent == 3


def test_certificate_entities_are_read_page_by_page(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """The certificate list's nextLink is followed (on the ARM host), so an entity on page 3 is refreshed."""
    arm_fake.seed(_service())
    arm_fake.page_size = 2
    for index in range(5):
        arm_fake.seed(_entity(f"c{index}", f"{VAULT_URL}/secrets/{'www' if index == 4 else f'x{index}'}"))

    assert _target(arm).push(new_version()) is PushResult.PUSHED

    assert arm_fake.pushes == [("refreshSecret", f"{SERVICE}/certificates/c4")]


def test_a_hostname_pinned_to_a_version_is_refused(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """A hostname whose keyVaultId names a version never rotates: version_pinned, nothing refreshed."""
    arm_fake.seed(_service(("api.corp.example", f"{VAULT_URL}/secrets/www/abc123")))

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "version_pinned"
    assert "api.corp.example" in caught.value.message
    assert arm_fake.pushes == []


def test_a_pinned_certificate_entity_is_refused(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """A certificate entity whose secretIdentifier names a version is version_pinned too."""
    arm_fake.seed(_service())
    arm_fake.seed(_entity("www-cert", f"{VAULT_URL}/secrets/www/abc123"))

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "version_pinned"


def test_a_service_that_does_not_use_the_certificate_is_a_configuration_mistake(
    arm: ArmClient, arm_fake: ArmTargetsFake
) -> None:
    """Neither a hostname nor an entity names the secret: certificate_not_referenced."""
    arm_fake.seed(_service(("api.corp.example", f"{VAULT_URL}/secrets/www2")))

    with pytest.raises(PermanentError) as caught:
        _target(arm).push(new_version())

    assert caught.value.reason == "certificate_not_referenced"


def test_without_certificate_entities_one_get_is_saved(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """certificate_entities off: GET service, refreshHostnames and its polls only."""
    arm_fake.seed(_service(("api.corp.example", f"{VAULT_URL}/secrets/www")))
    arm_fake.poll_rounds = 0

    assert _target(arm, certificate_entities=False).push(new_version()) is PushResult.PUSHED

    assert arm.requests_sent == 3
