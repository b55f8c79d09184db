"""``renewal consumers``: who uses a vault's certificates, found through Resource Graph (a loopback fake of its
query API on the ARM fake), with references pinned to a version and consumers no target covers flagged."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import VAULT, Run
from tests.fakes.arm_targets import ArmTargetsFake
from tests.fakes.resource_graph import ResourceGraphFake

ARM_TOKEN = "arm-test-token"
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a1"
GROUP = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/edge"
GATEWAY = f"{GROUP}/providers/Microsoft.Network/applicationGateways/edge"
WEB = f"{GROUP}/providers/Microsoft.Web/certificates/www-cert"
VAULT_URL = f"https://{VAULT}.vault.azure.net"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[tuple[ArmTargetsFake, ResourceGraphFake]]:
    resources = [
        {
            "id": GATEWAY,
            "type": "Microsoft.Network/applicationGateways",
            "name": "edge",
            "properties": {
                "sslCertificates": [
                    {"name": "www", "properties": {"keyVaultSecretId": f"{VAULT_URL}/secrets/www"}},
                    {"name": "api", "properties": {"keyVaultSecretId": f"{VAULT_URL}/secrets/api/3f2a9c"}},
                ]
            },
        },
        {
            "id": WEB,
            "type": "Microsoft.Web/certificates",
            "name": "www-cert",
            "properties": {
                "keyVaultId": f"{GROUP}/providers/Microsoft.KeyVault/vaults/{VAULT}",
                "keyVaultSecretName": "www",
            },
        },
    ]
    search = ResourceGraphFake(resources)
    with ArmTargetsFake(tmp_path / "arm-tls", token=ARM_TOKEN) as arm:
        arm.mounted = search.handle
        yield arm, search


def _environ(arm: ArmTargetsFake) -> dict[str, str]:
    return {
        **os.environ,
        "RENEWAL_ARM_ENDPOINT": arm.url,
        "RENEWAL_ARM_CA_BUNDLE": str(arm.tls.ca_path),
        "RENEWAL_ARM_STATIC_TOKEN": ARM_TOKEN,
        "RENEWAL_TARGETS": json.dumps({"edge": {"kind": "app_gateway", "resource_id": GATEWAY}}),
    }


def test_consumers_lists_each_reference_and_flags_the_pinned_and_the_uncovered(
    graph: tuple[ArmTargetsFake, ResourceGraphFake], run: Callable[..., Run]
) -> None:
    arm, search = graph

    result = run("consumers", VAULT, "--json", environ=_environ(arm))

    rows = {(row["resource_id"], row["certificate"]): row for row in json.loads(result.out)["consumers"]}
    assert set(rows) == {(GATEWAY, "www"), (GATEWAY, "api"), (WEB, "www")}
    assert rows[(GATEWAY, "www")]["target"] == "edge"
    assert rows[(GATEWAY, "www")]["pinned_version"] is None
    assert rows[(GATEWAY, "api")]["pinned_version"] == "3f2a9c"
    assert rows[(WEB, "www")]["target"] is None
    assert result.code == 1, "a pinned reference and an uncovered consumer need a person"
    assert search.queries, "the consumers come from Resource Graph"
    assert ARM_TOKEN not in result.out + result.err


def test_consumers_of_one_certificate_covered_by_a_target_exit_0(
    graph: tuple[ArmTargetsFake, ResourceGraphFake], run: Callable[..., Run]
) -> None:
    arm, _ = graph
    environ = _environ(arm)
    environ["RENEWAL_TARGETS"] = json.dumps(
        {
            "edge": {"kind": "app_gateway", "resource_id": GATEWAY},
            "web": {"kind": "app_service", "resource_id": WEB},
        }
    )

    result = run("consumers", VAULT, "www", environ=environ)

    assert result.code == 0, result.out + result.err
    assert "www-cert" in result.out
    assert "not configured" not in result.out


def test_a_static_arm_token_is_refused_for_a_real_arm_endpoint(run: Callable[..., Run]) -> None:
    environ = {**os.environ, "RENEWAL_ARM_STATIC_TOKEN": ARM_TOKEN}

    result = run("consumers", VAULT, environ=environ)

    assert result.code == 2
    assert "RENEWAL_ARM_STATIC_TOKEN" in result.err
