"""End to end: a renewal is pushed to an Application Gateway, verified as served, and its predecessor retired.

Every part speaks its wire protocol on loopback: Key Vault is the emulator over HTTPS with the real SDK, the CA is
the Vault PKI fake (which issued the seed certificate too, so the trust anchor and the serial it revokes match),
ARM is the resource provider fake over HTTPS, the gateway's listener is a TLS server presenting the old leaf until
the test switches it to the new one read from Key Vault, and outcomes reach the Event Grid topic fake. The clock
is the test's: nothing sleeps, and ARM's polling waits go to a recorded sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles
from renewal.flow.retire import REVOKED_TAG, queue_retirement
from renewal.flow.sweep import sweep
from renewal.pure.rollout import Rollout, RolloutState
from renewal.targets import PICKUP_DEADLINES
from renewal.targets.app_gateway import PUSHED_TAG
from tests.integration.rollout_stack import ARM_TOKEN, PROFILE, SNI, VAULT, RolloutStack, stand_up

GATEWAY = (
    "/subscriptions/00000000-0000-0000-0000-0000000000e2/resourceGroups/edge-rg"
    "/providers/Microsoft.Network/applicationGateways/edge"
)


@dataclass
class Stack(RolloutStack):
    """One certificate in Key Vault behind one Application Gateway target, and the app's runtime for it."""

    def rollout(self) -> Rollout:
        row = super().rollout()
        assert row is not None
        return row


MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(emulator: KeyVaultEmulator, ca_files: LocalCAFiles, tmp_path: Path) -> Iterator[MakeStack]:
    """Build a ``Stack``: ``revoke`` opts the CA profile in to retiring the superseded certificate; ``due`` moves
    the clock 340 days on after seeding, so the certificate is 25 days from expiry (inside its renewal window);
    ``emulator`` replaces the shared one (a sweep renews every certificate that is due in the vault)."""
    shared = emulator
    with ExitStack() as opened:

        def make(*, revoke: bool, due: bool = False, emulator: KeyVaultEmulator | None = None) -> Stack:
            return stand_up(
                Stack,
                opened,
                emulator or shared,
                ca_files,
                tmp_path / "arm-tls",
                target="edge",
                target_kind="app_gateway",
                resource_id=GATEWAY,
                resources=lambda secret_id, name: [_gateway(secret_id)],
                profile_options={"revoke_superseded": True} if revoke else {},
                age=timedelta(days=340) if due else timedelta(0),
            )

        yield make


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
