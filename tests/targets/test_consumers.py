"""Finding the consumers of a vault's certificates: the pure reading of ARM properties, and Resource Graph."""

from __future__ import annotations

from typing import Any

import pytest

from renewal.errors import PermanentError
from renewal.pure.consumers import Consumer, classify, parse_secret_reference
from renewal.shells.arm import ArmClient
from renewal.shells.resource_graph import CONSUMERS_QUERY, ResourceGraph, list_consumers
from renewal.targets import TargetConfig
from renewal.targets.app_gateway import AppGatewayOptions
from tests.fakes.arm_targets import ArmTargetsFake
from tests.fakes.resource_graph import ResourceGraphFake
from tests.targets.conftest import SUBSCRIPTION, VAULT_URL, resource_id

OTHER_SUBSCRIPTION = "00000000-0000-0000-0000-0000000000b2"
GATEWAY = resource_id("Microsoft.Network/applicationGateways/edge")
SERVICE = resource_id("Microsoft.ApiManagement/service/apim")
WEB = resource_id("Microsoft.Web/certificates/www-cert")
ACA = resource_id("Microsoft.App/managedEnvironments/env/certificates/www")
VAULT_ID = resource_id("Microsoft.KeyVault/vaults/kv-corp")


def _resources() -> list[dict[str, Any]]:
    return [
        {
            "id": GATEWAY,
            "type": "Microsoft.Network/applicationGateways",
            "name": "edge",
            "properties": {
                "sslCertificates": [
                    {"name": "www", "properties": {"keyVaultSecretId": f"{VAULT_URL}/secrets/www/"}},
                    {"name": "api", "properties": {"keyVaultSecretId": f"{VAULT_URL}/secrets/API/3f2a"}},
                    {"name": "uploaded", "properties": {"publicCertData": "MIIB..."}},
                    {"name": "near", "properties": {"keyVaultSecretId": f"{VAULT_URL}/secrets/www-old"}},
                ]
            },
        },
        {
            "id": SERVICE,
            "type": "Microsoft.ApiManagement/service",
            "name": "apim",
            "properties": {
                "hostnameConfigurations": [
                    {"hostName": "api.corp.example", "keyVaultId": f"{VAULT_URL}/secrets/api"},
                    {"hostName": "other.example", "keyVaultId": "https://kv-corp2.vault.azure.net/secrets/api"},
                ]
            },
        },
        {
            "id": WEB,
            "type": "Microsoft.Web/certificates",
            "name": "www-cert",
            "properties": {"keyVaultId": VAULT_ID, "keyVaultSecretName": "www"},
        },
        {
            "id": ACA,
            "type": "Microsoft.App/managedEnvironments/certificates",
            "name": "www",
            "properties": {
                "certificateKeyVaultProperties": {"identity": "x", "keyVaultUrl": f"{VAULT_URL}/secrets/www"}
            },
        },
        {
            "id": f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/g/providers/Microsoft.Web/certificates/far",
            "type": "Microsoft.Web/certificates",
            "name": "far",
            "properties": {"keyVaultId": VAULT_ID, "keyVaultSecretName": "www"},
        },
        {"id": resource_id("Microsoft.Storage/storageAccounts/s"), "type": "Microsoft.Storage/storageAccounts"},
    ]


def test_secret_references_are_read_whole_with_their_version() -> None:
    """A versionless id (trailing slash or not), a pinned one, and things that are not secret ids."""
    assert parse_secret_reference(f"{VAULT_URL}/secrets/www/").version is None  # type: ignore[union-attr]
    pinned = parse_secret_reference(f"{VAULT_URL}/secrets/www/abc")
    assert pinned is not None
    assert (pinned.vault_name, pinned.name, pinned.version) == ("kv-corp", "www", "abc")
    assert parse_secret_reference(f"{VAULT_URL}/certificates/www") is None
    assert parse_secret_reference("http://kv.vault.azure.net/secrets/www") is None
    assert parse_secret_reference(f"{VAULT_URL}/secrets/www/v/extra") is None
    assert parse_secret_reference(None) is None


def test_every_kind_of_reference_is_found_and_pinned_ones_flagged() -> None:
    """Gateway listeners, APIM hostnames, Web certificates and Container Apps certificates; names match whole."""
    consumers = classify(_resources(), vault_name="KV-CORP")

    assert [(c.kind, c.where, c.certificate_name, c.pinned_version) for c in consumers] == [
        ("api_management", "api.corp.example", "api", None),
        ("container_apps", "www", "www", None),
        ("app_gateway", "api", "API", "3f2a"),
        ("app_gateway", "near", "www-old", None),
        ("app_gateway", "www", "www", None),
        ("app_service", "www-cert", "www", None),
        ("app_service", "far", "www", None),
    ]
    assert {c.configured_target for c in consumers} == {None}


def test_one_certificates_consumers_and_the_targets_covering_them() -> None:
    """certificate_name filters whole and case-insensitively; a configured target on the resource covers it."""
    consumers = classify(
        _resources(), vault_name="kv-corp", certificate_name="WWW", configured=[("edge", GATEWAY.upper())]
    )

    assert [(c.resource_id, c.configured_target) for c in consumers if c.kind == "app_gateway"] == [(GATEWAY, "edge")]
    assert all(c.certificate_name.lower() == "www" for c in consumers)
    assert not any(c.pinned for c in consumers)


@pytest.fixture
def graph(arm_fake: ArmTargetsFake) -> ResourceGraphFake:
    fake = ResourceGraphFake(_resources(), page_size=2)
    arm_fake.mounted = fake.handle
    return fake


def test_resource_graph_pages_are_all_read_and_api_management_entities_added(
    arm: ArmClient, arm_fake: ArmTargetsFake, graph: ResourceGraphFake
) -> None:
    """list_consumers pages with $skipToken, then lists each API Management service's certificate entities."""
    arm_fake.seed(
        {
            "id": f"{SERVICE}/certificates/api-entity",
            "name": "api-entity",
            "type": "Microsoft.ApiManagement/service/certificates",
            "properties": {"keyVault": {"secretIdentifier": f"{VAULT_URL}/secrets/api/9"}},
        }
    )
    arm_fake.seed({"id": SERVICE, "type": "Microsoft.ApiManagement/service", "name": "apim", "properties": {}})
    configured = [TargetConfig("apim", "api_management", SERVICE, None, None, AppGatewayOptions())]

    consumers = list_consumers(
        ResourceGraph(arm, subscriptions=[SUBSCRIPTION], page_size=2),
        vault_name="kv-corp",
        certificate_name="api",
        configured=configured,
    )

    assert consumers == [
        Consumer(SERVICE, "api_management", "api", f"{VAULT_URL}/secrets/api", None, "apim", "api.corp.example"),
        Consumer(
            f"{SERVICE}/certificates/api-entity",
            "api_management",
            "api",
            f"{VAULT_URL}/secrets/api/9",
            "9",
            "apim",
            "api-entity",
        ),
        Consumer(GATEWAY, "app_gateway", "API", f"{VAULT_URL}/secrets/API/3f2a", "3f2a", None, "api"),
    ]
    # 4 consumer-type resources in the subscription, 2 a page: 2 queries, then the one service's certificates.
    assert len(graph.queries) == 2
    assert [q.get("options", {}).get("$skipToken") for q in graph.queries] == [None, "2"]
    assert all(q["subscriptions"] == [SUBSCRIPTION] and q["query"] == CONSUMERS_QUERY for q in graph.queries)
    assert arm.requests_sent == 3


def test_without_subscriptions_every_readable_one_is_searched(
    arm: ArmClient, arm_fake: ArmTargetsFake, graph: ResourceGraphFake
) -> None:
    """No subscriptions listed: the body has none, and the other subscription's consumer is found too."""
    consumers = list_consumers(
        ResourceGraph(arm), vault_name="kv-corp", certificate_name="www", api_management_certificates=False
    )

    assert "subscriptions" not in graph.queries[0]
    assert "far" in {c.where for c in consumers}


def test_an_identity_without_reader_hears_which_role(arm: ArmClient, arm_fake: ArmTargetsFake) -> None:
    """403 from Resource Graph names Reader on the subscriptions."""
    arm_fake.forbid("/providers/Microsoft.ResourceGraph/resources")

    with pytest.raises(PermanentError) as caught:
        list_consumers(ResourceGraph(arm), vault_name="kv-corp")

    assert caught.value.reason == "arm_authorization_failed"
    assert "Reader" in caught.value.message
