"""RENEWAL_TARGETS, which targets a certificate gets, the pick-up deadlines, and the ARM endpoint settings."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from renewal.errors import ConfigurationError
from renewal.targets import (
    ARM_CA_BUNDLE,
    ARM_ENDPOINT,
    KINDS,
    PICKUP_DEADLINES,
    SELF_PICKUP,
    TARGETS,
    DeploymentTarget,
    ProbeEndpoint,
    TargetConfig,
    arm_client_from_environ,
    build_target,
    parse_targets,
    slowest_pickup,
    targets_for,
)
from renewal.targets.app_gateway import AppGatewayOptions
from renewal.targets.container_apps import ContainerAppsOptions
from tests.targets.conftest import StaticCredential, resource_id

GATEWAY = resource_id("Microsoft.Network/applicationGateways/edge")
WEB_CERTIFICATE = resource_id("Microsoft.Web/certificates/www")
ACA_CERTIFICATE = resource_id("Microsoft.App/managedEnvironments/env/certificates/www")


def _parse(targets: dict[str, Any]) -> tuple[TargetConfig, ...]:
    return parse_targets({TARGETS: json.dumps(targets)})


def test_a_full_target_is_read_with_its_probe_tag_and_options() -> None:
    """kind, resource_id, probe host:port, sni, tag and the kind's options become one TargetConfig."""
    [config] = _parse(
        {
            "edge": {
                "kind": "app_gateway",
                "resource_id": GATEWAY + "/",
                "probe": "gw.corp.example:8443",
                "sni": "www.corp.example",
                "tag": " renewal-target = edge ",
                "options": {"certificate_names": ["www"], "api_version": "2023-09-01"},
            }
        }
    )

    assert config == TargetConfig(
        name="edge",
        kind="app_gateway",
        resource_id=GATEWAY,
        probe=ProbeEndpoint("gw.corp.example", 8443, "www.corp.example"),
        match_tag=("renewal-target", "edge"),
        options=AppGatewayOptions(api_version="2023-09-01", certificate_names=("www",)),
    )


def test_a_minimal_target_has_no_probe_no_tag_and_default_options() -> None:
    """Only kind and resource_id are required; an IPv6 probe without a port defaults to 443."""
    configs = _parse(
        {
            "aca": {"kind": "container_apps", "resource_id": ACA_CERTIFICATE},
            "web": {"kind": "app_service", "resource_id": WEB_CERTIFICATE, "probe": "[::1]"},
        }
    )

    assert configs[0].probe is None
    assert configs[0].match_tag is None
    assert configs[0].options == ContainerAppsOptions()
    assert configs[1].probe == ProbeEndpoint("::1", 443, None)


def test_no_setting_is_no_targets() -> None:
    """Missing or blank RENEWAL_TARGETS: no targets."""
    assert parse_targets({}) == ()
    assert parse_targets({TARGETS: "  "}) == ()


@pytest.mark.parametrize(
    ("targets", "fault"),
    [
        ("[1]", "must be a JSON object"),
        ('{"a": ', "not valid JSON"),
        ({"bad name!": {}}, "target name is not valid"),
        ({"a": []}, "must be a JSON object"),
        ({"a": {"kind": "front_door", "resource_id": GATEWAY}}, "kind must be one of"),
        ({"a": {"kind": "app_gateway"}}, "resource_id is required"),
        ({"a": {"kind": "app_gateway", "resource_id": "edge"}}, "must be an ARM resource id"),
        ({"a": {"kind": "app_gateway", "resource_id": WEB_CERTIFICATE}}, "Microsoft.Network/applicationGateways"),
        ({"a": {"kind": "app_service", "resource_id": GATEWAY}}, "Microsoft.Web/certificates"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "url": "x"}}, "unknown key(s) url"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "probe": "h:0"}}, "probe must be"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "probe": "h:99999"}}, "port from 1 to 65535"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "probe": "u@h"}}, "probe must be"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "probe": "h_1"}}, "DNS name or an IP"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "sni": "x.example"}}, "sni needs a probe"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "tag": "novalue"}}, "tag must be 'key=value'"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "options": []}}, "options must be a JSON object"),
        ({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "options": {"x": 1}}}, "unknown option(s) x"),
        (
            {"a": {"kind": "container_apps", "resource_id": ACA_CERTIFICATE, "options": {"refresh": "yes"}}},
            "option refresh must be true or false",
        ),
        (
            {"a": {"kind": "app_gateway", "resource_id": GATEWAY, "options": {"certificate_names": "www"}}},
            "option certificate_names must be a list of non-empty strings",
        ),
    ],
)
def test_malformed_targets_are_refused_in_plain_words(targets: Any, fault: str) -> None:
    """Each mistake is a ConfigurationError naming RENEWAL_TARGETS, the target and what is wrong."""
    raw = targets if isinstance(targets, str) else json.dumps(targets)

    with pytest.raises(ConfigurationError) as caught:
        parse_targets({TARGETS: raw})

    assert caught.value.setting == TARGETS
    assert fault in caught.value.message


def test_a_refused_value_is_never_repeated() -> None:
    """The message names the key at fault, not the value the operator typed (it may be something pasted)."""
    with pytest.raises(ConfigurationError) as caught:
        _parse({"a": {"kind": "app_gateway", "resource_id": GATEWAY, "probe": "sekrit-value_x"}})

    assert "sekrit" not in caught.value.message


def _config(name: str, tag: tuple[str, str] | None = None) -> TargetConfig:
    return TargetConfig(name, "app_gateway", GATEWAY, None, tag, AppGatewayOptions())


def test_targets_follow_the_webhook_rule_without_an_explicit_tag() -> None:
    """Untagged targets apply to every certificate; tagged ones when the key (any case) and value match."""
    configs = (_config("all"), _config("edge", ("Renewal-Target", "edge")), _config("api", ("renewal-target", "api")))

    assert [c.name for c in targets_for(configs, {"renewal-target": " edge"})] == ["all", "edge"]
    assert [c.name for c in targets_for(configs, {})] == ["all"]


def test_a_renewal_targets_tag_names_exactly_the_targets() -> None:
    """renewal-targets=a,b selects those targets (names any case), and only those, whatever their tags."""
    configs = (_config("all"), _config("edge", ("renewal-target", "edge")), _config("api"))

    assert [c.name for c in targets_for(configs, {"Renewal-Targets": "EDGE, api,unknown"})] == ["edge", "api"]
    assert targets_for(configs, {"renewal-targets": ""}) == ()


def test_every_kind_has_a_target_a_pickup_deadline_and_a_self_pickup_time() -> None:
    """The four kinds build targets satisfying the protocol, with their kind's deadline."""
    assert set(KINDS) == set(PICKUP_DEADLINES) == set(SELF_PICKUP)
    arm = arm_client_from_environ({}, credential=StaticCredential())
    for kind, (_, options_class) in KINDS.items():
        target = build_target(TargetConfig(kind, kind, GATEWAY, None, None, options_class()), arm)
        assert isinstance(target, DeploymentTarget)
        assert (target.name, target.kind, target.pickup_deadline) == (kind, kind, PICKUP_DEADLINES[kind])
        assert PICKUP_DEADLINES[kind] <= SELF_PICKUP[kind]


def test_build_target_refuses_options_of_another_kind() -> None:
    """A TargetConfig whose options belong to another kind is a configuration error."""
    arm = arm_client_from_environ({}, credential=StaticCredential())
    with pytest.raises(ConfigurationError):
        build_target(TargetConfig("x", "app_service", WEB_CERTIFICATE, None, None, AppGatewayOptions()), arm)


def test_slowest_pickup_is_the_longest_self_pickup_of_the_configured_kinds() -> None:
    """App Service's 24 hours outlast App Gateway's 4; App Gateway alone is 4 hours; no targets is zero."""
    configs = _parse(
        {
            "gw": {"kind": "app_gateway", "resource_id": GATEWAY},
            "web": {"kind": "app_service", "resource_id": WEB_CERTIFICATE},
        }
    )
    assert slowest_pickup(configs) == timedelta(hours=24)
    assert slowest_pickup(configs[:1]) == timedelta(hours=4)
    assert slowest_pickup(()) == timedelta()


def test_the_arm_endpoint_defaults_to_public_azure() -> None:
    """Without RENEWAL_ARM_ENDPOINT the client talks to https://management.azure.com."""
    assert arm_client_from_environ({}, credential=StaticCredential()).endpoint == "https://management.azure.com"


@pytest.mark.parametrize(
    ("endpoint", "fault"),
    [
        ("http://127.0.0.1:9", "https URL"),
        ("https://management.azure.com/x", "https URL with no path"),
        ("https://arm.attacker.example", "Azure Resource Manager endpoint"),
    ],
)
def test_an_arm_endpoint_that_could_leak_the_token_is_refused(endpoint: str, fault: str) -> None:
    """The token goes only to Azure's ARM hosts (public or sovereign) or to loopback, over https."""
    with pytest.raises(ConfigurationError) as caught:
        arm_client_from_environ({ARM_ENDPOINT: endpoint}, credential=StaticCredential())

    assert caught.value.setting == ARM_ENDPOINT
    assert fault in caught.value.message


def test_a_ca_bundle_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    """RENEWAL_ARM_CA_BUNDLE must name a file."""
    with pytest.raises(ConfigurationError) as caught:
        arm_client_from_environ({ARM_CA_BUNDLE: str(tmp_path / "none.pem")}, credential=StaticCredential())

    assert caught.value.setting == ARM_CA_BUNDLE
