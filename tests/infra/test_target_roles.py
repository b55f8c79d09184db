"""The deployment-target role modules, read with pycep: each grants the app's identity exactly one least role on
exactly its target resource, and the role a module grants is the one the target's 403 message names."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, cast

import pycep  # checkov's own Bicep parser, pinned in requirements-dev.txt and requirements-worker.txt
import pytest

from renewal.targets import api_management, app_gateway, app_service, container_apps

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "infra" / "app"

# module -> (target parameter, target resource type, role name, built-in role id or None for the custom role,
# the target module whose ROLE names it).
MODULES: dict[str, tuple[str, str, str, str | None, Any]] = {
    "target-app-gateway.bicep": (
        "gatewayName",
        "Microsoft.Network/applicationGateways",
        "Network Contributor",
        "4d97b98b-1d4f-4787-a291-c67834d212e7",
        app_gateway,
    ),
    "target-api-management.bicep": (
        "serviceName",
        "Microsoft.ApiManagement/service",
        "API Management Service Contributor",
        "312a565d-c81f-4fd8-895a-4e21e48d571c",
        api_management,
    ),
    "target-app-service.bicep": (
        "certificateName",
        "Microsoft.Web/certificates",
        "Website Contributor",
        "de139f84-1756-47ae-9be6-808fbbe84772",
        app_service,
    ),
    "target-container-apps.bicep": (
        "environmentName",
        "Microsoft.App/managedEnvironments",
        "Container Apps Environment Certificate Writer",
        None,
        container_apps,
    ),
}
CUSTOM_ACTIONS = {
    "Microsoft.App/managedEnvironments/certificates/read",
    "Microsoft.App/managedEnvironments/certificates/write",
    "Microsoft.App/locations/managedEnvironmentOperationStatuses/read",
    "Microsoft.App/locations/managedEnvironmentOperationResults/read",
}


@functools.cache
def template(name: str) -> dict[str, Any]:
    # pycep types its answer as a TypedDict of unions; the tests walk it as plain JSON.
    return cast(dict[str, Any], pycep.BicepParser().parse(file_path=APP / name))


def _of_type(name: str, resource_type: str) -> dict[str, dict[str, Any]]:
    return {s: e for s, e in template(name)["resources"].items() if e["type"] == resource_type}


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_takes_only_the_target_and_the_apps_identity(module: str) -> None:
    """Parameters: the target's name and the app's principal id, nothing that could widen the grant."""
    parameter = MODULES[module][0]
    assert set(template(module)["parameters"]) == {parameter, "appPrincipalId"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_grants_one_role_on_exactly_the_existing_target(module: str) -> None:
    """One role assignment, scoped to the existing target resource named by the parameter, for a service principal,
    named guid(target.id, principal, role), with the role named in the comment above it."""
    parameter, resource_type, role_name, role_id, _ = MODULES[module]
    [(scope_symbol, scope)] = _of_type(module, resource_type).items()
    assert scope["existing"] is True
    assert scope["config"]["name"] == parameter
    [(symbol, assignment)] = _of_type(module, "Microsoft.Authorization/roleAssignments").items()
    config = assignment["config"]
    assert config["scope"] == scope_symbol
    assert config["properties"]["principalId"] == "appPrincipalId"
    assert config["properties"]["principalType"] == "ServicePrincipal"
    name = config["name"]["function"]
    assert name["type"] == "guid"
    assert _text(name["parameters"]["base_string"]) == _text(
        {"operator": {"type": "property_accessor", "operands": {"operand_1": scope_symbol, "operand_2": "id"}}}
    )
    assert name["parameters"]["extra_string_1"] == "appPrincipalId"
    definition = config["properties"]["roleDefinitionId"]
    if role_id is not None:
        function = definition["function"]
        assert function["type"] == "subscription_resource_id"
        assert function["parameters"]["resource_name_1"] == role_id
        assert name["parameters"]["extra_string_2"] == role_id
    lines = (APP / module).read_text().splitlines()
    [declaration] = [n for n, line in enumerate(lines) if line.startswith(f"resource {symbol} ")]
    assert re.match(rf"// {re.escape(role_name)}:", lines[declaration - 1])


def test_the_container_apps_role_is_custom_with_exactly_the_certificate_actions() -> None:
    """No built-in role writes environment certificates without the apps: the custom role holds only these actions,
    is assignable in its resource group only, and is the one assigned (its GUID in the assignment's name)."""
    module = "target-container-apps.bicep"
    [(symbol, definition)] = _of_type(module, "Microsoft.Authorization/roleDefinitions").items()
    properties = definition["config"]["properties"]
    [permission] = properties["permissions"]
    assert set(permission["actions"]) == CUSTOM_ACTIONS
    assert not any("*" in action for action in permission["actions"])
    assert permission["notActions"] == []
    assert properties["type"] == "CustomRole"
    assert properties["roleName"].startswith("Container Apps Environment Certificate Writer")
    [scope] = properties["assignableScopes"]
    assert scope["function"]["type"] == "resource_group"
    assert scope["function"]["property_name"] == "id"
    assert definition["config"]["name"] == "certificateWriterRoleId"
    [assignment] = _of_type(module, "Microsoft.Authorization/roleAssignments").values()
    role = assignment["config"]["properties"]["roleDefinitionId"]["operator"]["operands"]
    assert (role["operand_1"], role["operand_2"]) == (symbol, "id")
    assert assignment["config"]["name"]["function"]["parameters"]["extra_string_2"] == "certificateWriterRoleId"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_403_names_the_role_the_module_grants(module: str) -> None:
    """The target's 403 message (its ROLE) names the role infra/ grants, so the operator knows what is missing."""
    _, _, role_name, _, target_module = MODULES[module]
    assert target_module.ROLE.startswith(role_name)


def test_docs_name_every_module_and_role() -> None:
    """docs/targets.md tells the operator which module grants which role."""
    docs = (ROOT / "docs" / "targets.md").read_text()
    for module, (_, _, role_name, _, _) in MODULES.items():
        assert module in docs
        assert role_name in docs


def test_main_grants_each_listed_target_its_role_and_each_consumer_subscription_reader() -> None:
    """main.bicep deploys one role module per listed target of each kind, in the target's resource group, and
    Reader on each subscription Resource Graph searches; RENEWAL_TARGETS is set only when targets are."""
    from tests.infra.test_templates import body, template, text

    main = template("main.bicep")
    modules = main["modules"]
    paths = {
        "appGatewayTargets": "app/target-app-gateway.bicep",
        "apiManagementTargets": "app/target-api-management.bicep",
        "appServiceTargets": "app/target-app-service.bicep",
        "containerAppsTargets": "app/target-container-apps.bicep",
        "consumerReaders": "app/consumers-reader.bicep",
        "workbook": "app/workbook.bicep",
    }
    for symbol, path in paths.items():
        assert modules[symbol]["detail"]["path"] == path, symbol
    principal = text(body(modules["consumerReaders"])["params"]["appPrincipalId"])
    assert "identity" in principal
    assert "appPrincipalId" in principal
    kinds = ("app_gateway", "api_management", "app_service", "container_apps")
    for symbol, kind in zip(list(paths)[:4], kinds, strict=True):
        config = body(modules[symbol])
        assert text(config["params"]["appPrincipalId"]) == principal, symbol
        assert config["scope"]["function"]["type"] == "resource_group", symbol
        assert "resourceGroup" in text(config["scope"]["function"]["parameters"]["resource_group_name"]), symbol
        loop = text(modules[symbol]["config"]["loop_type"])
        assert "targetResources" in loop, symbol
        assert f'"{kind}"' in loop, symbol
    assert body(modules["consumerReaders"])["scope"]["function"]["type"] == "subscription"
    assert "RENEWAL_TARGETS" in text(main["variables"]["targetsSetting"])
