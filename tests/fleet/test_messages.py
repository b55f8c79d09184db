"""The work queue's messages and options, and the planner's rules, on an in-memory journal and a recording
queue (the wire behaviour is in test_queue_shell.py and test_fanout.py)."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime

import pytest

from renewal.errors import ConfigurationError, PermanentError, RenewalError, RetryableError
from renewal.flow.fanout import (
    DEFAULT_WORK_QUEUE,
    MIN_TIME_TO_LIVE,
    WORK_KIND,
    FanoutOptions,
    KeyVaultEvents,
    VaultWork,
    encode_work,
    plan_sweep,
    read_message,
)
from renewal.flow.runtime import build_runtime
from renewal.settings import Settings
from renewal.testing import InMemoryJournal

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVENT = {
    "id": "e1",
    "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/kv1",
    "subject": "web",
    "eventType": "Microsoft.KeyVault.CertificateNearExpiry",
    "eventTime": "2026-03-01T12:00:00Z",
    "dataVersion": "1",
    "data": {"VaultName": "kv1", "ObjectType": "Certificate", "ObjectName": "web"},
}
CLOUD_EVENT = {"specversion": "1.0", "id": "e2", "type": "Microsoft.KeyVault.CertificateExpired", "source": "x"}


def _work(**fields: object) -> str:
    document: dict[str, object] = {"kind": WORK_KIND, "version": 1, "vault": "kv1", "planned_at": NOW.isoformat()}
    document.update(fields)
    return json.dumps({k: v for k, v in document.items() if v is not None})


def test_a_unit_reads_back_as_it_was_written() -> None:
    """``encode_work`` and ``read_message`` agree, in UTC, and the text names nothing but the vault."""
    body = encode_work(VaultWork("kv1", NOW))
    assert read_message(body) == VaultWork("kv1", NOW)
    assert json.loads(body) == {"kind": WORK_KIND, "version": 1, "vault": "kv1", "planned_at": NOW.isoformat()}


@pytest.mark.parametrize("encode", [str.encode, lambda text: base64.b64encode(text.encode())], ids=["json", "base64"])
@pytest.mark.parametrize("event", [EVENT, CLOUD_EVENT], ids=["eventgrid", "cloudevents"])
def test_events_are_read_whichever_encoding_event_grid_used(encode: object, event: dict[str, object]) -> None:
    """Event Grid's message (its JSON, or base64 of it, in either schema) is handed on whole, as one envelope."""
    body = encode(json.dumps(event))  # type: ignore[operator]
    assert read_message(body) == KeyVaultEvents((event,))


def test_an_array_of_events_is_read_whole() -> None:
    """An Event Grid schema array (what a webhook delivery carries) gives each event."""
    assert read_message(json.dumps([EVENT, EVENT])) == KeyVaultEvents((EVENT, EVENT))


def test_base64_of_a_unit_is_read_too() -> None:
    """A unit that some client sent base64-encoded (the SDK's encode policies) is still understood."""
    assert read_message(base64.b64encode(_work().encode())) == VaultWork("kv1", NOW)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xfe", "UTF-8"),
        ("not json {", "neither JSON nor base64"),
        (base64.b64encode(b"not json either"), "not valid JSON"),
        ("{", "not valid JSON"),
        ("[]", "Event Grid events only"),
        ('[{"a": 1}]', "Event Grid events only"),
        (base64.b64encode(b"42"), "JSON object"),
        ('{"hello": "world"}', "neither a unit"),
        (_work(version=2), "version"),
        (_work(version=True), "version"),
        (_work(version="1"), "version"),
        (_work(vault="kv_1!"), "Key Vault name"),
        (_work(vault=7), "Key Vault name"),
        (_work(planned_at="yesterday"), "planned_at"),
        (_work(planned_at="2026-03-01T12:00:00"), "planned_at"),
        (_work(planned_at=None), "missing: planned_at"),
        (_work(extra="x"), "unknown: extra"),
        ("x" * (200 * 1024), "more than a queue message holds"),
    ],
)
def test_malformed_messages_are_refused_for_good_without_echoing_them(body: str | bytes, says: str) -> None:
    """Each way a message can be wrong is a permanent malformed_event that names the fault, not the body."""
    with pytest.raises(PermanentError) as raised:
        read_message(body)
    assert raised.value.reason == "malformed_event"
    assert says in raised.value.message
    assert "world" not in raised.value.message
    assert "kv_1!" not in raised.value.message


def test_fanout_is_off_by_default_with_the_default_queue() -> None:
    """No settings: the timer sweeps itself, and the work queue would be ``renewal-work``."""
    options = FanoutOptions.from_environ({})
    assert (options.enabled, options.queue_name, options.poison_queue_name) == (
        False,
        DEFAULT_WORK_QUEUE,
        "renewal-work-poison",
    )
    assert FanoutOptions.from_environ({"RENEWAL_SWEEP_FANOUT": "Queue", "RENEWAL_WORK_QUEUE": "w-1"}).enabled


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"RENEWAL_SWEEP_FANOUT": "yes"}, "RENEWAL_SWEEP_FANOUT"),
        ({"RENEWAL_WORK_QUEUE": "Work"}, "RENEWAL_WORK_QUEUE"),
        ({"RENEWAL_WORK_QUEUE": "a--b"}, "RENEWAL_WORK_QUEUE"),
        ({"RENEWAL_WORK_QUEUE": "ab"}, "RENEWAL_WORK_QUEUE"),
        ({"RENEWAL_WORK_QUEUE": "-abc"}, "RENEWAL_WORK_QUEUE"),
        ({"RENEWAL_WORK_QUEUE": "a" * 57}, "RENEWAL_WORK_QUEUE"),
    ],
)
def test_malformed_fanout_settings_name_the_setting(environ: dict[str, str], setting: str) -> None:
    """A mode other than off/queue, or a queue name Storage (or its "-poison" twin) would refuse, is refused."""
    with pytest.raises(ConfigurationError) as raised:
        FanoutOptions.from_environ(environ)
    assert setting in str(raised.value)


def test_the_longest_allowed_queue_name_leaves_room_for_its_poison_queue() -> None:
    """56 characters is the most: the host's "<name>-poison" must itself be a queue name (at most 63)."""
    options = FanoutOptions.from_environ({"RENEWAL_WORK_QUEUE": "a" * 56})
    assert len(options.poison_queue_name) == 63


class RecordingQueue:
    """A ``MessageQueue`` that keeps what it was sent, or fails as told, per vault."""

    def __init__(self, failures: dict[str, RenewalError] | None = None) -> None:
        self.sent: list[tuple[str, int | None]] = []
        self.attempts: list[str] = []
        self._failures = failures or {}

    @property
    def name(self) -> str:
        return "renewal-work"

    def send(self, body: str, *, time_to_live_seconds: int | None = None) -> None:
        vault = json.loads(body)["vault"]
        self.attempts.append(vault)
        if vault in self._failures:
            raise self._failures[vault]
        self.sent.append((body, time_to_live_seconds))


def _runtime(schedule: str | None = "0 */30 * * * *", vaults: int = 3, seed: int = 1) -> object:
    environ = {"RENEWAL_VAULTS": ",".join(f"kv{i}=https://kv{i}.vault.azure.net" for i in range(vaults))}
    if schedule:
        environ["RENEWAL_SWEEP_SCHEDULE"] = schedule
    return build_runtime(
        Settings.from_environ(environ), journal=InMemoryJournal(), clock=lambda: NOW, rng=random.Random(seed)
    )


def test_planner_sends_each_vault_once_living_two_sweep_intervals() -> None:
    """One message per vault, each for two sweep intervals or an hour, whichever is longer."""
    queue = RecordingQueue()
    report = plan_sweep(_runtime("0 0 * * * *"), queue)  # type: ignore[arg-type]

    assert sorted(report.queued) == ["kv0", "kv1", "kv2"]
    assert sorted(read_message(body).vault_name for body, _ in queue.sent) == ["kv0", "kv1", "kv2"]  # type: ignore[union-attr]
    assert {ttl for _, ttl in queue.sent} == {2 * 3600}
    short = RecordingQueue()
    plan_sweep(_runtime("0 */5 * * * *"), short)  # type: ignore[arg-type]
    assert {ttl for _, ttl in short.sent} == {int(MIN_TIME_TO_LIVE.total_seconds())}


def test_planner_order_changes_from_run_to_run() -> None:
    """The vaults go out in the runtime's random order, so no vault always waits last behind a backlog."""
    orders = set()
    for seed in range(6):
        queue = RecordingQueue()
        plan_sweep(_runtime(vaults=5, seed=seed), queue)  # type: ignore[arg-type]
        orders.add(tuple(queue.attempts))
    assert len(orders) > 1


def test_queue_outage_stops_the_plan_and_reports_every_vault() -> None:
    """A retryable failure means the queue is down for all: the other vaults are not tried, all are reported."""
    queue = RecordingQueue({f"kv{i}": RetryableError("down", reason="queue_unavailable") for i in range(3)})
    report = plan_sweep(_runtime(), queue)  # type: ignore[arg-type]

    assert len(queue.attempts) == 1
    assert report.queued == []
    assert sorted(o.vault_name for o in report.failed) == ["kv0", "kv1", "kv2"]  # type: ignore[type-var]
    assert {(o.reason, o.retryable) for o in report.failed} == {("transient_error", True)}
    assert all("queue_unavailable" in o.message for o in report.failed)


def test_one_refused_message_does_not_stop_the_others() -> None:
    """A permanent refusal for one vault's message is reported for it; the rest are sent."""
    queue = RecordingQueue({"kv1": PermanentError("no", reason="queue_refused")})
    report = plan_sweep(_runtime(), queue)  # type: ignore[arg-type]

    assert sorted(report.queued) == ["kv0", "kv2"]
    assert [o.vault_name for o in report.failed] == ["kv1"]
