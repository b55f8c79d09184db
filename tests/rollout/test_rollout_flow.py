"""The rollout flow: targets queued with the merge, pushed through the outbox, verified by the sweep's probes
against loopback TLS endpoints (one that switches certificates, one that never does), announced once each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from renewal.errors import PermanentError, RetryableError, ThrottledError
from renewal.flow.rollout import TargetSender, check_rollouts, queue_rollout, with_rollout_senders
from renewal.flow.runtime import Runtime, build_runtime
from renewal.pure.rollout import RolloutState
from renewal.settings import Settings
from renewal.shells.journal import OutboxItem
from renewal.shells.rollouts import InMemoryRollouts
from renewal.targets import NewVersion, ProbeEndpoint, PushResult, TargetConfig
from renewal.testing import InMemoryJournal
from tests.fakes.tls_switch import ServedCertificate, TlsSwitch
from tests.rollout.conftest import Clock, FakeCA, NonRevokingCA

VAULT_URL = "https://127.0.0.1:1"
TOPIC = "https://127.0.0.1:2/api/events"


@dataclass
class FakeTarget:
    """A deployment target that answers what the test lines up, and records each push."""

    name: str
    kind: str = "app_gateway"
    pickup_deadline: timedelta = timedelta(minutes=15)
    answers: list[PushResult | Exception] = field(default_factory=list)
    pushes: list[NewVersion] = field(default_factory=list)

    def push(self, new_version: NewVersion) -> PushResult:
        self.pushes.append(new_version)
        answer = self.answers.pop(0) if self.answers else PushResult.PUSHED
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class World:
    """The app's runtime with an in-memory journal and rollout rows, a clock the test moves, and fake targets."""

    runtime: Runtime
    clock: Clock
    journal: InMemoryJournal
    rollouts: InMemoryRollouts
    targets: dict[str, FakeTarget]
    configs: tuple[TargetConfig, ...]
    ca: FakeCA

    def sender(self) -> TargetSender:
        return TargetSender(
            settings=self.runtime.settings,
            rollouts=self.rollouts,
            clock=self.clock,
            build=lambda config: self.targets[config.name],
            configs=self.configs,
        )

    def queue(self, *, thumbprint: str, tags: dict[str, str] | None = None, version: str = "v2") -> list[OutboxItem]:
        return queue_rollout(
            self.runtime,
            vault_name="kv1",
            vault_url=VAULT_URL,
            certificate_name="web",
            new_version=version,
            thumbprint=thumbprint,
            previous_version="v1",
            tags={"renewal-ca": "corp", **(tags or {})},
            now=self.clock(),
            configs=self.configs,
        )

    def topic_events(self) -> list[dict[str, Any]]:
        return [json.loads(i.payload)["data"] for i in self.journal.outbox(["kv1"]) if i.endpoint == "eventgrid-topic"]

    def sweep(self) -> Any:
        return check_rollouts(self.runtime, ["kv1"], spent=lambda: False, rollouts=self.rollouts)


def make_world(clock: Clock, configs: tuple[TargetConfig, ...], *, revoke: bool = True) -> World:
    profile: dict[str, object] = {"adapter": "tests.rollout.conftest:FakeCA"}
    if revoke:
        profile |= {"revoke_superseded": True, "retire_grace_hours": 48}
    settings = Settings.from_environ(
        {
            "RENEWAL_VAULTS": f"kv1={VAULT_URL}",
            "RENEWAL_KEYVAULT_STATIC_TOKEN": "rollout-token",
            "RENEWAL_CA_PROFILES": json.dumps({"corp": profile}),
            "RENEWAL_OUTCOME_TOPIC_ENDPOINT": TOPIC,
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        }
    )
    journal = InMemoryJournal(clock=lambda: clock().timestamp())
    ca = FakeCA()
    runtime = build_runtime(settings, clock=clock, journal=journal, adapters={"corp": ca})
    targets = {config.name: FakeTarget(config.name) for config in configs}
    return World(runtime, clock, journal, InMemoryRollouts(journal), targets, configs, ca)


def config(name: str, *, port: int | None = None, tag: tuple[str, str] | None = None) -> TargetConfig:
    probe = ProbeEndpoint("127.0.0.1", port, sni="www.corp.internal") if port is not None else None
    resource = f"/subscriptions/0/resourceGroups/net/providers/Microsoft.Network/applicationGateways/{name}"
    return TargetConfig(name, "app_gateway", resource, probe, tag, None)


@pytest.fixture
def never(old: ServedCertificate) -> Iterator[TlsSwitch]:
    """An endpoint that keeps serving the old certificate whatever happens."""
    with TlsSwitch(old) as server:
        yield server


def push_all(world: World, items: list[OutboxItem]) -> None:
    sender = world.sender()
    for item in items:
        assert sender.send(item).delivered


# --- queue_rollout -----------------------------------------------------------------------------------------


def test_one_outbox_row_is_queued_per_target_that_applies(clock: Clock) -> None:
    """Targets selected by tag: each that applies gets a target:<name> row with a stable id and no secrets."""
    world = make_world(clock, (config("edge", port=1), config("api", tag=("tier", "api"))))
    items = world.queue(thumbprint="AB" * 20)
    assert [item.endpoint for item in items] == ["target:edge"]
    assert [i.webhook_id for i in world.queue(thumbprint="AB" * 20)] == [i.webhook_id for i in items]
    payload = json.loads(items[0].payload)
    assert payload["target"] == "edge"
    assert payload["targets"] == ["edge"]
    assert (payload["version"], payload["thumbprint"], payload["previous_version"]) == ("v2", "ab" * 20, "v1")
    assert "BEGIN" not in items[0].payload
    assert "token" not in items[0].payload
    assert [i.endpoint for i in world.queue(thumbprint="ab" * 20, tags={"tier": "api"})] == [
        "target:edge",
        "target:api",
    ]


def test_without_targets_an_opted_in_profile_queues_the_retirement_after_its_grace_period(clock: Clock) -> None:
    """No target: the retirement is queued with the merge, due retire_grace_hours later (its age counted from then)."""
    world = make_world(clock, ())
    (item,) = world.queue(thumbprint="ab" * 20)
    assert item.endpoint == "revoke:corp"
    due = (clock() + timedelta(hours=48)).timestamp()
    assert item.next_attempt_at == due
    assert item.created_at == due


def test_without_targets_a_profile_that_did_not_opt_in_queues_nothing(clock: Clock) -> None:
    """Retirement is opt-in: by default nothing is revoked."""
    assert make_world(clock, (), revoke=False).queue(thumbprint="ab" * 20) == []


# --- TargetSender --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [PushResult.PUSHED, PushResult.NOTHING_TO_DO])
def test_a_successful_push_records_the_target_as_pushed_with_its_deadline(clock: Clock, answer: PushResult) -> None:
    """Pushed or nothing to do: the rollout row is pushed, due to be served by now plus the pick-up deadline."""
    world = make_world(clock, (config("edge", port=1),))
    world.targets["edge"].answers.append(answer)
    (item,) = world.queue(thumbprint="ab" * 20)
    delivery = world.sender().send(item)
    assert delivery.delivered
    assert not delivery.permanent
    (pushed,) = world.targets["edge"].pushes
    assert (pushed.version, pushed.thumbprint, pushed.secret_id) == ("v2", "ab" * 20, f"{VAULT_URL}/secrets/web")
    row = world.rollouts.get("kv1", "web", "edge")
    assert row is not None
    assert (row.state, row.pushed_at, row.deadline) == (RolloutState.PUSHED, clock(), clock() + timedelta(minutes=15))
    assert (row.probe_host, row.probe_port, row.probe_sni) == ("127.0.0.1", 1, "www.corp.internal")


def test_a_redelivered_push_keeps_the_row_it_already_has(clock: Clock) -> None:
    """The same version pushed again (a crash before the outbox row was saved) does not reset its rollout."""
    world = make_world(clock, (config("edge", port=1),))
    (item,) = world.queue(thumbprint="ab" * 20)
    world.sender().send(item)
    first = world.rollouts.get("kv1", "web", "edge")
    clock.advance(timedelta(minutes=5))
    assert world.sender().send(item).delivered
    assert world.rollouts.get("kv1", "web", "edge") == first


def test_a_retryable_push_failure_asks_for_the_pause_the_target_gave(clock: Clock) -> None:
    """ARM's 429 Retry-After reaches the outbox as retry_after_seconds; no rollout row is written."""
    world = make_world(clock, (config("edge", port=1),))
    world.targets["edge"].answers.append(ThrottledError("ARM throttled the update", retry_after=30))
    (item,) = world.queue(thumbprint="ab" * 20)
    delivery = world.sender().send(item)
    assert (delivery.delivered, delivery.permanent, delivery.retry_after_seconds) == (False, False, 30)
    assert "throttled" in (delivery.error or "")
    assert world.rollouts.get("kv1", "web", "edge") is None


def test_a_permanent_push_failure_is_dead_lettered_at_once(clock: Clock) -> None:
    """A target that cannot rotate (a pinned version): permanent, and the outbox dead-letters and announces it."""
    world = make_world(clock, (config("edge", port=1),))
    world.targets["edge"].answers.append(PermanentError("listener pins version v1", reason="version_pinned"))
    runtime = build_runtime(
        world.runtime.settings, clock=clock, journal=world.journal, senders={"target": world.sender()}
    )
    world.journal.add_outbox(world.queue(thumbprint="ab" * 20))
    (delivery,) = runtime.deliverer().send(world.journal.outbox(["kv1"]))
    assert delivery.permanent
    assert not delivery.delivered
    (row,) = [i for i in world.journal.outbox(["kv1"]) if i.endpoint == "target:edge"]
    assert row.status == "dead"
    assert any(event["reason"] == "delivery_dead_lettered" for event in world.topic_events())


def test_a_retryable_push_failure_is_retried_by_the_outbox(clock: Clock) -> None:
    """A 409 while another ARM operation runs: the row stays pending with a later attempt time."""
    world = make_world(clock, (config("edge", port=1),))
    world.targets["edge"].answers.append(RetryableError("another operation is in progress", reason="arm_conflict"))
    runtime = build_runtime(
        world.runtime.settings, clock=clock, journal=world.journal, senders={"target": world.sender()}
    )
    world.journal.add_outbox(world.queue(thumbprint="ab" * 20))
    runtime.deliverer().send(world.journal.outbox(["kv1"]))
    (row,) = world.journal.outbox(["kv1"])
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at > clock().timestamp()


def test_the_runtime_gets_the_target_and_revoke_senders_beside_its_own(clock: Clock) -> None:
    """with_rollout_senders adds the two kinds and keeps the senders the runtime had."""
    world = make_world(clock, ())
    runtime = build_runtime(
        world.runtime.settings, clock=clock, journal=world.journal, senders={"notify": world.sender()}
    )
    assert set(with_rollout_senders(runtime, world.rollouts).senders) == {"notify", "target", "revoke"}


# --- check_rollouts ------------------------------------------------------------------------------------------


def test_a_target_that_switches_becomes_serving_and_the_rollout_is_announced_complete_once(
    clock: Clock, switching: TlsSwitch, new: ServedCertificate
) -> None:
    """Probed by the sweep: old certificate (pushed), switched (serving), then rollout_complete queued once."""
    world = make_world(clock, (config("edge", port=switching.port),), revoke=False)
    push_all(world, world.queue(thumbprint=new.thumbprint))
    report = world.sweep()
    assert (report.probed, report.serving, report.announced) == (1, 0, [])
    row = world.rollouts.get("kv1", "web", "edge")
    assert row is not None
    assert row.state is RolloutState.PUSHED
    clock.advance(timedelta(minutes=3))
    switching.switch_to(new)
    report = world.sweep()
    assert report.serving == 1
    assert report.announced == ["kv1/web/v2: rollout_complete"]
    (event,) = world.topic_events()
    assert (event["status"], event["reason"], event["new_version"]) == ("renewed", "rollout_complete", "v2")
    assert "edge" in event["message"]
    assert world.sweep().announced == []
    assert len(world.topic_events()) == 1
    assert switching.server_names.count("www.corp.internal") == 2


def test_a_finished_rollout_is_settled_and_later_sweeps_read_it_no_more(
    clock: Clock, switching: TlsSwitch, new: ServedCertificate
) -> None:
    """Served and announced: the rows are settled, so the sweep's cost does not grow with finished rollouts."""
    world = make_world(clock, (config("edge", port=switching.port),), revoke=False)
    push_all(world, world.queue(thumbprint=new.thumbprint))
    switching.switch_to(new)
    assert world.sweep().announced == ["kv1/web/v2: rollout_complete"]

    assert world.rollouts.unsettled(["kv1"]) == []
    row = world.rollouts.get("kv1", "web", "edge")
    assert row is not None
    assert (row.state, row.settled) == (RolloutState.SERVING, True)
    report = world.sweep()
    assert (report.probed, report.announced) == (0, [])


def test_a_stalled_rollout_stays_unsettled_and_is_probed_again(
    clock: Clock, never: TlsSwitch, new: ServedCertificate
) -> None:
    world = make_world(clock, (config("edge", port=never.port),), revoke=False)
    push_all(world, world.queue(thumbprint=new.thumbprint))
    clock.advance(timedelta(minutes=16))
    assert world.sweep().stalled == 1

    assert [row.state for row in world.rollouts.unsettled(["kv1"])] == [RolloutState.STALLED]
    assert world.sweep().probed == 1


def test_a_target_that_never_switches_is_stalled_at_its_deadline_and_announced_once(
    clock: Clock, never: TlsSwitch, switching: TlsSwitch, new: ServedCertificate, old: ServedCertificate
) -> None:
    """Past the deadline the target serving the old one is named in one rollout_stalled; the other target is not."""
    world = make_world(clock, (config("edge", port=never.port), config("api", port=switching.port)), revoke=False)
    switching.switch_to(new)
    push_all(world, world.queue(thumbprint=new.thumbprint))
    clock.advance(timedelta(minutes=14))
    assert world.sweep().announced == []
    clock.advance(timedelta(minutes=1))
    report = world.sweep()
    assert report.stalled == 1
    assert report.announced == ["kv1/web/v2: rollout_stalled"]
    (event,) = world.topic_events()
    assert (event["status"], event["reason"]) == ("failed", "rollout_stalled")
    assert f"edge (serves {old.thumbprint})" in event["message"]
    assert "api" not in event["message"]
    clock.advance(timedelta(hours=1))
    assert world.sweep().announced == []
    assert len(world.topic_events()) == 1


def test_a_stalled_target_that_picks_up_late_completes_the_rollout(
    clock: Clock, switching: TlsSwitch, new: ServedCertificate
) -> None:
    """Stalled is announced; a later pick-up is still seen and completes the rollout."""
    world = make_world(clock, (config("edge", port=switching.port),), revoke=False)
    push_all(world, world.queue(thumbprint=new.thumbprint))
    clock.advance(timedelta(minutes=20))
    assert world.sweep().announced == ["kv1/web/v2: rollout_stalled"]
    switching.switch_to(new)
    clock.advance(timedelta(hours=2))
    assert world.sweep().announced == ["kv1/web/v2: rollout_complete"]


def test_a_target_without_probe_completes_only_after_its_pickup_deadline(clock: Clock) -> None:
    """Nothing to probe: unverified once the documented pick-up time passed; complete, never retired."""
    world = make_world(clock, (config("edge"),), revoke=True)
    push_all(world, world.queue(thumbprint="ab" * 20))
    assert world.sweep().announced == []
    clock.advance(timedelta(minutes=15))
    report = world.sweep()
    assert (report.probed, report.announced, report.retirements) == (0, ["kv1/web/v2: rollout_complete"], 0)
    row = world.rollouts.get("kv1", "web", "edge")
    assert row is not None
    assert row.state is RolloutState.UNVERIFIED
    assert not [i for i in world.journal.outbox(["kv1"]) if i.endpoint.startswith("revoke:")]


def test_the_rollout_is_not_complete_while_a_queued_target_is_not_pushed_yet(
    clock: Clock, switching: TlsSwitch, new: ServedCertificate
) -> None:
    """One target serves, the other's push is still being retried: nothing is announced yet."""
    world = make_world(clock, (config("edge", port=switching.port), config("api", port=switching.port)))
    switching.switch_to(new)
    edge, _api = world.queue(thumbprint=new.thumbprint)
    push_all(world, [edge])
    clock.advance(timedelta(hours=3))
    assert world.sweep().announced == []


def test_only_the_latest_pushed_version_is_followed(clock: Clock, switching: TlsSwitch, new: ServedCertificate) -> None:
    """A newer version pushed to the target replaces the older version's row, and only it is probed."""
    world = make_world(clock, (config("edge", port=switching.port),), revoke=False)
    push_all(world, world.queue(thumbprint="ab" * 20, version="v2"))
    clock.advance(timedelta(minutes=1))
    push_all(world, world.queue(thumbprint=new.thumbprint, version="v3"))
    switching.switch_to(new)
    assert world.sweep().announced == ["kv1/web/v3: rollout_complete"]


def test_a_spent_budget_stops_the_phase_before_the_next_certificate(clock: Clock) -> None:
    """The sweep's budget is checked per certificate; what is left is for the next sweep."""
    world = make_world(clock, (config("edge"),))
    push_all(world, world.queue(thumbprint="ab" * 20))
    report = check_rollouts(world.runtime, ["kv1"], spent=lambda: True, rollouts=world.rollouts)
    assert report.unfinished
    assert report.probed == 0


def test_a_profile_that_cannot_retire_does_not_fail_the_merge_that_queues_its_rollout(clock: Clock) -> None:
    """revoke_superseded on an adapter that cannot revoke: logged, no retirement queued, no exception."""
    settings = Settings.from_environ(
        {
            "RENEWAL_VAULTS": f"kv1={VAULT_URL}",
            "RENEWAL_KEYVAULT_STATIC_TOKEN": "rollout-token",
            "RENEWAL_CA_PROFILES": json.dumps(
                {"corp": {"adapter": "tests.rollout.conftest:NonRevokingCA", "revoke_superseded": True}}
            ),
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        }
    )
    runtime = build_runtime(settings, clock=clock, journal=InMemoryJournal(), adapters={"corp": NonRevokingCA()})
    items = queue_rollout(
        runtime,
        vault_name="kv1",
        vault_url=VAULT_URL,
        certificate_name="web",
        new_version="v2",
        thumbprint="ab" * 20,
        previous_version="v1",
        tags={"renewal-ca": "corp"},
        now=clock(),
        configs=(),
    )
    assert items == []
