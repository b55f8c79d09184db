"""The stack the end-to-end rollout tests stand up: one certificate in the Key Vault emulator (HTTPS, the real
SDK) signed by the Vault PKI fake, one target on the ARM resource provider fake (HTTPS), the target's endpoint as a
TLS server presenting the old leaf until the test switches it, the Event Grid topic fake, and the app's runtime
over all of them, on the test's clock (ARM's polling waits go to a recorded sleep).

The emulator and the local CA are the module-scoped ``emulator`` and ``ca_files`` fixtures of
``tests/rollout/conftest.py``; ``tests/integration/conftest.py`` makes them available here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from azure.keyvault.certificates import CertificatePolicy
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles
from renewal.ca import Issued, SigningRequest
from renewal.ca.local import LocalCA
from renewal.flow.renew import renew
from renewal.flow.rollout import RolloutReport, check_rollouts
from renewal.flow.runtime import Runtime, build_runtime
from renewal.outcome import Delivery, Outcome
from renewal.pure.intake import on_demand_request
from renewal.pure.rollout import Rollout
from renewal.settings import Settings
from renewal.shells.arm import ArmClient
from renewal.shells.journal import OutboxItem
from renewal.targets import ARM_CA_BUNDLE, ARM_ENDPOINT, arm_client_from_environ
from renewal.testing import InMemoryJournal
from tests.fakes.arm_targets import ArmTargetsFake
from tests.fakes.eventgrid_topic import FakeTopic
from tests.fakes.loopback import LoopbackServer, Request, Response, json_response
from tests.fakes.tls_switch import ServedCertificate, TlsSwitch
from tests.fakes.vault_pki import FakeVault, RecordedRequest
from tests.rollout.conftest import Clock
from tests.targets.conftest import RecordedSleep, StaticCredential

VAULT = "kv1"
TOKEN = "rollout-stack-keyvault-token"
ARM_TOKEN = "rollout-stack-arm-token"
VAULT_TOKEN = "hvs.rollout-stack-vault-token"
PROFILE = "corp-vault"
SNI = "www.corp.internal"
REVOKE_PATH = "/v1/pki/revoke"


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
class RolloutStack:
    """One certificate in Key Vault behind one target, the fakes around it, and the app's runtime for it."""

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
    target: str
    old_version: str
    old_serial: str
    merged_at: datetime | None = field(default=None, kw_only=True)

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

    def rollout(self) -> Rollout | None:
        assert self.runtime.rollouts is not None
        return self.runtime.rollouts.get(VAULT, self.name, self.target)

    def outbox(self, prefix: str) -> list[OutboxItem]:
        return [i for i in self.journal.outbox([VAULT]) if i.endpoint.startswith(prefix)]

    def published(self) -> list[tuple[str, str]]:
        """``(reason, message)`` of every outcome the topic accepted, in order."""
        return [(e["data"]["reason"], e["data"]["message"]) for e in self.topic.events]

    def published_messages(self, reason: str) -> list[str]:
        """The message of every outcome with ``reason`` the topic accepted, in order."""
        return [message for published_reason, message in self.published() if published_reason == reason]

    def served(self, version: str) -> ServedCertificate:
        """What a service presents once it picked ``version`` up: that version's leaf and key, from Key Vault."""
        return served(self.emulator, self.name, version)

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


Stack = TypeVar("Stack", bound=RolloutStack)


def stand_up(
    stack_type: type[Stack],
    opened: ExitStack,
    emulator: KeyVaultEmulator,
    ca_files: LocalCAFiles,
    arm_tls_dir: Path,
    *,
    target: str,
    target_kind: str,
    resource_id: str,
    resources: Callable[[str, str], list[dict[str, Any]]],
    profile_options: Mapping[str, object] | None = None,
    curve: str | None = None,
    age: timedelta = timedelta(0),
    **extra: Any,
) -> Stack:
    """Start the fakes (``opened`` stops them), seed a certificate through the CA profile and build the runtime.

    Args:
        stack_type: the ``RolloutStack`` to build; ``extra`` are its own fields.
        target: the target's name in ``RENEWAL_TARGETS``; ``target_kind`` and ``resource_id`` its settings.
        resources: the ARM resources the fake holds for the certificate, from ``(secret id, certificate name)``.
        profile_options: added to the CA profile's options (as ``revoke_superseded``).
        curve: make the certificate EC on this curve (RSA without).
        age: how far the clock moves on after seeding (into the renewal window, say).
    """
    clock = Clock(datetime.fromtimestamp(emulator.clock(), UTC))
    vault_pki = opened.enter_context(VaultPkiServer(FakeVault(signing_ca(ca_files, clock), root_token=VAULT_TOKEN)))
    arm_fake = opened.enter_context(ArmTargetsFake(arm_tls_dir, token=ARM_TOKEN))
    topic = opened.enter_context(FakeTopic(emulator.state_dir, token=TOKEN))
    name = f"www-{uuid.uuid4().hex[:8]}"
    profile = {"adapter": "vault", "url": vault_pki.url, "role": "web", "token_setting": "VAULT_TOKEN"}
    environ = {
        "RENEWAL_VAULTS": f"{VAULT}={emulator.url(VAULT)}",
        "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
        "RENEWAL_KEYVAULT_STATIC_TOKEN": TOKEN,
        "RENEWAL_CA_PROFILES": json.dumps({PROFILE: {**profile, **(profile_options or {})}}),
        "RENEWAL_OUTCOME_TOPIC_ENDPOINT": topic.endpoint,
        "VAULT_TOKEN": VAULT_TOKEN,
        ARM_ENDPOINT: arm_fake.url,
        ARM_CA_BUNDLE: str(arm_fake.tls.ca_path),
    }
    journal = InMemoryJournal(clock=lambda: clock().timestamp())
    seeding = build_runtime(Settings.from_environ(environ), clock=clock, journal=journal)
    old_version, old_leaf = seed(emulator.certificate_client(VAULT), name, seeding, curve)
    clock.advance(age)
    listener = opened.enter_context(TlsSwitch(served(emulator, name, old_version)))
    settings_of_target = {
        "kind": target_kind,
        "resource_id": resource_id,
        "probe": f"127.0.0.1:{listener.port}",
        "sni": SNI,
    }
    settings = Settings.from_environ({**environ, "RENEWAL_TARGETS": json.dumps({target: settings_of_target})})
    for resource in resources(f"{emulator.url(VAULT)}/secrets/{name}", name):
        arm_fake.seed(resource)
    arm_sleep = RecordedSleep()
    arm = arm_client_from_environ(settings.environ, credential=StaticCredential(ARM_TOKEN), sleep=arm_sleep)
    runtime = build_runtime(settings, clock=clock, journal=journal, arm=arm)
    assert runtime.rollouts is not None
    return stack_type(
        emulator=emulator,
        clock=clock,
        journal=journal,
        runtime=runtime,
        arm_fake=arm_fake,
        arm=arm,
        arm_sleep=arm_sleep,
        topic=topic,
        listener=listener,
        vault_pki=vault_pki,
        name=name,
        target=target,
        old_version=old_version,
        old_serial=vault_serial(old_leaf),
        **extra,
    )


def signing_ca(files: LocalCAFiles, clock: Clock) -> LocalCA:
    """The local CA's issuing certificate and key, as the Vault PKI fake signs with them."""
    key = serialization.load_pem_private_key(files.issuing_key_path.read_bytes(), None)
    return LocalCA(
        ca_certificate=x509.load_pem_x509_certificate(files.issuing_cert_path.read_bytes()),
        ca_key=key,  # type: ignore[arg-type]
        chain=tuple(x509.load_pem_x509_certificates(files.chain_path.read_bytes())),
        clock=clock,
    )


def vault_serial(certificate: x509.Certificate) -> str:
    """The serial number as Vault writes it: colon-separated hex bytes."""
    serial = certificate.serial_number
    return ":".join(f"{b:02x}" for b in serial.to_bytes((serial.bit_length() + 7) // 8, "big"))


def seed(client: Any, name: str, runtime: Runtime, curve: str | None = None) -> tuple[str, x509.Certificate]:
    """Create ``name`` in Key Vault (RSA, or EC on ``curve``) with its leaf signed through the CA profile; its
    version and leaf."""
    key: dict[str, Any] = {"key_type": "EC", "key_curve_name": curve} if curve else {}
    policy = CertificatePolicy(issuer_name="Unknown", subject=f"CN={name}.corp.internal", validity_in_months=12, **key)
    tags = {"renewal-ca": PROFILE}
    operation = client.begin_create_certificate(name, policy, tags=tags).result()
    answer = runtime.adapter(runtime.settings.ca_profiles[PROFILE]).submit(
        SigningRequest(bytes(operation.csr), VAULT, name)
    )
    assert isinstance(answer, Issued)
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in (answer.leaf_pem, *answer.chain_pem)]
    merged = client.merge_certificate(name, [c.public_bytes(serialization.Encoding.DER) for c in chain], tags=tags)
    return str(merged.properties.version), chain[0]


def served(emulator: KeyVaultEmulator, name: str, version: str) -> ServedCertificate:
    """What a service presents once it picked ``version`` of ``name`` up: that version's leaf and key."""
    client: Any = emulator.certificate_client(VAULT)
    der = bytes(client.get_certificate_version(name, version).cer)
    key = emulator.vault(VAULT).private_key_of(name, version)  # type: ignore[attr-defined]
    return ServedCertificate(
        certificate_pem=x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        der=der,
    )
