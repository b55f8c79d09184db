"""End to end: a renewal is pushed to an Application Gateway, verified as served, and its predecessor retired.

Every part speaks its wire protocol on loopback: Key Vault is the emulator over HTTPS with the real SDK, the CA is
the Vault PKI fake (which issued the seed certificate too, so the trust anchor and the serial it revokes match),
ARM is the resource provider fake over HTTPS, the gateway's listener is a TLS server presenting the old leaf until
the test switches it to the new one read from Key Vault, and outcomes reach the Event Grid topic fake. The clock
is the test's: nothing sleeps, and ARM's polling waits go to a recorded sleep.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
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
from renewal.flow.retire import REVOKED_TAG, queue_retirement
from renewal.flow.rollout import RolloutReport, TargetSender, check_rollouts
from renewal.flow.runtime import Runtime, build_runtime
from renewal.flow.sweep import sweep
from renewal.outcome import Delivery, Outcome
from renewal.pure.intake import on_demand_request
from renewal.pure.rollout import Rollout, RolloutState
from renewal.settings import Settings
from renewal.shells.arm import ArmClient
from renewal.shells.journal import OutboxItem
from renewal.targets import ARM_CA_BUNDLE, ARM_ENDPOINT, PICKUP_DEADLINES, arm_client_from_environ, build_target
from renewal.targets.app_gateway import PUSHED_TAG
from renewal.testing import InMemoryJournal
from tests.fakes.arm_targets import ArmTargetsFake
from tests.fakes.eventgrid_topic import FakeTopic
from tests.fakes.loopback import LoopbackServer, Request, Response, json_response
from tests.fakes.tls_switch import ServedCertificate, TlsSwitch
from tests.fakes.vault_pki import FakeVault, RecordedRequest
from tests.rollout.conftest import Clock
from tests.targets.conftest import RecordedSleep, StaticCredential

VAULT = "kv1"
TOKEN = "rollout-e2e-keyvault-token"
ARM_TOKEN = "rollout-e2e-arm-token"
VAULT_TOKEN = "hvs.rollout-e2e-vault-token"
PROFILE = "corp-vault"
SNI = "www.corp.internal"
GATEWAY = (
    "/subscriptions/00000000-0000-0000-0000-0000000000e2/resourceGroups/edge-rg"
    "/providers/Microsoft.Network/applicationGateways/edge"
)
REVOKE_PATH = "/v1/pki/revoke"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultEmulator]:
    """The emulator most tests share (each seeds its own certificate)."""
    with KeyVaultEmulator(state_dir=tmp_path_factory.mktemp("kv"), vaults=[VAULT], tick_interval=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("ca"))


class VaultPkiServer:
    """The Vault PKI fake on loopback, which can answer its next revocation 500 (as a Vault behind a failing
    load balancer does) before answering as Vault."""

    def __init__(self, fake: FakeVault) -> None:
        self.fake = fake
        self.fail_revocations = 0
        self._server = LoopbackServer(self.handle)

    @property
    def url(self) -> str:
        return self._server.url

    def handle(self, request: Request) -> Response:
        if request.path == REVOKE_PATH and self.fail_revocations:
            self.fail_revocations -= 1
            self.fake.requests.append(RecordedRequest(request.method, request.target, {}))
            return json_response(500, {"errors": ["1 error occurred:\n\t* internal error\n\n"]})
        return self.fake.handle(request)

    def revocations_asked(self) -> int:
        """Every revocation request that reached the server, answered or failed."""
        return sum(1 for r in self.fake.requests if r.path == REVOKE_PATH)

    def __enter__(self) -> VaultPkiServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


@dataclass
class Stack:
    """One certificate in Key Vault behind one Application Gateway target, and the app's runtime for it."""

    emulator: KeyVaultEmulator
    clock: Clock
    journal: InMemoryJournal
    runtime: Runtime
    arm_fake: ArmTargetsFake
    arm: ArmClient
    arm_sleep: RecordedSleep
    topic: FakeTopic
    listener: TlsSwitch
    vault_pki: VaultPkiServer
    name: str
    old_version: str
    old_serial: str
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
        """The sweep's rollout phase, then its redelivery of what is due (as the sweep runs them)."""
        report = check_rollouts(self.runtime, [VAULT], spent=lambda: False)
        self.deliver_due()
        return report

    def deliver_due(self) -> tuple[Delivery, ...]:
        """One pass of the outbox over the rows due now."""
        due = self.journal.due_outbox(self.clock().timestamp(), [VAULT])
        return self.runtime.deliverer().send(due)

    def rollout(self) -> Rollout:
        assert self.runtime.rollouts is not None
        row = self.runtime.rollouts.get(VAULT, self.name, "edge")
        assert row is not None
        return row

    def outbox(self, prefix: str) -> list[OutboxItem]:
        return [i for i in self.journal.outbox([VAULT]) if i.endpoint.startswith(prefix)]

    def published(self) -> list[tuple[str, str]]:
        """``(reason, message)`` of every outcome the topic accepted, in order."""
        return [(e["data"]["reason"], e["data"]["message"]) for e in self.topic.events]

    def served(self, version: str) -> ServedCertificate:
        """What a service presents once it picked ``version`` up: that version's leaf and key, from Key Vault."""
        return _served(self.emulator, self.client, self.name, version)

    def version_properties(self, version: str) -> Any:
        return self.client.get_certificate_version(self.name, version).properties

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


def _vault_serial(certificate: x509.Certificate) -> str:
    serial = certificate.serial_number
    return ":".join(f"{b:02x}" for b in serial.to_bytes((serial.bit_length() + 7) // 8, "big"))


def _seed_through_vault_pki(client: Any, name: str, runtime: Runtime) -> tuple[str, str]:
    """Create ``name`` in Key Vault with its leaf signed by the Vault PKI fake; its version and serial."""
    policy = CertificatePolicy(issuer_name="Unknown", subject=f"CN={name}.corp.internal", validity_in_months=12)
    tags = {"renewal-ca": PROFILE}
    operation = client.begin_create_certificate(name, policy, tags=tags).result()
    answer = runtime.adapter(runtime.settings.ca_profiles[PROFILE]).submit(
        SigningRequest(bytes(operation.csr), VAULT, name)
    )
    assert isinstance(answer, Issued)
    leaf = x509.load_pem_x509_certificate(answer.leaf_pem.encode())
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in answer.chain_pem]
    merged = client.merge_certificate(
        name, [c.public_bytes(serialization.Encoding.DER) for c in (leaf, *chain)], tags=tags
    )
    return str(merged.properties.version), _vault_serial(leaf)


@pytest.fixture
def make_stack(shared: KeyVaultEmulator, ca_files: LocalCAFiles, tmp_path: Path) -> Iterator[MakeStack]:
    """Build a ``Stack``: ``revoke`` opts the CA profile in to retiring the superseded certificate; ``due`` moves
    the clock 340 days on after seeding, so the certificate is 25 days from expiry (inside its renewal window);
    ``emulator`` replaces the shared one (a sweep renews every certificate that is due in the vault)."""
    opened: list[Any] = []

    def make(*, revoke: bool, due: bool = False, emulator: KeyVaultEmulator | None = None) -> Stack:
        emulator = emulator or shared
        clock = Clock(datetime.fromtimestamp(emulator.clock(), UTC))
        vault_pki = VaultPkiServer(FakeVault(_signing_ca(ca_files, clock), root_token=VAULT_TOKEN))
        arm_fake = ArmTargetsFake(tmp_path / "arm-tls", token=ARM_TOKEN)
        topic = FakeTopic(emulator.state_dir, token=TOKEN)
        for server in (vault_pki, arm_fake, topic):
            opened.append(server.__enter__())
        name = f"www-{uuid.uuid4().hex[:8]}"
        profile: dict[str, object] = {"adapter": "vault", "url": vault_pki.url, "role": "web"}
        profile["token_setting"] = "VAULT_TOKEN"
        if revoke:
            profile["revoke_superseded"] = True
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
        old_version, old_serial = _seed_through_vault_pki(client, name, seeding)
        if due:
            clock.advance(timedelta(days=340))
        listener = TlsSwitch(_served(emulator, client, name, old_version))
        opened.append(listener.__enter__())
        targets = {"edge": {"kind": "app_gateway", "resource_id": GATEWAY, "probe": f"127.0.0.1:{listener.port}"}}
        targets["edge"]["sni"] = SNI
        settings = Settings.from_environ({**environ, "RENEWAL_TARGETS": json.dumps(targets)})
        arm_fake.seed(_gateway(f"{emulator.url(VAULT)}/secrets/{name}"))
        arm_sleep = RecordedSleep()
        arm = arm_client_from_environ(settings.environ, credential=StaticCredential(ARM_TOKEN), sleep=arm_sleep)
        runtime = build_runtime(settings, clock=clock, journal=journal)
        assert runtime.rollouts is not None
        # build_runtime's own TargetSender builds its ARM client with DefaultAzureCredential and time.sleep;
        # this one pushes through the loopback ARM with a static token and a recorded sleep.
        pushes = TargetSender(
            settings=settings,
            rollouts=runtime.rollouts,
            clock=clock,
            build=lambda config: build_target(config, arm),
        )
        runtime = replace(runtime, senders={**runtime.senders, "target": pushes})
        return Stack(
            emulator, clock, journal, runtime, arm_fake, arm, arm_sleep, topic, listener, vault_pki, name,
            old_version, old_serial,
        )  # fmt: skip

    yield make
    for server in reversed(opened):
        server.__exit__(None, None, None)


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


def _gateway(secret_id: str) -> dict[str, Any]:
    """An Application Gateway v2 whose listener certificate references ``secret_id`` (versionless)."""
    return {
        "id": GATEWAY,
        "name": "edge",
        "type": "Microsoft.Network/applicationGateways",
        "location": "westeurope",
        "tags": {"team": "edge"},
        "properties": {
            "provisioningState": "Succeeded",
            "sslCertificates": [{"name": "www-listener", "properties": {"keyVaultSecretId": secret_id}}],
        },
    }


def _thumbprint(stack: Stack, version: str) -> str:
    return stack.served(version).thumbprint


def test_a_renewal_is_pushed_to_the_gateway_seen_served_and_announced_complete_once(make_stack: MakeStack) -> None:
    """Merge, push (tag the gateway), probe: old leaf (pushed), new leaf (serving), rollout_complete once."""
    stack = make_stack(revoke=False)
    outcome = stack.renew()
    assert (outcome.status, outcome.reason) == ("renewed", "renewed")
    new_version = outcome.new_version
    assert new_version
    assert new_version != stack.old_version

    (push,) = stack.outbox("target:")
    assert (push.endpoint, push.status, push.version) == ("target:edge", "delivered", new_version)
    assert stack.arm_fake.pushes == [("tags", GATEWAY)]
    assert stack.arm_fake.resources[GATEWAY.lower()]["tags"] == {"team": "edge", PUSHED_TAG: new_version}
    arm_requests = [(r.method, r.path) for r in stack.arm_fake.requests]
    assert arm_requests == [("GET", GATEWAY), ("PATCH", GATEWAY)]
    assert stack.arm.requests_sent == 2
    assert stack.arm_sleep.waits == []
    row = stack.rollout()
    assert (row.state, row.version, row.previous_version) == (RolloutState.PUSHED, new_version, stack.old_version)
    assert row.thumbprint == _thumbprint(stack, new_version)
    assert row.deadline == stack.clock() + PICKUP_DEADLINES["app_gateway"]

    report = stack.check()
    assert (report.probed, report.serving, report.announced) == (1, 0, [])
    assert stack.rollout().state is RolloutState.PUSHED
    assert stack.rollout().seen_thumbprint == _thumbprint(stack, stack.old_version)

    stack.listener.switch_to(stack.served(new_version))
    stack.clock.advance(timedelta(minutes=4))
    report = stack.check()
    assert report.serving == 1
    assert report.announced == [f"{VAULT}/{stack.name}/{new_version}: rollout_complete"]
    row = stack.rollout()
    assert row.state is RolloutState.SERVING
    completes = [message for reason, message in stack.published() if reason == "rollout_complete"]
    assert len(completes) == 1
    assert "edge" in completes[0]

    assert stack.check().announced == []
    assert [reason for reason, _ in stack.published()].count("rollout_complete") == 1
    assert stack.listener.server_names == [SNI] * 2
    assert stack.arm.requests_sent == 2

    assert stack.merged_at is not None
    assert row.checked_at is not None
    served_after = row.checked_at - stack.merged_at
    print(
        f"\napp_gateway: Key Vault to served {served_after.total_seconds():.0f} s (test clock), "
        f"{stack.arm.requests_sent} ARM requests per push"
    )
    assert served_after == timedelta(minutes=4)
    stack.assert_nothing_secret_was_kept()


def test_a_gateway_that_never_serves_the_new_version_is_stalled_at_its_deadline_and_announced_once(
    make_stack: MakeStack,
) -> None:
    """The listener keeps the old leaf: pushed until the pick-up deadline, then stalled and rollout_stalled once."""
    stack = make_stack(revoke=False)
    new_version = stack.renew().new_version
    stack.clock.advance(PICKUP_DEADLINES["app_gateway"] - timedelta(seconds=1))
    assert stack.check().announced == []
    assert stack.rollout().state is RolloutState.PUSHED

    stack.clock.advance(timedelta(seconds=1))
    report = stack.check()
    assert report.stalled == 1
    assert report.announced == [f"{VAULT}/{stack.name}/{new_version}: rollout_stalled"]
    assert stack.rollout().state is RolloutState.STALLED
    (stalled,) = [message for reason, message in stack.published() if reason == "rollout_stalled"]
    assert f"edge (serves {_thumbprint(stack, stack.old_version)})" in stalled

    stack.clock.advance(timedelta(hours=1))
    assert stack.check().announced == []
    assert [reason for reason, _ in stack.published()].count("rollout_stalled") == 1
    assert "rollout_complete" not in [reason for reason, _ in stack.published()]


def test_the_superseded_certificate_is_revoked_and_disabled_only_once_the_gateway_serves_the_new_one(
    make_stack: MakeStack,
) -> None:
    """revoke_superseded: nothing revoked while the old leaf is served; once served, exactly the old serial is
    revoked at Vault, the old Key Vault version disabled and tagged, the new one untouched; never twice."""
    stack = make_stack(revoke=True)
    new_version = stack.renew().new_version
    assert new_version
    assert stack.outbox("revoke:") == []
    stack.deliver_due()
    stack.clock.advance(timedelta(minutes=2))
    stack.check()
    assert stack.outbox("revoke:") == []
    assert stack.vault_pki.revocations_asked() == 0
    assert stack.version_properties(stack.old_version).enabled is True

    stack.listener.switch_to(stack.served(new_version))
    stack.clock.advance(timedelta(minutes=2))
    report = stack.check()
    assert report.retirements == 1
    (retirement,) = stack.outbox("revoke:")
    assert (retirement.endpoint, retirement.status) == (f"revoke:{PROFILE}", "delivered")
    assert list(stack.vault_pki.fake.revoked) == [stack.old_serial]
    old = stack.version_properties(stack.old_version)
    assert old.enabled is False
    assert REVOKED_TAG in (old.tags or {})
    new = stack.version_properties(new_version)
    assert new.enabled is True
    assert REVOKED_TAG not in (new.tags or {})
    stack.deliver_due()  # the retirement's own outcome was queued while it was being sent
    (revoked,) = [message for reason, message in stack.published() if reason == "revoked"]
    assert stack.old_version in revoked

    stack.clock.advance(timedelta(hours=1))
    assert stack.check().retirements == 0
    assert stack.vault_pki.revocations_asked() == 1
    stack.assert_nothing_secret_was_kept()


def test_a_retirement_that_reaches_the_outbox_before_the_gateway_serves_revokes_nothing(make_stack: MakeStack) -> None:
    """A revoke row delivered early (a stray or replayed row) waits while the gateway serves the old leaf, even
    past the pick-up deadline; the probe that sees the new leaf lets it through."""
    stack = make_stack(revoke=True)
    new_version = stack.renew().new_version
    assert new_version
    early = queue_retirement(
        vault_name=VAULT,
        vault_url=stack.runtime.settings.vaults[VAULT].url,
        certificate_name=stack.name,
        new_version=new_version,
        previous_version=stack.old_version,
        ca_profile=PROFILE,
        targets=("edge",),
        due=stack.clock(),
    )
    stack.journal.add_outbox([early])
    (waited,) = [d for d in stack.deliver_due() if d.endpoint.startswith("revoke:")]
    assert (waited.delivered, waited.permanent) == (False, False)
    assert "not yet seen served" in (waited.error or "")

    stack.clock.advance(timedelta(hours=2))
    stack.check()
    assert stack.rollout().state is RolloutState.STALLED
    stack.deliver_due()
    assert stack.vault_pki.revocations_asked() == 0
    assert stack.version_properties(stack.old_version).enabled is True

    stack.listener.switch_to(stack.served(new_version))
    stack.check()
    assert list(stack.vault_pki.fake.revoked) == [stack.old_serial]
    assert stack.version_properties(stack.old_version).enabled is False


def test_a_revocation_the_ca_fails_is_retried_by_the_outbox_and_done_later(make_stack: MakeStack) -> None:
    """Vault answers the revocation 500 once: the row stays pending with a later attempt, nothing is disabled;
    at that attempt the old serial is revoked and its version disabled."""
    stack = make_stack(revoke=True)
    new_version = stack.renew().new_version
    assert new_version
    stack.listener.switch_to(stack.served(new_version))
    stack.vault_pki.fail_revocations = 1
    stack.clock.advance(timedelta(minutes=1))
    stack.check()

    (retirement,) = stack.outbox("revoke:")
    assert (retirement.status, retirement.attempts) == ("pending", 1)
    assert retirement.next_attempt_at > stack.clock().timestamp()
    assert stack.vault_pki.fake.revoked == {}
    assert stack.version_properties(stack.old_version).enabled is True
    assert stack.deliver_due() == ()

    stack.clock.now = datetime.fromtimestamp(retirement.next_attempt_at, UTC)
    stack.deliver_due()
    (retirement,) = stack.outbox("revoke:")
    assert retirement.status == "delivered"
    assert list(stack.vault_pki.fake.revoked) == [stack.old_serial]
    assert stack.vault_pki.revocations_asked() == 2
    assert stack.version_properties(stack.old_version).enabled is False


def test_a_push_arm_refuses_is_dead_lettered_at_once_announced_as_a_failure_and_nothing_is_revoked(
    make_stack: MakeStack,
) -> None:
    """403 AuthorizationFailed on the gateway: the target row is dead after one attempt, naming the role, a
    delivery_dead_lettered outcome is published, no rollout row is written and the old certificate stays valid."""
    stack = make_stack(revoke=True)
    stack.arm_fake.forbid(GATEWAY)
    outcome = stack.renew()
    assert outcome.status == "renewed"

    (push,) = stack.outbox("target:")
    assert (push.status, push.attempts) == ("dead", 1)
    assert "Network Contributor" in (push.last_error or "")
    assert [r.method for r in stack.arm_fake.requests] == ["GET"]
    assert stack.arm_fake.pushes == []
    assert stack.runtime.rollouts is not None
    assert stack.runtime.rollouts.get(VAULT, stack.name, "edge") is None

    stack.clock.advance(timedelta(hours=1))
    stack.check()
    (dead,) = [message for reason, message in stack.published() if reason == "delivery_dead_lettered"]
    assert "target:edge" in dead
    assert ARM_TOKEN not in dead
    assert stack.outbox("revoke:") == []
    assert stack.vault_pki.revocations_asked() == 0
    assert stack.version_properties(stack.old_version).enabled is True
    stack.assert_nothing_secret_was_kept()


def test_the_sweep_alone_renews_pushes_verifies_and_retires(make_stack: MakeStack, tmp_path: Path) -> None:
    """Nothing but sweeps: the first renews the due certificate and pushes it; one after the gateway switched sees
    it served, announces the rollout complete and retires the old certificate; the next publishes that."""
    with KeyVaultEmulator(state_dir=tmp_path / "kv", vaults=[VAULT], tick_interval=None) as own:
        _sweep_alone(make_stack(revoke=True, due=True, emulator=own))


def _sweep_alone(stack: Stack) -> None:
    first = sweep(stack.runtime)
    (renewal,) = [o for o in first.started if o.certificate_name == stack.name]
    assert (renewal.status, renewal.reason) == ("renewed", "renewed")
    assert renewal.new_version
    assert stack.rollout().state is RolloutState.PUSHED
    assert stack.arm_fake.pushes == [("tags", GATEWAY)]

    stack.clock.advance(timedelta(minutes=5))
    assert sweep(stack.runtime).rollouts_probed == 1
    assert stack.rollout().state is RolloutState.PUSHED

    stack.listener.switch_to(stack.served(renewal.new_version))
    stack.clock.advance(timedelta(minutes=5))
    third = sweep(stack.runtime)
    assert third.rollouts_probed == 1
    assert stack.rollout().state is RolloutState.SERVING
    assert list(stack.vault_pki.fake.revoked) == [stack.old_serial]
    assert stack.version_properties(stack.old_version).enabled is False

    stack.clock.advance(timedelta(minutes=5))
    assert sweep(stack.runtime).rollouts_probed == 0
    reasons = [reason for reason, _ in stack.published()]
    assert [r for r in reasons if r in ("renewed", "rollout_complete", "revoked")] == [
        "renewed",
        "rollout_complete",
        "revoked",
    ]
    assert stack.vault_pki.revocations_asked() == 1
    assert stack.arm.requests_sent == 2
    stack.assert_nothing_secret_was_kept()
