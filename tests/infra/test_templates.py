"""The deployment templates, read with checkov's own Bicep parser (pycep), asserted property by property.

No Bicep compiler or Azure is reachable here, so these tests pin the properties a real deployment depends on, each
named after the defect it keeps out (issue 13): dead letters behind a storage firewall, the delivery schema, the
narrowest role scopes, the app settings the app reads, names per azd environment, and the azd/CI wiring around them.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pycep  # checkov's own Bicep parser, pinned in requirements-dev.txt and requirements-worker.txt
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
RENEWAL = ROOT / "renewal"

# The built-in roles the templates may grant, by id (learn.microsoft.com/azure/role-based-access-control/
# built-in-roles), with the resource types each may be scoped to: the narrowest scope that works for its holder.
ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "a4417e6f-fecd-4de8-b567-7b0420556985": (
        "Key Vault Certificates Officer",
        frozenset({"Microsoft.KeyVault/vaults"}),
    ),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User", frozenset({"Microsoft.KeyVault/vaults"})),
    # The host creates its own containers (leases, keys, timer state) and queues at run time: account scope.
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": (
        "Storage Blob Data Owner",
        frozenset({"Microsoft.Storage/storageAccounts"}),
    ),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": (
        "Storage Queue Data Contributor",
        frozenset({"Microsoft.Storage/storageAccounts"}),
    ),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": (
        "Storage Table Data Contributor",
        frozenset({"Microsoft.Storage/storageAccounts/tableServices/tables"}),
    ),
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": (
        "Storage Blob Data Contributor",
        frozenset({"Microsoft.Storage/storageAccounts/blobServices/containers"}),
    ),
    "3913510d-42f4-4e42-8a64-420c390055eb": (
        "Monitoring Metrics Publisher",
        frozenset({"Microsoft.Insights/components"}),
    ),
    "d5a91429-5739-47e2-a06b-3470a27159e7": ("EventGrid Data Sender", frozenset({"Microsoft.EventGrid/topics"})),
    # A system topic writing Key Vault events to the work queue (eventDelivery = 'queue'): that queue only.
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": (
        "Storage Queue Data Message Sender",
        frozenset({"Microsoft.Storage/storageAccounts/queueServices/queues"}),
    ),
    # Deployment targets (docs/targets.md): each on exactly the resource it pushes to.
    "4d97b98b-1d4f-4787-a291-c67834d212e7": (
        "Network Contributor",
        frozenset({"Microsoft.Network/applicationGateways"}),
    ),
    "312a565d-c81f-4fd8-895a-4e21e48d571c": (
        "API Management Service Contributor",
        frozenset({"Microsoft.ApiManagement/service"}),
    ),
    "de139f84-1756-47ae-9be6-808fbbe84772": ("Website Contributor", frozenset({"Microsoft.Web/certificates"})),
    # Resource Graph (renewal consumers): read-only, on each subscription searched.
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": ("Reader", frozenset({"subscription"})),
}

# Settings function.bicep sets that no code under renewal/ reads, each with its reader. Anything else the templates
# set must be read by the app (found in renewal/'s sources), so a renamed or dropped setting cannot linger.
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri": "the Functions host (identity-based AzureWebJobsStorage)",
    "AzureWebJobsStorage__queueServiceUri": "the Functions host (identity-based AzureWebJobsStorage)",
    "AzureWebJobsStorage__credential": "the Functions host (identity-based AzureWebJobsStorage)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the Functions host (Entra ID telemetry ingestion)",
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential (picks the user-assigned identity)",
}
# Flex Consumption sets these itself and refuses them as app settings (Flex Consumption plan deprecations).
FLEX_REFUSED_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
}
DELIVERY_SCHEMAS = ["EventGridSchema", "CloudEventSchemaV1_0"]
EVENT_DELIVERIES = ["function", "queue"]


# --- reading the templates -------------------------------------------------------------------------------------


@functools.cache
def template(relative: str) -> dict[str, Any]:
    """One Bicep file as pycep parses it (the parser checkov uses)."""
    parsed: dict[str, Any] = pycep.BicepParser().parse(file_path=INFRA / relative)
    return parsed


def bicep_files() -> list[str]:
    return sorted(str(path.relative_to(INFRA)) for path in INFRA.rglob("*.bicep"))


def body(element: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's own properties, under any condition or loop."""
    config: dict[str, Any] = element["config"]
    while isinstance(config.get("config"), dict) and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def condition(element: dict[str, Any]) -> Any:
    """A resource's or module's deploy condition (``if (...)``), or None."""
    return element["config"].get("condition")


def resources(resource_type: str | None = None, *, created: bool | None = None) -> Iterator[tuple[str, str, dict]]:
    """(file, symbol, element) of every resource in infra/, optionally of one type, created or ``existing``."""
    for relative in bicep_files():
        for symbol, element in template(relative).get("resources", {}).items():
            if resource_type is not None and element["type"] != resource_type:
                continue
            if created is not None and element["existing"] == created:
                continue
            yield relative, symbol, element


def text(value: Any) -> str:
    """An expression tree as text, to ask which symbols it mentions."""
    return json.dumps(value, sort_keys=True)


def variable(relative: str, name: str) -> Any:
    return template(relative)["variables"][name]["value"]


def resolved(relative: str, value: Any) -> Any:
    """``value``, or the value of the variable it names."""
    variables = template(relative).get("variables", {})
    if isinstance(value, str) and value in variables:
        return variables[value]["value"]
    return value


def decorators(parameter: dict[str, Any]) -> dict[str, Any]:
    return {decorator["type"]: decorator["argument"] for decorator in parameter["decorators"]}


def object_keys(value: Any) -> set[str]:
    """The keys of an object literal, through ``cond ? {} : {...}``."""
    if not isinstance(value, dict):
        return set()
    operator = value.get("operator")
    if isinstance(operator, dict) and operator.get("type") == "conditional":
        operands = operator["operands"]
        return object_keys(operands["true_value"]) | object_keys(operands["false_value"])
    if "operator" in value or "function" in value:
        return set()
    return set(value)


@functools.cache
def app_strings() -> frozenset[str]:
    """Every string constant in renewal/'s sources: the settings the app reads are among them."""
    found: set[str] = set()
    for path in RENEWAL.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return frozenset(found)


def template_settings() -> dict[str, str]:
    """Setting name -> the file that sets it: function.bicep's host settings and main.bicep's renewal settings."""
    settings = dict.fromkeys(object_keys(variable("app/function.bicep", "hostSettings")), "app/function.bicep")
    union = variable("main.bicep", "renewalSettings")["function"]
    assert union["type"] == "union", "renewalSettings is a union of setting objects"
    for member in union["parameters"].values():
        if member in template("main.bicep")["variables"]:
            settings.update(dict.fromkeys(object_keys(variable("main.bicep", member)), "main.bicep"))
    return settings


# --- dead letters, delivery schema, system topics --------------------------------------------------------------


def event_subscriptions() -> list[tuple[str, str, dict[str, Any]]]:
    found = [entry for entry in resources() if entry[2]["type"].endswith("/eventSubscriptions")]
    assert found, "infra/ declares no Event Grid subscription"
    return found


def test_every_event_subscription_dead_letters_with_the_system_assigned_identity() -> None:
    """Dead letters go to blob storage with the SYSTEM-assigned identity: behind the storage firewall (VNET
    integration on) Event Grid refuses a user-assigned one, and the events would be dropped."""
    for relative, symbol, element in event_subscriptions():
        properties = body(element)["properties"]
        assert "deadLetterDestination" not in properties, f"{relative}:{symbol} dead-letters without an identity"
        dead_letter = properties["deadLetterWithResourceIdentity"]
        assert dead_letter["identity"] == {"type": "SystemAssigned"}, f"{relative}:{symbol}"
        destination = dead_letter["deadLetterDestination"]
        assert destination["endpointType"] == "StorageBlob", f"{relative}:{symbol}"
        assert destination["properties"]["blobContainerName"], f"{relative}:{symbol}"
        assert destination["properties"]["resourceId"], f"{relative}:{symbol}"


def test_created_system_topics_have_their_own_system_assigned_identity() -> None:
    """A topic the templates create carries the system-assigned identity its subscriptions dead-letter with."""
    created = list(resources("Microsoft.EventGrid/systemTopics", created=True))
    assert created
    for relative, symbol, element in created:
        assert body(element)["identity"] == {"type": "SystemAssigned"}, f"{relative}:{symbol}"


def test_the_topic_identity_may_write_dead_letters_and_trusted_services_pass_the_storage_firewall() -> None:
    """The topic's own principal gets the dead-letter container, and the firewall keeps the trusted-service bypass."""
    module = template("app/vault.bicep")["modules"]["deadLetterAccess"]
    assert "identity" in text(body(module)["params"]["topicPrincipalId"])
    assert module["detail"]["path"] == "dead-letter-access.bicep"
    acls = body(template("app/storage.bicep")["resources"]["storage"])["properties"]["networkAcls"]
    assert acls["bypass"] == "AzureServices"
    assert not list(resources("Microsoft.ManagedIdentity/userAssignedIdentities", created=True))[1:], (
        "only the app's identity is user-assigned"
    )


def test_a_vault_with_a_system_topic_gets_the_subscription_on_that_topic() -> None:
    """Azure allows one system topic per source: the topic is created only when the vault names none of its own."""
    vault = template("app/vault.bicep")
    assert vault["parameters"]["existingSystemTopicName"]["default"] == ""
    [(_, symbol, created)] = [entry for entry in resources("Microsoft.EventGrid/systemTopics", created=True)]
    assert "existingSystemTopicName" in text(resolved("app/vault.bicep", condition(created)))
    for _, subscription_symbol, element in event_subscriptions():
        parent = body(element)["parent"]
        assert vault["resources"][parent]["existing"], f"{subscription_symbol} hangs on the existing-topic symbol"
        assert symbol in body(element)["dependsOn"]
    main = template("main.bicep")
    assert "systemTopicName" in text(body(main["modules"]["vaultEvents"])["params"]["existingSystemTopicName"])


def test_every_event_subscription_delivers_in_the_schema_a_parameter_picks() -> None:
    """The delivery schema is a parameter, EventGridSchema by default, CloudEventSchemaV1_0 the other choice."""
    for relative, symbol, element in event_subscriptions():
        schema = body(element)["properties"]["eventDeliverySchema"]
        parameters = template(relative)["parameters"]
        assert schema in parameters, f"{relative}:{symbol}: eventDeliverySchema is not a parameter"
        assert decorators(parameters[schema])["allowed"] == DELIVERY_SCHEMAS
        assert parameters[schema]["default"] == "EventGridSchema"
    for relative, module in (("main.bicep", "vaultEvents"), ("add-vault.bicep", "events")):
        parameter = template(relative)["parameters"]["eventDeliverySchema"]
        assert decorators(parameter)["allowed"] == DELIVERY_SCHEMAS, relative
        assert body(template(relative)["modules"][module])["params"]["eventDeliverySchema"] == "eventDeliverySchema"


@pytest.mark.parametrize("schema", DELIVERY_SCHEMAS)
def test_the_app_reads_every_delivery_schema_the_template_offers(schema: str) -> None:
    """For each schema a subscription may deliver, the sample events go through the azure-functions converter and
    the app's edge (renewal.flow.entry.event_grid_envelope, renewal.pure.intake.parse_event) and name their vault
    and certificate."""
    from azure.functions import meta

    from renewal.flow.entry import event_grid_envelope
    from renewal.pure.intake import RenewalRequest, parse_event
    from renewal.settings import VaultConfig

    suffix = {"EventGridSchema": ".eventgrid.json", "CloudEventSchemaV1_0": ".cloudevent.json"}[schema]
    samples = sorted((ROOT / "tests" / "events").glob(f"*{suffix}"))
    assert samples
    vaults = {"sample-kv": VaultConfig(name="sample-kv", url="https://sample-kv.vault.azure.net")}
    converter: Any = meta.get_binding_registry().get("eventGridTrigger")
    for sample in samples:
        document = json.loads(sample.read_text())
        for event in document if isinstance(document, list) else [document]:
            delivered = converter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
            parsed = parse_event(event_grid_envelope(delivered), vaults=vaults)
            assert isinstance(parsed, RenewalRequest), (sample.name, parsed)
            assert (parsed.vault_name, parsed.certificate_name) == ("sample-kv", "newcert"), sample.name


def test_every_event_subscription_delivers_to_the_function_or_the_queue_a_parameter_picks() -> None:
    """eventDelivery ('function' by default, or 'queue') picks the destination: the Event Grid function, or the work
    queue written with the topic's SYSTEM-assigned identity (the one Event Grid may use behind the storage
    firewall); never both. main.bicep and add-vault.bicep pass the choice through."""
    for relative, symbol, element in event_subscriptions():
        where = f"{relative}:{symbol}"
        parameters = template(relative)["parameters"]
        assert decorators(parameters["eventDelivery"])["allowed"] == EVENT_DELIVERIES, where
        assert parameters["eventDelivery"]["default"] == "function", where
        assert "eventDelivery" in text(variable(relative, "queueDelivery")), where
        properties = body(element)["properties"]
        pushed = properties["destination"]["operator"]
        written = properties["deliveryWithResourceIdentity"]["operator"]
        assert pushed["type"] == written["type"] == "conditional", where
        assert pushed["operands"]["condition"] == written["operands"]["condition"] == "queueDelivery", where
        assert (pushed["operands"]["true_value"], written["operands"]["false_value"]) == (None, None), where
        function = variable(relative, pushed["operands"]["false_value"])
        assert function["endpointType"] == "AzureFunction", where
        assert "keyvault_certificate_events" in text(resolved(relative, "functionName")), where
        queue = variable(relative, written["operands"]["true_value"])
        assert queue["identity"] == {"type": "SystemAssigned"}, where
        assert queue["destination"]["endpointType"] == "StorageQueue", where
        assert queue["destination"]["properties"]["queueName"] == "workQueueName", where
        assert queue["destination"]["properties"]["resourceId"] == "deadLetterStorageAccountId", where
    for relative, module in (("main.bicep", "vaultEvents"), ("add-vault.bicep", "events")):
        parameter = template(relative)["parameters"]["eventDelivery"]
        assert decorators(parameter)["allowed"] == EVENT_DELIVERIES, relative
        params = body(template(relative)["modules"][module])["params"]
        assert params["eventDelivery"] == "eventDelivery", relative
        assert "workQueueName" in text(params["workQueueName"]), relative


def test_a_queue_subscription_is_made_on_the_first_provision() -> None:
    """A function destination waits for the deployed function (subscribeEvents); a queue needs only the queue."""
    [(relative, _, element)] = event_subscriptions()
    assert condition(element) == "subscribe"
    rule = text(variable(relative, "subscribe"))
    assert "subscribeEvents" in rule
    assert "queueDelivery" in rule


def test_the_topic_identity_may_only_send_to_the_work_queue_and_only_with_queue_delivery() -> None:
    """With eventDelivery = 'queue', the topic's system-assigned identity gets Storage Queue Data Message Sender on
    the work queue (not the account), before the subscription is made."""
    vault = template("app/vault.bicep")
    module = vault["modules"]["queueSenderAccess"]
    assert module["detail"]["path"] == "queue-sender-access.bicep"
    assert condition(module) == "queueDelivery"
    assert "identity" in text(body(module)["params"]["topicPrincipalId"])
    assert body(module)["params"]["workQueueName"] == "workQueueName"
    [(_, _, subscription)] = event_subscriptions()
    assert "queueSenderAccess" in body(subscription)["dependsOn"]
    sender = template("app/queue-sender-access.bicep")["resources"]["queueSender"]
    assert body(sender)["scope"] == "workQueue"


def test_the_work_queue_and_its_poison_queue_exist_under_the_name_the_functions_bind() -> None:
    """storage.bicep creates the work queue and "<name>-poison"; RENEWAL_WORK_QUEUE is that name, and the queue
    functions bind %RENEWAL_WORK_QUEUE% and %RENEWAL_WORK_QUEUE%-poison; the name leaves room for "-poison"."""
    storage = template("app/storage.bicep")["resources"]
    assert body(storage["workQueue"])["name"] == "workQueueName"
    assert "workQueueName" in text(body(storage["poisonQueue"])["name"])
    assert "-poison" in text(body(storage["poisonQueue"])["name"])
    assert "workQueueName" in text(variable("main.bicep", "baseSettings")["RENEWAL_WORK_QUEUE"])
    assert variable("main.bicep", "baseSettings")["RENEWAL_SWEEP_FANOUT"] == "sweepFanout"
    limits = decorators(template("main.bicep")["parameters"]["workQueueName"])
    assert limits["max_length"] == 63 - len("-poison")
    app = (ROOT / "function_app.py").read_text()
    assert 'queue_name="%RENEWAL_WORK_QUEUE%"' in app
    assert 'queue_name="%RENEWAL_WORK_QUEUE%-poison"' in app
    main = template("main.bicep")["parameters"]
    assert decorators(main["sweepFanout"])["allowed"] == ["off", "queue"]
    assert main["sweepFanout"]["default"] == "off"


def test_the_app_identity_processes_the_work_queue() -> None:
    """The queue trigger reads, hides and deletes messages and the planner sends them: the app's identity holds
    Storage Queue Data Contributor on its storage account."""
    access = template("app/storage-access.bicep")["resources"]["queueContributor"]
    config = body(access)
    assert config["properties"]["principalId"] == "appPrincipalId"
    assert "974c5e8b-45b9-4653-ba55-5f855dd0fb88" in text(config["properties"]["roleDefinitionId"])


def test_dropped_and_dead_lettered_events_raise_alerts() -> None:
    """Each vault subscription has a metric alert on DeadLetteredCount and one on DroppedEventCount."""
    [(relative, _, alert)] = list(resources("Microsoft.Insights/metricAlerts"))
    assert relative == "app/vault.bicep"
    criteria = body(alert)["properties"]["criteria"]["allOf"]
    assert "alert" in text(criteria)
    metrics = {entry["metricName"] for entry in variable(relative, "deliveryAlerts")}
    assert metrics == {"DeadLetteredCount", "DroppedEventCount"}


# --- roles ----------------------------------------------------------------------------------------------------


def test_every_role_assignment_names_a_built_in_role_at_its_narrowest_scope() -> None:
    """Each role assignment: a built-in role by GUID with its name in the comment above, guid(scope, principal, role)
    as its name, a ServicePrincipal principal, and a scope of the narrowest type that role needs."""
    assignments = list(resources("Microsoft.Authorization/roleAssignments", created=True))
    assert len(assignments) >= 8
    for relative, symbol, element in assignments:
        where = f"{relative}:{symbol}"
        config = body(element)
        definition = config["properties"]["roleDefinitionId"]
        if "operator" in definition:
            # A custom role defined beside it (Container Apps' certificate writer): tests/infra/test_target_roles.py
            # pins its actions, assignable scope and assignment.
            custom = definition["operator"]["operands"]["operand_1"]
            assert template(relative)["resources"][custom]["type"] == "Microsoft.Authorization/roleDefinitions", where
            continue
        role = definition["function"]
        assert role["type"] == "subscription_resource_id", where
        assert role["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions", where
        role_id = role["parameters"]["resource_name_1"]
        assert role_id in ROLES, f"{where}: {role_id} is not a role the templates may grant"
        role_name, scope_types = ROLES[role_id]

        lines = (INFRA / relative).read_text().splitlines()
        [declaration] = [n for n, line in enumerate(lines) if line.startswith(f"resource {symbol} ")]
        first = declaration
        while first > 0 and lines[first - 1].startswith("//"):
            first -= 1
        assert first < declaration, f"{where}: no comment above the role assignment"
        assert re.match(rf"// {re.escape(role_name)}[:,]", lines[first]), (
            f"{where}: its comment does not name {role_name}"
        )

        name = config["name"]["function"]
        assert name["type"] == "guid", where
        assert list(name["parameters"].values())[-1] == role_id, f"{where}: guid(...) names another role"
        if "scope" not in config:
            # A subscription-scoped module (Reader for Resource Graph): its deployment's scope is the subscription.
            assert template(relative).get("target_scope") == "subscription" or "subscription" in scope_types, where
            assert scope_types == frozenset({"subscription"}), f"{where}: {role_name} needs a resource scope"
            assert config["properties"]["principalType"] == "ServicePrincipal", where
            continue
        scope = config["scope"]
        assert text(name["parameters"]["base_string"]) == text(
            {"operator": {"type": "property_accessor", "operands": {"operand_1": scope, "operand_2": "id"}}}
        ), f"{where}: the name's guid is not seeded with its scope"
        scope_type = template(relative)["resources"][scope]["type"]
        assert scope_type in scope_types, f"{where}: {role_name} scoped to {scope_type}"
        assert config["properties"]["principalType"] == "ServicePrincipal", where
    assert not template("main.bicep").get("resources", {}).keys() - {"rg"}, "main.bicep grants nothing itself"


def test_the_app_gets_its_vault_roles_before_the_function_app_starts() -> None:
    """The vault roles sit in a module needing only the principal id, and the Function App depends on it."""
    main = template("main.bicep")
    access = main["modules"]["vaultAccess"]
    assert access["detail"]["path"] == "app/vault-access.bicep"
    assert "function" not in text(body(access)["params"])
    assert "vaultAccess" in body(main["modules"]["function"])["dependsOn"]
    assert "secretsUser" in template("app/vault-access.bicep")["resources"]
    assert not list(
        entry for entry in resources("Microsoft.Authorization/roleAssignments") if entry[0] == "app/vault.bicep"
    ), "no role on the vault waits for the Function App"


def test_a_vault_listed_only_for_secrets_gets_no_certificate_role_topic_or_subscription() -> None:
    """`certificates: false` leaves out Certificates Officer, the system topic, the subscription and RENEWAL_VAULTS."""
    main = template("main.bicep")
    certificate_vaults = variable("main.bicep", "certificateVaults")["function"]
    assert certificate_vaults["type"] == "filter"
    assert "certificates" in text(certificate_vaults)
    assert main["modules"]["vaultEvents"]["config"]["loop_type"]["detail"]["array_name"] == "certificateVaults"
    assert variable("main.bicep", "vaultSettings")["loop_type"]["detail"]["array_name"] == "certificateVaults"
    assert "certificates" in text(body(main["modules"]["vaultAccess"])["params"]["manageCertificates"])
    officer = template("app/vault-access.bicep")["resources"]["certificatesOfficer"]
    assert condition(officer) == "manageCertificates"


# --- app settings ---------------------------------------------------------------------------------------------


def test_every_setting_the_templates_set_is_read_by_the_app_or_named_as_the_platforms() -> None:
    """No app setting in the templates that renewal/ does not read, unless it is one of the platform's own."""
    settings = template_settings()
    assert "RENEWAL_VAULTS" in settings
    unread = {
        name: origin for name, origin in settings.items() if name not in app_strings() and name not in PLATFORM_SETTINGS
    }
    assert not unread, f"set but read by nothing: {unread}"
    stale = {name for name in PLATFORM_SETTINGS if name not in settings}
    assert not stale, f"PLATFORM_SETTINGS lists settings the templates no longer set: {stale}"
    assert not FLEX_REFUSED_SETTINGS & settings.keys()


def test_the_settings_the_templates_set_are_all_the_app_needs_to_start() -> None:
    """With only the settings a default deployment sets, renewal/settings.py accepts them and the journal connects."""
    from renewal.settings import Settings
    from renewal.shells.journal import table_client_from_environ

    main = template("main.bicep")["parameters"]
    values = {
        "RENEWAL_VAULTS": "kv-web=https://kv-web.vault.azure.net",
        "RENEWAL_CA_PROFILES": "{}",
        "RENEWAL_WEBHOOKS": "{}",
        "RENEWAL_SWEEP_SCHEDULE": main["sweepSchedule"]["default"],
        "RENEWAL_JOURNAL_TABLE": main["journalTableName"]["default"],
        "RENEWAL_WORK_QUEUE": main["workQueueName"]["default"],
        "RENEWAL_SWEEP_FANOUT": main["sweepFanout"]["default"],
        "AzureWebJobsStorage__accountName": "strenewalexample",
        "AzureWebJobsStorage__blobServiceUri": "https://strenewalexample.blob.core.windows.net/",
        "AzureWebJobsStorage__queueServiceUri": "https://strenewalexample.queue.core.windows.net/",
        "AzureWebJobsStorage__tableServiceUri": "https://strenewalexample.table.core.windows.net/",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000002",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=00000000-0000-0000-0000-000000000001;Authorization=AAD",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    }
    # Settings that a default deployment leaves out (empty defaultCaProfile, no outcome topic, no targets).
    optional = {"RENEWAL_DEFAULT_CA_PROFILE", "RENEWAL_OUTCOME_TOPIC_ENDPOINT", "RENEWAL_TARGETS"}
    assert set(values) | optional == set(template_settings()), "the example environment no longer matches the templates"
    settings = Settings.from_environ(values)
    assert list(settings.vaults) == ["kv-web"]
    table = table_client_from_environ(values, settings.journal_table)
    assert table.url.startswith("https://strenewalexample.table.core.windows.net")
    from renewal.flow.fanout import FanoutOptions
    from renewal.shells.queue import queue_client_from_environ

    options = FanoutOptions.from_environ(values)
    assert options.enabled is False
    queue = queue_client_from_environ(values, options.queue_name)
    assert queue.url == "https://strenewalexample.queue.core.windows.net/renewal-work"


def test_the_journal_endpoint_comes_from_the_storage_account() -> None:
    """AzureWebJobsStorage__tableServiceUri is the account's primaryEndpoints.table, so sovereign clouds work."""
    host = variable("app/function.bicep", "hostSettings")
    assert host["AzureWebJobsStorage__tableServiceUri"] == "tableEndpoint"
    function = body(template("main.bicep")["modules"]["function"])["params"]
    assert "tableEndpoint" in text(function["tableEndpoint"])
    outputs = template("app/storage.bicep")["outputs"]
    assert "primaryEndpoints" in text(outputs["tableEndpoint"]["value"])
    assert '"table"' in text(outputs["tableEndpoint"]["value"])


def test_maximum_instance_count_stays_in_flex_consumptions_range() -> None:
    """Flex Consumption accepts a maximum instance count from 40 to 1000 (its documented limits, cited in the file)."""
    for relative in ("app/function.bicep", "main.bicep"):
        limits = decorators(template(relative)["parameters"]["maximumInstanceCount"])
        assert (limits["min_value"], limits["max_value"]) == (40, 1000), relative
    assert "flex-consumption-plan" in (INFRA / "app" / "function.bicep").read_text()


# --- topics, names, network -----------------------------------------------------------------------------------


def test_the_outcome_topic_the_templates_create_accepts_cloudevents() -> None:
    """The app publishes CloudEvents 1.0 (renewal/shells/topic.py); a topic we create takes them, refuses keys."""
    assert "CloudEvent" in (RENEWAL / "shells" / "topic.py").read_text()
    [(relative, symbol, topic)] = list(resources("Microsoft.EventGrid/topics", created=True))
    properties = body(topic)["properties"]
    assert properties["inputSchema"] == "CloudEventSchemaV1_0", f"{relative}:{symbol}"
    assert properties["disableLocalAuth"] is True


def test_every_name_is_unique_per_azd_environment() -> None:
    """The token (uniqueString of subscription, environment and region) is in every module name of main.bicep and
    in every name vault.bicep and add-vault.bicep create in a vault's shared resource group."""
    token = variable("main.bicep", "token")
    assert "environmentName" in text(token)
    assert "unique_string" in text(token)
    for symbol, module in template("main.bicep")["modules"].items():
        assert "${token}" in body(module)["name"], f"main.bicep module {symbol}"
    for relative, token_name in (("app/vault.bicep", "nameToken"), ("add-vault.bicep", "nameToken")):
        document = template(relative)
        assert decorators(document["parameters"][token_name]).get("min_length") == 1, relative
        for kind in ("resources", "modules"):
            for symbol, element in document.get(kind, {}).items():
                if element.get("existing"):
                    continue
                name = resolved(relative, body(element)["name"])
                assert token_name in text(name), f"{relative} {symbol}: {name}"
    for symbol, element in template("app/alerts.bicep")["resources"].items():
        assert "namePrefix" in text(body(element)["name"]), f"alerts.bicep {symbol}"


def test_the_app_subnet_reaches_storage_and_key_vault_through_service_endpoints() -> None:
    """The subnet is delegated to Microsoft.App/environments and has the Storage and KeyVault service endpoints."""
    [subnet] = body(template("app/network.bicep")["resources"]["vnet"])["properties"]["subnets"]
    properties = subnet["properties"]
    assert {e["service"] for e in properties["serviceEndpoints"]} >= {"Microsoft.Storage", "Microsoft.KeyVault"}
    assert [d["properties"]["serviceName"] for d in properties["delegations"]] == ["Microsoft.App/environments"]
    main = template("main.bicep")["parameters"]
    assert main["existingSubnetId"]["default"] == ""
    assert {"vnetAddressPrefix", "appSubnetPrefix"} <= main.keys()


# --- azd and CI -----------------------------------------------------------------------------------------------


def _version(text_value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text_value.split("."))


def test_azure_yaml_requires_an_azd_that_keeps_the_vaults_resource_groups() -> None:
    """azure.yaml requires azd >= 1.24.1 (older versions deleted the vaults' resource groups on `azd down`)."""
    content = (ROOT / "azure.yaml").read_text()
    match = re.search(r"^requiredVersions:\n(?:\s+#.*\n)*\s+azd:\s*['\"]>=\s*([0-9.]+)['\"]", content, re.MULTILINE)
    assert match, "azure.yaml has no requiredVersions.azd"
    assert _version(match.group(1)) >= (1, 24, 1)


def _parameter_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (INFRA / "main.parameters.json").read_text()))


def test_subscribe_vault_events_is_an_output_so_azd_down_forgets_it() -> None:
    """SUBSCRIBE_VAULT_EVENTS is a main.bicep output (azd removes outputs on `azd down`); no other output shadows
    an input variable, which `azd down` would silently drop."""
    outputs = set(template("main.bicep")["outputs"])
    assert "SUBSCRIBE_VAULT_EVENTS" in outputs
    assert template("main.bicep")["outputs"]["SUBSCRIBE_VAULT_EVENTS"]["value"] == "subscribeVaultEvents"
    assert outputs & _parameter_variables() == {"SUBSCRIBE_VAULT_EVENTS"}


def test_ci_passes_every_parameter_variable_and_tests_before_it_deploys() -> None:
    """deploy.yml sets every variable main.parameters.json reads (CI starts with an empty azd environment), except
    the derived SUBSCRIBE_VAULT_EVENTS; `make test` runs in a job the deploy job needs; no azure/login step."""
    workflow = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    deploy = workflow[workflow.index("\n  deploy:") :]
    passed = set(re.findall(r"^\s+([A-Z_][A-Z0-9_]*): \$\{\{ vars\.\1 \}\}$", deploy, re.MULTILINE))
    missing = _parameter_variables() - {"SUBSCRIBE_VAULT_EVENTS"} - passed
    assert not missing, f"deploy.yml does not pass {sorted(missing)}"
    assert "SUBSCRIBE_VAULT_EVENTS" not in workflow.replace("SUBSCRIBE_VAULT_EVENTS is not here", "")
    assert re.search(r"^    needs: test$", deploy, re.MULTILINE)
    test_job = workflow[workflow.index("\n  test:") : workflow.index("\n  deploy:")]
    assert re.search(r"run: make test\b", test_job)
    assert not re.search(r"uses:\s*azure/login", workflow, re.IGNORECASE)


def _hook(platform: str) -> str:
    content = (ROOT / "azure.yaml").read_text()
    match = re.search(
        rf"^    {platform}:\n      shell: \S+\n      run: \|\n((?:        .*\n|\n)+)", content, re.MULTILINE
    )
    assert match, f"no {platform} postdeploy hook"
    return textwrap.dedent(match.group(1))


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("", ["env get-values", "env set SUBSCRIBE_VAULT_EVENTS true", "provision --no-prompt"]),
        (
            'SUBSCRIBE_VAULT_EVENTS="false"\n',
            ["env get-values", "env set SUBSCRIBE_VAULT_EVENTS true", "provision --no-prompt"],
        ),
        ('AZURE_ENV_NAME="prod"\nSUBSCRIBE_VAULT_EVENTS="true"\n', ["env get-values"]),
    ],
)
def test_the_posix_postdeploy_hook_provisions_once_more_only_until_subscribed(
    tmp_path: Path, stored: str, expected: list[str]
) -> None:
    """With a stand-in `azd`: a missing or false SUBSCRIBE_VAULT_EVENTS leads to set and provision, true to nothing."""
    calls = tmp_path / "calls"
    azd = tmp_path / "azd"
    azd.write_text(
        f'#!/bin/sh\necho "$*" >> "{calls}"\nif [ "$1 $2" = "env get-values" ]; then printf \'%s\' \'{stored}\'; fi\n'
    )
    azd.chmod(azd.stat().st_mode | stat.S_IXUSR)
    environment = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", _hook("posix")], env=environment, check=True, timeout=30)  # noqa: S603, S607
    assert calls.read_text().splitlines() == expected


def test_the_windows_postdeploy_hook_never_reads_a_single_missing_key() -> None:
    """The pwsh hook reads `azd env get-values` (never `get-value`, which fails on a missing key and writes to stderr,
    an error under Windows PowerShell 5.1) and redirects no native stderr."""
    hook = _hook("windows")
    assert "azd env get-values" in hook
    assert "get-value " not in hook
    assert "2>" not in hook
    assert "$LASTEXITCODE" in hook


def test_host_json_keeps_the_log_lines_the_alerts_query_out_of_sampling() -> None:
    """Adaptive sampling excludes requests, traces and exceptions; the other host settings stay."""
    host = json.loads((ROOT / "host.json").read_text())
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert {"Request", "Trace", "Exception"} <= set(sampling["excludedTypes"].split(";"))
    assert host["functionTimeout"] == "00:05:00"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
