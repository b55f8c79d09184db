"""Retiring the superseded certificate, against the Key Vault emulator with the real SDK: revoked at the CA only
once every target is seen serving the new version, then its version disabled and tagged; failures retried and,
in the end, loud."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles
from devstack.seed import seed_certificate
from renewal.ca import CAProfile
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from renewal.flow.retire import REVOKED_TAG, RevokeSender, queue_retirement, retires
from renewal.flow.rollout import TargetSender, check_rollouts, queue_rollout
from renewal.flow.runtime import Runtime, build_runtime
from renewal.pure.rollout import RolloutState
from renewal.settings import Settings
from renewal.shells.journal import Journal, OutboxItem, RenewalJournal, table_client_from_environ
from renewal.shells.rollouts import InMemoryRollouts, RolloutStore, TableRollouts
from renewal.targets import ProbeEndpoint, PushResult, TargetConfig
from renewal.testing import InMemoryJournal
from tests.fakes.tls_switch import TlsSwitch, served_certificate
from tests.rollout.conftest import Clock, FakeCA, NonRevokingCA, a_rollout

VAULT = "kv1"
TOKEN = "retire-token"


@dataclass
class Vault:
    """A certificate with two versions in the emulator, the runtime, and the rows a retirement reads."""

    runtime: Runtime
    clock: Clock
    journal: RenewalJournal
    rollouts: RolloutStore
    ca: FakeCA
    client: Any
    name: str
    old: str
    new: str
    old_leaf: x509.Certificate
    url: str

    def item(self, *, targets: tuple[str, ...] = ("edge",), due: datetime | None = None) -> OutboxItem:
        return queue_retirement(
            vault_name=VAULT,
            vault_url=self.url,
            certificate_name=self.name,
            new_version=self.new,
            previous_version=self.old,
            ca_profile="corp",
            targets=targets,
            due=due or self.clock(),
        )

    def sender(self) -> RevokeSender:
        return RevokeSender(self.runtime, self.rollouts)

    def rollout(self, state: RolloutState) -> None:
        row = replace(
            a_rollout(certificate_name=self.name, version=self.new, now=self.clock()),
            previous_version=self.old,
            state=state,
        )
        stored = self.rollouts.get(VAULT, self.name, "edge")
        assert self.rollouts.save(replace(row, etag=stored.etag if stored else None)) is not None

    def old_version(self) -> Any:
        return self.client.get_certificate_version(self.name, self.old).properties

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(i.payload)["data"] for i in self.journal.outbox([VAULT]) if i.endpoint == "eventgrid-topic"]


def settings_for(emulator: KeyVaultEmulator, adapter: str = "tests.rollout.conftest:FakeCA") -> Settings:
    return Settings.from_environ(
        {
            "RENEWAL_VAULTS": f"{VAULT}={emulator.url(VAULT)}",
            "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
            "RENEWAL_KEYVAULT_STATIC_TOKEN": TOKEN,
            "RENEWAL_CA_PROFILES": json.dumps(
                {"corp": {"adapter": adapter, "revoke_superseded": True, "retire_grace_hours": 6}}
            ),
            "RENEWAL_OUTCOME_TOPIC_ENDPOINT": "https://127.0.0.1:2/api/events",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        }
    )


def latest_version(client: Any, name: str) -> str:
    return str(client.get_certificate(name).properties.version)


@pytest.fixture
def vault(emulator: KeyVaultEmulator, ca_files: LocalCAFiles) -> Vault:
    clock = Clock(datetime.fromtimestamp(emulator.clock(), UTC))
    client = emulator.certificate_client(VAULT)
    name = f"web-{uuid.uuid4().hex[:8]}"
    dns_names, not_before = [f"{name}.corp.internal"], clock.now - timedelta(days=300)
    old_leaf = seed_certificate(
        client,
        name,
        ca_files,
        dns_names=dns_names,
        not_before=not_before,
        not_after=clock.now + timedelta(days=20),
        tags={"owner": "web-team"},
    )
    old = latest_version(client, name)
    seed_certificate(
        client, name, ca_files, dns_names=dns_names, not_before=not_before, not_after=clock.now + timedelta(days=365)
    )
    new = latest_version(client, name)
    assert old != new
    journal = InMemoryJournal(clock=lambda: clock().timestamp())
    ca = FakeCA()
    runtime = build_runtime(settings_for(emulator), clock=clock, journal=journal, adapters={"corp": ca})
    return Vault(
        runtime, clock, journal, InMemoryRollouts(journal), ca, client, name, old, new, old_leaf, emulator.url(VAULT)
    )


def test_once_every_target_serves_the_new_version_the_old_one_is_revoked_disabled_and_tagged(vault: Vault) -> None:
    """Revoked at the CA (its own PEM), then its Key Vault version disabled with renewal-revoked, other tags kept."""
    vault.rollout(RolloutState.SERVING)
    delivery = vault.sender().send(vault.item())
    assert delivery.delivered, delivery.error
    (revoked,) = vault.ca.revoked
    assert x509.load_pem_x509_certificate(revoked.encode()) == vault.old_leaf
    old = vault.old_version()
    assert old.enabled is False
    assert old.tags == {"owner": "web-team", REVOKED_TAG: vault.clock().isoformat(timespec="seconds")}
    assert vault.client.get_certificate_version(vault.name, vault.new).properties.enabled is True
    (event,) = vault.events()
    assert (event["status"], event["reason"], event["previous_version"]) == ("renewed", "revoked", vault.old)


@pytest.mark.parametrize("state", [RolloutState.PUSHED, RolloutState.STALLED, RolloutState.UNVERIFIED])
def test_nothing_is_revoked_before_every_target_is_seen_serving_the_new_version(
    vault: Vault, state: RolloutState
) -> None:
    """A retirement that arrives early waits (retryable, not dead-lettered); the CA and the vault are untouched."""
    vault.rollout(state)
    delivery = vault.sender().send(vault.item())
    assert (delivery.delivered, delivery.permanent) == (False, False)
    assert vault.ca.revoked == []
    assert vault.old_version().enabled is True


def test_a_retirement_for_targets_with_no_rollout_row_waits(vault: Vault) -> None:
    """No row for the new version at all (never pushed, or superseded): nothing is revoked."""
    assert not vault.sender().send(vault.item()).delivered
    assert vault.ca.revoked == []


def test_a_retirement_without_targets_waits_for_its_grace_period(vault: Vault) -> None:
    """Due later: not sent before then (asks the outbox for the remaining time), revoked once due."""
    item = vault.item(targets=(), due=vault.clock() + timedelta(hours=6))
    early = vault.sender().send(item)
    assert not early.delivered
    assert early.retry_after_seconds == 6 * 3600
    assert vault.ca.revoked == []
    vault.clock.advance(timedelta(hours=6))
    assert vault.sender().send(item).delivered
    assert len(vault.ca.revoked) == 1


def test_a_revocation_that_fails_for_now_is_retried_and_then_done(vault: Vault) -> None:
    """A CA outage: retryable with the CA's pause, the version stays enabled; the next attempt retires it."""
    vault.rollout(RolloutState.SERVING)
    vault.ca.failures.append(RetryableError("the CA answered 503", reason="vault_unavailable", retry_after=120))
    first = vault.sender().send(vault.item())
    assert (first.delivered, first.permanent, first.retry_after_seconds) == (False, False, 120)
    assert vault.old_version().enabled is True
    assert vault.events() == []
    assert vault.sender().send(vault.item()).delivered
    assert vault.old_version().enabled is False


def test_a_revocation_the_ca_refuses_ends_loud(vault: Vault) -> None:
    """A permanent refusal: dead-lettered at once, a revocation_failed outcome, the old version left enabled."""
    vault.rollout(RolloutState.SERVING)
    vault.ca.failures.append(PermanentError("the CA does not know this serial", reason="vault_rejected"))
    delivery = vault.sender().send(vault.item())
    assert delivery.permanent
    assert not delivery.delivered
    (event,) = vault.events()
    assert (event["status"], event["reason"]) == ("failed", "revocation_failed")
    assert "stays valid" in event["message"]
    assert vault.old_version().enabled is True


def test_a_revocation_still_failing_at_the_maximum_age_ends_loud(vault: Vault) -> None:
    """Retryable failures past the outbox's maximum age are announced as revocation_failed too."""
    vault.rollout(RolloutState.SERVING)
    item = vault.item()
    vault.clock.advance(timedelta(hours=vault.runtime.settings.webhook_max_age_hours))
    vault.ca.failures.append(RetryableError("the CA is down", reason="vault_unreachable"))
    assert not vault.sender().send(item).delivered
    assert [event["reason"] for event in vault.events()] == ["revocation_failed"]


def test_a_retirement_resumed_after_the_revocation_only_disables_the_version(vault: Vault) -> None:
    """A crash after the CA revoked but before the vault was updated: the version tagged revoked is not revoked
    again, only disabled."""
    vault.rollout(RolloutState.SERVING)
    vault.client.update_certificate_properties(
        vault.name, vault.old, tags={"owner": "web-team", REVOKED_TAG: "2027-01-01T00:00:00+00:00"}
    )
    assert vault.sender().send(vault.item()).delivered
    assert vault.ca.revoked == []
    assert vault.old_version().enabled is False


def test_a_profile_whose_adapter_cannot_revoke_may_not_opt_in(emulator: KeyVaultEmulator) -> None:
    """revoke_superseded with an adapter without revocation (AD CS, EST) is a configuration error in plain words."""
    settings = settings_for(emulator, adapter="tests.rollout.conftest:NonRevokingCA")
    runtime = build_runtime(settings, journal=InMemoryJournal(), adapters={"corp": NonRevokingCA()})
    with pytest.raises(ConfigurationError, match="cannot revoke certificates"):
        retires(runtime, "corp")


def test_retirement_options_are_checked_like_any_profile_option(emulator: KeyVaultEmulator) -> None:
    """A grace period that is not a number names the option, as every option error does."""
    from renewal.ca._options import retirement_options

    profile = CAProfile("corp", "vault", {"retire_grace_hours": "soon"})
    with pytest.raises(ConfigurationError, match="option retire_grace_hours must be a number"):
        retirement_options(profile, {}, revokes=True)
    assert retirement_options(CAProfile("corp", "vault", {}), {}, revokes=False).revoke_superseded is False


@pytest.fixture(params=["memory", "table"])
def stored(request: pytest.FixtureRequest, vault: Vault, emulator: KeyVaultEmulator) -> Vault:
    """The vault world with the journal and rollout rows in memory, or in one table of the session's Azurite."""
    if request.param == "memory":
        return vault
    azurite = request.getfixturevalue("azurite")
    environ = {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}
    table = f"t{uuid.uuid4().hex[:16]}"
    journal = Journal(table_client_from_environ(environ, table), clock=lambda: vault.clock().timestamp())
    runtime = build_runtime(settings_for(emulator), clock=vault.clock, journal=journal, adapters={"corp": vault.ca})
    rollouts = TableRollouts(table_client_from_environ(environ, table))
    return replace(vault, runtime=runtime, journal=journal, rollouts=rollouts)


def test_end_to_end_the_old_version_is_retired_only_after_the_endpoint_switches(stored: Vault) -> None:
    """Queue, push, probe the old certificate (no retirement), switch, probe the new one: then, and only then,
    the retirement is queued (with its rollout row, in one transaction), and sending it revokes and disables the
    old version."""
    vault = stored
    old_served, new_served = served_certificate("old.corp.internal"), served_certificate("new.corp.internal")
    with TlsSwitch(old_served) as endpoint:
        config = TargetConfig(
            "edge",
            "app_gateway",
            "/subscriptions/0/resourceGroups/n/providers/Microsoft.Network/applicationGateways/edge",
            ProbeEndpoint("127.0.0.1", endpoint.port, sni="www.corp.internal"),
            None,
            None,
        )

        class Gateway:
            name, kind, pickup_deadline = "edge", "app_gateway", timedelta(minutes=15)

            def push(self, new_version: object) -> PushResult:
                return PushResult.PUSHED

        items = queue_rollout(
            vault.runtime,
            vault_name=VAULT,
            vault_url=vault.url,
            certificate_name=vault.name,
            new_version=vault.new,
            thumbprint=new_served.thumbprint,
            previous_version=vault.old,
            tags={"renewal-ca": "corp"},
            now=vault.clock(),
            configs=(config,),
        )
        sender = TargetSender(
            settings=vault.runtime.settings,
            rollouts=vault.rollouts,
            clock=vault.clock,
            build=lambda _: Gateway(),
            configs=(config,),
        )
        assert all(sender.send(item).delivered for item in items)

        def sweep() -> Any:
            return check_rollouts(vault.runtime, [VAULT], spent=lambda: False, rollouts=vault.rollouts)

        def revocations() -> list[OutboxItem]:
            return [i for i in vault.journal.outbox([VAULT]) if i.endpoint == "revoke:corp"]

        sweep()
        assert revocations() == []
        vault.clock.advance(timedelta(minutes=4))
        endpoint.switch_to(new_served)
        assert sweep().retirements == 1
        (item,) = revocations()
        assert RevokeSender(vault.runtime, vault.rollouts).send(item).delivered
        assert vault.old_version().enabled is False
        assert len(vault.ca.revoked) == 1
