"""End to end, per kind: a renewal is pushed to API Management, App Service and Container Apps and seen served.

The same proof as test_rollout_end_to_end.py gives for the Application Gateway, for the other three kinds: Key
Vault is the emulator over HTTPS with the real SDK, the CA is the Vault PKI fake, ARM is the resource provider fake
over HTTPS holding the kind's resource (referencing the certificate's versionless secret id the way that kind
does), and the service's endpoint is a TLS server presenting the old leaf until the test switches it to the new
one read from Key Vault. The runtime gets its ARM client through ``build_runtime(..., arm=...)``: a static token and
a recorded sleep, so nothing sleeps and the clock is the test's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.certificates import CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles, create_local_ca
from renewal.ca import Issued, SigningRequest
from renewal.ca.local import LocalCA
from renewal.flow.renew import renew
from renewal.flow.rollout import RolloutReport, check_rollouts
from renewal.flow.runtime import Runtime, build_runtime
from renewal.outcome import Delivery, Outcome
from renewal.pure.intake import on_demand_request
from renewal.pure.rollout import Rollout, RolloutState
from renewal.settings import Settings
from renewal.shells.arm import ArmClient
from renewal.shells.journal import OutboxItem
from renewal.targets import ARM_CA_BUNDLE, ARM_ENDPOINT, PICKUP_DEADLINES, arm_client_from_environ
from renewal.testing import InMemoryJournal
from tests.fakes.arm_targets import ArmTargetsFake
from tests.fakes.eventgrid_topic import FakeTopic
from tests.fakes.loopback import LoopbackServer
from tests.fakes.tls_switch import ServedCertificate, TlsSwitch
from tests.fakes.vault_pki import FakeVault
from tests.rollout.conftest import Clock
from tests.targets.conftest import RecordedSleep, StaticCredential

VAULT = "kv1"
TOKEN = "rollout-kinds-keyvault-token"
ARM_TOKEN = "rollout-kinds-arm-token"
VAULT_TOKEN = "hvs.rollout-kinds-vault-token"
PROFILE = "corp-vault"
SNI = "www.corp.internal"
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


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultEmulator]:
    """The emulator every test shares (each seeds its own certificate)."""
    with KeyVaultEmulator(state_dir=tmp_path_factory.mktemp("kv"), vaults=[VAULT], tick_interval=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("ca"))


@dataclass
class Stack:
    """One certificate in Key Vault behind one target of ``kind``, and the app's runtime for it."""

    kind: Kind
    emulator: KeyVaultEmulator
    clock: Clock
    journal: InMemoryJournal
    runtime: Runtime
    arm_fake: ArmTargetsFake
    arm: ArmClient
    arm_sleep: RecordedSleep
    topic: FakeTopic
    listener: TlsSwitch
    name: str
    old_version: str
    merged_at: datetime | None = None

    @property
    def client(self) -> Any:
        return self.emulator.certificate_client(VAULT)

    def renew(self) -> Outcome:
        """A manual renewal of the certificate (forced: the seed is months from its renewal window)."""
        self.merged_at = self.clock()
        vault = self.runtime.settings.vaults[VAULT]
        return renew(on_demand_request(vault, self.name, trigger="manual", force=True), self.runtime)

    def check(self) -> RolloutReport:
        """The sweep's rollout phase, then its redelivery of what is due."""
        report = check_rollouts(self.runtime, [VAULT], spent=lambda: False)
        self.deliver_due()
        return report

    def deliver_due(self) -> tuple[Delivery, ...]:
        due = self.journal.due_outbox(self.clock().timestamp(), [VAULT])
        return self.runtime.deliverer().send(due)

    def rollout(self) -> Rollout | None:
        assert self.runtime.rollouts is not None
        return self.runtime.rollouts.get(VAULT, self.name, TARGET)

    def outbox(self, prefix: str) -> list[OutboxItem]:
        return [i for i in self.journal.outbox([VAULT]) if i.endpoint.startswith(prefix)]

    def published(self, reason: str) -> list[str]:
        """The message of every outcome with ``reason`` the topic accepted, in order."""
        return [e["data"]["message"] for e in self.topic.events if e["data"]["reason"] == reason]

    def served(self, version: str) -> ServedCertificate:
        """What the service presents once it picked ``version`` up: that version's leaf and key, from Key Vault."""
        return _served(self.emulator, self.client, self.name, version)

    def arm_requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request ARM received, polls of an operation as ``/locations/*``."""
        return [
            (r.method, "/locations/*" if r.path.startswith("/locations/") else r.path) for r in self.arm_fake.requests
        ]

    def assert_nothing_secret_was_kept(self) -> None:
        """No token and no PEM body in the outbox, the rollout rows or what the topic received."""
        assert self.runtime.rollouts is not None
        kept = [
            *(f"{i.payload} {i.last_error}" for i in self.journal.outbox([VAULT])),
            *(repr(row) for row in self.runtime.rollouts.rollouts([VAULT])),
            json.dumps(self.topic.events),
        ]
        for secret in (TOKEN, ARM_TOKEN, VAULT_TOKEN, "BEGIN CERTIFICATE", "PRIVATE KEY"):
            assert not [text for text in kept if secret in text], secret


MakeStack = Callable[..., Stack]


def _signing_ca(files: LocalCAFiles, clock: Clock) -> LocalCA:
    key = serialization.load_pem_private_key(files.issuing_key_path.read_bytes(), None)
    return LocalCA(
        ca_certificate=x509.load_pem_x509_certificate(files.issuing_cert_path.read_bytes()),
        ca_key=key,  # type: ignore[arg-type]
        chain=tuple(x509.load_pem_x509_certificates(files.chain_path.read_bytes())),
        clock=clock,
    )


def _seed(client: Any, name: str, runtime: Runtime, curve: str | None) -> str:
    """Create ``name`` in Key Vault (RSA, or EC on ``curve``) with its leaf signed through the CA profile; its
    version."""
    key: dict[str, Any] = {"key_type": "EC", "key_curve_name": curve} if curve else {}
    policy = CertificatePolicy(issuer_name="Unknown", subject=f"CN={name}.corp.internal", validity_in_months=12, **key)
    tags = {"renewal-ca": PROFILE}
    operation = client.begin_create_certificate(name, policy, tags=tags).result()
    answer = runtime.adapter(runtime.settings.ca_profiles[PROFILE]).submit(
        SigningRequest(bytes(operation.csr), VAULT, name)
    )
    assert isinstance(answer, Issued)
    chain = [answer.leaf_pem, *answer.chain_pem]
    ders = [x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER) for pem in chain]
    return str(client.merge_certificate(name, ders, tags=tags).properties.version)


def _served(emulator: KeyVaultEmulator, client: Any, name: str, version: str) -> ServedCertificate:
    der = bytes(client.get_certificate_version(name, version).cer)
    key = emulator.vault(VAULT).private_key_of(name, version)  # type: ignore[attr-defined]
    return ServedCertificate(
        certificate_pem=x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        der=der,
    )


@pytest.fixture
def make_stack(shared: KeyVaultEmulator, ca_files: LocalCAFiles, tmp_path: Path) -> Iterator[MakeStack]:
    """Build a ``Stack`` for a kind (its name in ``KINDS``); ``curve`` makes the certificate EC on that curve."""
    with ExitStack() as opened:
        yield _stack_maker(shared, ca_files, tmp_path, opened)


def _stack_maker(shared: KeyVaultEmulator, ca_files: LocalCAFiles, tmp_path: Path, opened: ExitStack) -> MakeStack:
    def make(kind_name: str, *, curve: str | None = None) -> Stack:
        kind = KINDS[kind_name]
        emulator = shared
        clock = Clock(datetime.fromtimestamp(emulator.clock(), UTC))
        vault_pki = FakeVault(_signing_ca(ca_files, clock), root_token=VAULT_TOKEN)
        arm_fake = ArmTargetsFake(tmp_path / "arm-tls", token=ARM_TOKEN)
        topic = FakeTopic(emulator.state_dir, token=TOKEN)
        vault_server = LoopbackServer(vault_pki.handle)
        vault_server.start()
        opened.callback(vault_server.stop)
        opened.enter_context(arm_fake)
        opened.enter_context(topic)
        name = f"www-{uuid.uuid4().hex[:8]}"
        profile = {"adapter": "vault", "url": vault_server.url, "role": "web", "token_setting": "VAULT_TOKEN"}
        environ = {
            "RENEWAL_VAULTS": f"{VAULT}={emulator.url(VAULT)}",
            "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
            "RENEWAL_KEYVAULT_STATIC_TOKEN": TOKEN,
            "RENEWAL_CA_PROFILES": json.dumps({PROFILE: profile}),
            "RENEWAL_OUTCOME_TOPIC_ENDPOINT": topic.endpoint,
            "VAULT_TOKEN": VAULT_TOKEN,
            ARM_ENDPOINT: arm_fake.url,
            ARM_CA_BUNDLE: str(arm_fake.tls.ca_path),
        }
        journal = InMemoryJournal(clock=lambda: clock().timestamp())
        seeding = build_runtime(Settings.from_environ(environ), clock=clock, journal=journal)
        client = emulator.certificate_client(VAULT)
        old_version = _seed(client, name, seeding, curve)
        listener = TlsSwitch(_served(emulator, client, name, old_version))
        opened.enter_context(listener)
        target = {"kind": kind.kind, "resource_id": kind.resource_id, "probe": f"127.0.0.1:{listener.port}", "sni": SNI}
        settings = Settings.from_environ({**environ, "RENEWAL_TARGETS": json.dumps({TARGET: target})})
        for resource in kind.resources(f"{emulator.url(VAULT)}/secrets/{name}", name):
            arm_fake.seed(resource)
        arm_fake.key_vault = LiveKeyVault(client)
        arm_sleep = RecordedSleep()
        arm = arm_client_from_environ(settings.environ, credential=StaticCredential(ARM_TOKEN), sleep=arm_sleep)
        runtime = build_runtime(settings, clock=clock, journal=journal, arm=arm)
        assert runtime.rollouts is not None
        return Stack(
            kind, emulator, clock, journal, runtime, arm_fake, arm, arm_sleep, topic, listener, name, old_version
        )

    return make


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
    (complete,) = stack.published("rollout_complete")
    assert TARGET in complete

    assert stack.check().announced == []
    assert len(stack.published("rollout_complete")) == 1
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
    (stalled,) = stack.published("rollout_stalled")
    assert f"{TARGET} (serves {stack.served(stack.old_version).thumbprint})" in stalled

    stack.clock.advance(timedelta(hours=1))
    assert stack.check().announced == []
    assert len(stack.published("rollout_stalled")) == 1
    assert stack.published("rollout_complete") == []


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
    (dead,) = stack.published("delivery_dead_lettered")
    assert f"target:{TARGET}" in dead
    assert stack.published("rollout_complete") == stack.published("rollout_stalled") == []
    stack.assert_nothing_secret_was_kept()
