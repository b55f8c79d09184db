"""End to end, per kind: a renewal is pushed to API Management, App Service and Container Apps and seen served.

The same proof as test_rollout_end_to_end.py gives for the Application Gateway, for the other three kinds: Key
Vault is the emulator over HTTPS with the real SDK, the CA is the Vault PKI fake, ARM is the resource provider fake
over HTTPS holding the kind's resource (referencing the certificate's versionless secret id the way that kind
does), and the service's endpoint is a TLS server presenting the old leaf until the test switches it to the new
one read from Key Vault. The runtime gets its ARM client through ``build_runtime(..., arm=...)``: a static token and
a recorded sleep, so nothing sleeps and the clock is the test's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles
from renewal.pure.rollout import RolloutState
from renewal.targets import PICKUP_DEADLINES
from tests.integration.rollout_stack import SNI, VAULT, RolloutStack, stand_up

TARGET = "front"
GROUP = "/subscriptions/00000000-0000-0000-0000-0000000000e3/resourceGroups/apps-rg/providers"
APIM = f"{GROUP}/Microsoft.ApiManagement/service/corp-apim"
WEB_CERTIFICATE = f"{GROUP}/Microsoft.Web/certificates/www-cert"
ENVIRONMENT_CERTIFICATE = f"{GROUP}/Microsoft.App/managedEnvironments/corp-env/certificates/www-cert"
KEY_VAULT_RESOURCE = f"{GROUP}/Microsoft.KeyVault/vaults/{VAULT}"


@dataclass(frozen=True)
class Kind:
    """One kind of target as the test drives it.

    Attributes:
        kind: the target kind.
        resource_id: the target's ``resource_id``.
        resources: the ARM resources the fake holds for a certificate, from ``(secret id, certificate name)``.
        requests: the ``(method, path)`` of every ARM request one push makes, in order, by certificate name.
        pushes: what the fake records the push changed, by certificate name.
        waits: the seconds the ARM client waited (through the recorded sleep) during one push.
        served_after: how long after the push the test's service serves the new version.
    """

    kind: str
    resource_id: str
    resources: Callable[[str, str], list[dict[str, Any]]]
    requests: Callable[[str], list[tuple[str, str]]]
    pushes: Callable[[str], list[tuple[str, str]]]
    waits: list[float]
    served_after: timedelta


def _api_management(secret_id: str, name: str) -> list[dict[str, Any]]:
    """A service whose custom proxy hostname and one certificate entity both reference ``secret_id``."""
    service = {
        "id": APIM,
        "name": "corp-apim",
        "type": "Microsoft.ApiManagement/service",
        "location": "westeurope",
        "properties": {
            "provisioningState": "Succeeded",
            "hostnameConfigurations": [
                {"type": "Proxy", "hostName": "corp-apim.azure-api.net", "certificateSource": "BuiltIn"},
                {"type": "Proxy", "hostName": SNI, "certificateSource": "KeyVault", "keyVaultId": secret_id},
            ],
        },
    }
    entity = {
        "id": f"{APIM}/certificates/{name}",
        "name": name,
        "type": "Microsoft.ApiManagement/service/certificates",
        "properties": {"keyVault": {"secretIdentifier": secret_id}, "subject": f"CN={name}.corp.internal"},
    }
    return [service, entity]


def _app_service(secret_id: str, name: str) -> list[dict[str, Any]]:
    """A ``Microsoft.Web/certificates`` resource imported from the vault's secret ``name``."""
    return [
        {
            "id": WEB_CERTIFICATE,
            "name": "www-cert",
            "type": "Microsoft.Web/certificates",
            "location": "westeurope",
            "tags": {"team": "web"},
            "properties": {
                "keyVaultId": KEY_VAULT_RESOURCE,
                "keyVaultSecretName": name,
                "serverFarmId": f"{GROUP}/Microsoft.Web/serverfarms/corp-plan",
                "keyVaultSecretStatus": "Succeeded",
            },
        }
    ]


def _container_apps(secret_id: str, name: str) -> list[dict[str, Any]]:
    """A managed environment certificate imported from ``secret_id`` with the environment's identity."""
    return [
        {
            "id": ENVIRONMENT_CERTIFICATE,
            "name": "www-cert",
            "type": "Microsoft.App/managedEnvironments/certificates",
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "certificateKeyVaultProperties": {"identity": "system", "keyVaultUrl": secret_id},
            },
        }
    ]


KINDS = {
    "api_management": Kind(
        kind="api_management",
        resource_id=APIM,
        resources=_api_management,
        # Read the service and its entities, refreshHostnames (202 + Location, polled twice), refreshSecret.
        requests=lambda name: [
            ("GET", APIM),
            ("GET", f"{APIM}/certificates"),
            ("POST", f"{APIM}/refreshHostnames"),
            ("GET", "/locations/*"),
            ("GET", "/locations/*"),
            ("POST", f"{APIM}/certificates/{name}/refreshSecret"),
        ],
        pushes=lambda name: [("refreshHostnames", APIM), ("refreshSecret", f"{APIM}/certificates/{name}")],
        waits=[3.0, 3.0],
        served_after=timedelta(minutes=5),
    ),
    "app_service": Kind(
        kind="app_service",
        resource_id=WEB_CERTIFICATE,
        resources=_app_service,
        requests=lambda name: [("GET", WEB_CERTIFICATE), ("PUT", WEB_CERTIFICATE)],
        pushes=lambda name: [("put", WEB_CERTIFICATE)],
        waits=[],
        served_after=timedelta(minutes=10),
    ),
    "container_apps": Kind(
        kind="container_apps",
        resource_id=ENVIRONMENT_CERTIFICATE,
        resources=_container_apps,
        # The PUT answers provisioningState Pending: the resource is polled until Succeeded.
        requests=lambda name: [
            ("GET", ENVIRONMENT_CERTIFICATE),
            ("PUT", ENVIRONMENT_CERTIFICATE),
            ("GET", ENVIRONMENT_CERTIFICATE),
            ("GET", ENVIRONMENT_CERTIFICATE),
        ],
        pushes=lambda name: [("put", ENVIRONMENT_CERTIFICATE)],
        # The resource's GET carries no Retry-After: the client waits its default poll interval before each poll.
        waits=[5.0, 5.0],
        served_after=timedelta(minutes=30),
    ),
}


class LiveKeyVault(dict[str, str]):
    """The fake's ``key_vault`` read from the emulator: the current version's thumbprint of a secret, as App
    Service and Container Apps find it when they re-read Key Vault."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self._client = client

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __getitem__(self, name: str) -> str:
        return bytes(self._client.get_certificate(name).properties.x509_thumbprint).hex()


@dataclass
class Stack(RolloutStack):
    """One certificate in Key Vault behind one target of ``kind``, and the app's runtime for it."""

    kind: Kind

    def arm_requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request ARM received, polls of an operation as ``/locations/*``."""
        return [
            (r.method, "/locations/*" if r.path.startswith("/locations/") else r.path) for r in self.arm_fake.requests
        ]


MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(emulator: KeyVaultEmulator, ca_files: LocalCAFiles, tmp_path: Path) -> Iterator[MakeStack]:
    """Build a ``Stack`` for a kind (its name in ``KINDS``); ``curve`` makes the certificate EC on that curve."""
    with ExitStack() as opened:

        def make(kind_name: str, *, curve: str | None = None) -> Stack:
            kind = KINDS[kind_name]
            stack = stand_up(
                Stack,
                opened,
                emulator,
                ca_files,
                tmp_path / "arm-tls",
                target=TARGET,
                target_kind=kind.kind,
                resource_id=kind.resource_id,
                resources=kind.resources,
                curve=curve,
                kind=kind,
            )
            stack.arm_fake.key_vault = LiveKeyVault(stack.client)
            return stack

        yield make


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_a_renewal_is_pushed_to_the_service_seen_served_and_announced_complete_once(
    make_stack: MakeStack, kind_name: str
) -> None:
    """Merge, push (the kind's ARM calls, exactly), probe: old leaf (pushed, the kind's deadline), new leaf
    (serving), rollout_complete once; no ARM request after the push."""
    stack = make_stack(kind_name)
    outcome = stack.renew()
    assert (outcome.status, outcome.reason) == ("renewed", "renewed")
    new_version = outcome.new_version
    assert new_version
    assert new_version != stack.old_version

    (push,) = stack.outbox("target:")
    assert (push.endpoint, push.status, push.version) == (f"target:{TARGET}", "delivered", new_version)
    assert stack.arm_fake.pushes == stack.kind.pushes(stack.name)
    assert stack.arm_requests() == stack.kind.requests(stack.name)
    requests_per_push = stack.arm.requests_sent
    assert requests_per_push == len(stack.kind.requests(stack.name))
    assert stack.arm_sleep.waits == stack.kind.waits
    if kind_name != "api_management":  # these re-read Key Vault on the PUT and answer the thumbprint they hold
        synced = stack.arm_fake.resources[stack.kind.resource_id.lower()]["properties"]["thumbprint"]
        assert synced == stack.served(new_version).thumbprint.upper()
    row = stack.rollout()
    assert row is not None
    assert (row.state, row.version, row.previous_version) == (RolloutState.PUSHED, new_version, stack.old_version)
    assert row.thumbprint == stack.served(new_version).thumbprint
    assert row.deadline == stack.clock() + PICKUP_DEADLINES[kind_name]

    report = stack.check()
    assert (report.probed, report.serving, report.announced) == (1, 0, [])
    row = stack.rollout()
    assert row is not None
    assert row.state is RolloutState.PUSHED
    assert row.seen_thumbprint == stack.served(stack.old_version).thumbprint

    stack.listener.switch_to(stack.served(new_version))
    stack.clock.advance(stack.kind.served_after)
    report = stack.check()
    assert report.serving == 1
    assert report.announced == [f"{VAULT}/{stack.name}/{new_version}: rollout_complete"]
    row = stack.rollout()
    assert row is not None
    assert row.state is RolloutState.SERVING
    (complete,) = stack.published_messages("rollout_complete")
    assert TARGET in complete

    assert stack.check().announced == []
    assert len(stack.published_messages("rollout_complete")) == 1
    assert stack.listener.server_names == [SNI] * 2
    assert stack.arm.requests_sent == requests_per_push

    assert stack.merged_at is not None
    assert row.checked_at is not None
    served_after = row.checked_at - stack.merged_at
    print(
        f"\n{kind_name}: Key Vault to served {served_after.total_seconds():.0f} s (test clock), "
        f"{requests_per_push} ARM requests per push, ARM waits {stack.arm_sleep.waits} s (recorded sleep)"
    )
    assert served_after == stack.kind.served_after
    stack.assert_nothing_secret_was_kept()


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_a_service_that_never_serves_the_new_version_is_stalled_exactly_at_its_kinds_deadline(
    make_stack: MakeStack, kind_name: str
) -> None:
    """The endpoint keeps the old leaf: pushed one second before the kind's pick-up deadline, stalled at it, and
    rollout_stalled announced once, naming the target and what it serves."""
    stack = make_stack(kind_name)
    new_version = stack.renew().new_version
    stack.clock.advance(PICKUP_DEADLINES[kind_name] - timedelta(seconds=1))
    assert stack.check().announced == []
    row = stack.rollout()
    assert row is not None
    assert row.state is RolloutState.PUSHED

    stack.clock.advance(timedelta(seconds=1))
    report = stack.check()
    assert report.stalled == 1
    assert report.announced == [f"{VAULT}/{stack.name}/{new_version}: rollout_stalled"]
    row = stack.rollout()
    assert row is not None
    assert row.state is RolloutState.STALLED
    (stalled,) = stack.published_messages("rollout_stalled")
    assert f"{TARGET} (serves {stack.served(stack.old_version).thumbprint})" in stalled

    stack.clock.advance(timedelta(hours=1))
    assert stack.check().announced == []
    assert len(stack.published_messages("rollout_stalled")) == 1
    assert stack.published_messages("rollout_complete") == []


def test_container_apps_refuse_a_p384_certificate_at_once_and_nothing_is_pushed(make_stack: MakeStack) -> None:
    """An EC P-384 certificate renews in Key Vault, but its push is dead-lettered after one attempt with a message
    naming the curve, before any ARM request; no rollout row is written and the dead letter is announced."""
    stack = make_stack("container_apps", curve="P-384")
    outcome = stack.renew()
    assert (outcome.status, outcome.reason) == ("renewed", "renewed")
    assert stack.client.get_certificate(stack.name).policy.key_curve_name == "P-384"

    (push,) = stack.outbox("target:")
    assert (push.status, push.attempts) == ("dead", 1)
    assert "P-384" in (push.last_error or "")
    assert "RSA or P-256" in (push.last_error or "")
    assert stack.arm_fake.requests == []
    assert stack.arm_fake.pushes == []
    assert stack.arm.requests_sent == 0
    assert stack.rollout() is None

    stack.clock.advance(timedelta(hours=1))
    stack.check()
    (dead,) = stack.published_messages("delivery_dead_lettered")
    assert f"target:{TARGET}" in dead
    assert stack.published_messages("rollout_complete") == stack.published_messages("rollout_stalled") == []
    stack.assert_nothing_secret_was_kept()
