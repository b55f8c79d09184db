"""The sweep spread through the work queue (Azurite's Queue service, the Key Vault emulator, the real journal):
the planner sends one unit per vault, the queue function does it, and a redelivered unit renews nothing twice."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from renewal.errors import RetryableError
from renewal.flow.entry import handle_poisoned_queue_message, handle_queue_message, run_sweep
from renewal.flow.fanout import WORK_KIND, PlanReport, read_message
from renewal.flow.runtime import Runtime, build_runtime
from renewal.flow.sweep import SweepReport, sweep, sweep_vault
from renewal.shells.metrics import NoMetrics
from tests.fleet.conftest import Fleet, event_message


def _plan(fleet: Fleet) -> PlanReport:
    report = run_sweep(fleet.environ, runtime=fleet.runtime())
    assert isinstance(report, PlanReport)
    return report


def test_planner_sends_one_unit_per_vault_and_renews_nothing_itself(fleet: Fleet) -> None:
    """With fan-out on, the timer queues one message for the allow-listed vault and leaves the renewal to it."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)

    report = _plan(fleet)

    assert report.queued == ["kv1"]
    assert len(stack.versions("due")) == 1
    [body] = fleet.take()
    assert json.loads(body)["kind"] == WORK_KIND
    assert read_message(body).vault_name == "kv1"  # type: ignore[union-attr]


def test_planner_sends_one_unit_per_vault_of_many(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three allow-listed vaults give three messages, one naming each vault, and the planner asks no vault."""
    vaults = f"{fleet.environ['RENEWAL_VAULTS']},kv-b=https://127.0.0.1:9,kv-c=https://127.0.0.1:10"
    monkeypatch.setenv("RENEWAL_VAULTS", vaults)

    report = run_sweep(dict(fleet.environ, RENEWAL_VAULTS=vaults), runtime=fleet.runtime())

    assert isinstance(report, PlanReport)
    assert sorted(report.queued) == ["kv-b", "kv-c", "kv1"]
    named = sorted(read_message(body).vault_name for body in fleet.take())  # type: ignore[union-attr]
    assert named == ["kv-b", "kv-c", "kv1"]


def test_queue_unit_renews_what_entered_its_window(fleet: Fleet) -> None:
    """The queue function, on the planner's message, renews the due certificate and leaves the young one."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)
    stack.seed("young", days_old=10, days_left=355)
    _plan(fleet)
    [body] = fleet.take()

    report = handle_queue_message(body, runtime=fleet.runtime())

    assert isinstance(report, SweepReport)
    assert [(o.certificate_name, o.status) for o in report.started] == [("due", "renewed")]
    assert len(stack.versions("due")) == 2
    assert len(stack.versions("young")) == 1


def test_redelivered_unit_does_no_second_renewal(fleet: Fleet) -> None:
    """The same message handed over twice (the host redelivers at least once) renews once: one CSR signed, one
    new version, one webhook per endpoint."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)
    _plan(fleet)
    [body] = fleet.take()

    first = handle_queue_message(body, runtime=fleet.runtime())
    second = handle_queue_message(body, runtime=fleet.runtime())

    assert isinstance(first, SweepReport)
    assert isinstance(second, SweepReport)
    assert [o.status for o in first.started] == ["renewed"]
    assert second.started == []
    assert second.resumed == []
    assert len(stack.versions("due")) == 2
    assert len(fleet.durable.submissions()) == 1
    assert len(fleet.durable.deliveries_to("a")) == 1


def test_unit_redelivered_after_its_worker_crashed_finishes_without_resubmitting(fleet: Fleet) -> None:
    """A worker killed right after the CA signed: the host redelivers the message once its claim lapsed, and the
    second worker merges the recorded answer instead of asking the CA again."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)
    _plan(fleet)
    [body] = fleet.take()

    assert fleet.run_worker(body, crash_at="submit") == -9
    assert len(fleet.durable.submissions()) == 1
    assert len(stack.versions("due")) == 1

    fleet.durable.pass_claims()
    assert fleet.run_worker(body) == 0

    assert len(stack.versions("due")) == 2
    assert len(fleet.durable.submissions()) == 1


def test_whole_sweep_in_one_process_still_renews(fleet: Fleet) -> None:
    """``sweep`` (fan-out off, or called directly) does the same unit for every vault in its own invocation."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)

    report = sweep(fleet.runtime())

    assert [(o.certificate_name, o.status) for o in report.started] == [("due", "renewed")]
    assert fleet.take() == []


def test_fanout_off_sweeps_in_the_timer(fleet: Fleet) -> None:
    """``RENEWAL_SWEEP_FANOUT=off`` keeps the timer's own sweep: nothing is queued."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)

    report = run_sweep(dict(fleet.environ, RENEWAL_SWEEP_FANOUT="off"), runtime=fleet.runtime())

    assert isinstance(report, SweepReport)
    assert [o.status for o in report.started] == ["renewed"]
    assert fleet.take() == []


@pytest.mark.parametrize("base64_encoded", [False, True], ids=["plain-json", "base64"])
def test_key_vault_event_through_the_queue_renews(fleet: Fleet, base64_encoded: bool) -> None:
    """A near-expiry event as Event Grid's Storage-queue handler writes it (plain JSON or base64 of it) goes to
    the same intake as the Event Grid trigger and renews."""
    stack = fleet.durable.stack
    stack.seed("web")
    body = event_message(stack.near_expiry_event("web"), base64_encoded=base64_encoded)

    [outcome] = handle_queue_message(body, runtime=fleet.runtime())  # type: ignore[misc]

    assert (outcome.status, outcome.trigger) == ("renewed", "event_grid")
    assert len(stack.versions("web")) == 2


def test_transient_failure_of_a_queued_event_is_raised_for_the_host_to_retry(fleet: Fleet) -> None:
    """A Key Vault outage during a queued event's renewal raises (the host makes the message visible again);
    the redelivery renews, and a third delivery renews nothing more."""
    stack = fleet.durable.stack
    stack.seed("web")
    body = event_message(stack.near_expiry_event("web"), base64_encoded=True)
    stack.emulator.faults.script("merge", 503, vault="kv1", count=1000)
    with pytest.raises(RetryableError):
        handle_queue_message(body, runtime=fleet.runtime())
    stack.emulator.faults.clear()

    [again] = handle_queue_message(body, runtime=fleet.runtime())  # type: ignore[misc]
    [third] = handle_queue_message(body, runtime=fleet.runtime())  # type: ignore[misc]

    assert again.status == "renewed"
    assert third.status == "skipped"
    assert len(stack.versions("web")) == 2
    assert len(fleet.durable.submissions()) == 1


@pytest.mark.parametrize(
    "body",
    [
        "not json {",
        '{"kind": "renewal.sweep-vault", "version": 2, "vault": "kv1", "planned_at": "2026-01-01T00:00:00+00:00"}',
        '{"kind": "renewal.sweep-vault", "version": 1, "vault": "kv1"}',
        "[1, 2]",
        '"just a string"',
    ],
    ids=["not-json", "unknown-version", "missing-field", "array-of-numbers", "json-string"],
)
def test_malformed_message_ends_as_one_failed_outcome_and_is_not_retried(
    fleet: Fleet, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable message is logged once as a failed outcome (reason malformed_event) and returns normally,
    so the host deletes it instead of retrying it into the poison queue."""
    with caplog.at_level(logging.INFO, logger="renewal"):
        [outcome] = handle_queue_message(body, runtime=fleet.runtime())  # type: ignore[misc]

    assert (outcome.status, outcome.reason, outcome.retryable) == ("failed", "malformed_event", False)
    lines = [r for r in caplog.records if "reason=malformed_event" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.ERROR


def test_unit_for_a_vault_off_the_allow_list_fails_without_a_request(fleet: Fleet) -> None:
    """A well-formed unit naming a vault not in RENEWAL_VAULTS is refused before anything is asked of anyone."""
    stack = fleet.durable.stack
    before = stack.authenticated_requests()
    body = json.dumps(
        {"kind": WORK_KIND, "version": 1, "vault": "elsewhere", "planned_at": "2026-01-01T00:00:00+00:00"}
    )

    [outcome] = handle_queue_message(body, runtime=fleet.runtime())  # type: ignore[misc]

    assert (outcome.status, outcome.reason, outcome.vault_name) == ("failed", "vault_not_allowed", "elsewhere")
    assert stack.authenticated_requests() == before


def test_poisoned_unit_is_announced_once_as_a_failure(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    """A unit the host moved to the poison queue after five failed attempts ends as one failed outcome,
    queue_message_poisoned, naming the vault and the poison queue."""
    _plan(fleet)
    [body] = fleet.take()

    with caplog.at_level(logging.INFO, logger="renewal"):
        outcome = handle_poisoned_queue_message(body, runtime=fleet.runtime(), environ=fleet.environ)

    assert (outcome.status, outcome.reason, outcome.vault_name) == ("failed", "queue_message_poisoned", "kv1")
    assert f"{fleet.environ['RENEWAL_WORK_QUEUE']}-poison" in outcome.message
    assert len([r for r in caplog.records if "reason=queue_message_poisoned" in r.getMessage()]) == 1


def test_poisoned_event_names_its_certificate(fleet: Fleet) -> None:
    """A Key Vault event that kept failing is announced with the vault and certificate it was about."""
    stack = fleet.durable.stack
    stack.seed("web")
    body = event_message(stack.near_expiry_event("web"), base64_encoded=True)

    outcome = handle_poisoned_queue_message(body, runtime=fleet.runtime(), environ=fleet.environ)

    assert (outcome.reason, outcome.vault_name, outcome.certificate_name) == ("queue_message_poisoned", "kv1", "web")


def test_poisoned_unreadable_message_is_announced_without_its_text(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a message nobody can read is announced, and what it held never reaches the log."""
    body = "password=hunter2-do-not-log"
    with caplog.at_level(logging.DEBUG):
        outcome = handle_poisoned_queue_message(body, runtime=fleet.runtime(), environ=fleet.environ)

    assert outcome.reason == "queue_message_poisoned"
    assert "hunter2" not in caplog.text
    assert "hunter2" not in outcome.message


class RecordingMetrics(NoMetrics):
    """Keeps every ``certificate_listed`` report."""

    def __init__(self) -> None:
        self.listed: dict[str, dict[str, object]] = {}

    def certificate_listed(self, **report: Any) -> None:
        self.listed[str(report["certificate"])] = report


def _measured_runtime(fleet: Fleet, metrics: RecordingMetrics) -> Runtime:
    base = fleet.runtime()
    return build_runtime(
        base.settings,
        clock=fleet.durable.clock,
        keyvault=base.keyvault,
        webhooks=base.webhooks,
        metrics=metrics,
    )


def test_the_listing_reports_every_certificate_to_the_metrics(fleet: Fleet) -> None:
    """Each listed certificate is reported once per sweep with its validity, window start and CA profile, from the
    listing alone; a young and a due certificate are both ready."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)
    stack.seed("young", days_old=10, days_left=355)
    metrics = RecordingMetrics()

    sweep_vault(_measured_runtime(fleet, metrics), "kv1")

    assert set(metrics.listed) == {"due", "young"}
    young = metrics.listed["young"]
    assert (young["vault"], young["ca_profile"], young["ready"]) == ("kv1", "corp", True)
    assert young["expires_on"] == stack.client.get_certificate("young").properties.expires_on
    assert young["window_start"] is not None
    assert young["not_before"] is not None


# Listed while its renewal is pending only when the emulator answers "latest" with the previous version.
@pytest.mark.parametrize("stack", ["previous"], indirect=True)
def test_a_certificate_failing_close_to_expiry_is_reported_not_ready(fleet: Fleet) -> None:
    """A renewal that keeps failing with fewer than RENEWAL_ALERT_DAYS left makes the listing report it not ready."""
    stack = fleet.durable.stack
    stack.seed("web", days_left=3)
    stack.emulator.faults.script("merge", 503, vault="kv1", count=1000)
    with pytest.raises(RetryableError):
        fleet.durable.deliver(stack.near_expiry_event("web"))
    metrics = RecordingMetrics()

    sweep_vault(_measured_runtime(fleet, metrics), "kv1")

    assert metrics.listed["web"]["ready"] is False


def _samples() -> list[tuple[str, dict[str, Any]]]:
    samples: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((Path(__file__).resolve().parents[1] / "events").glob("*.json")):
        document = json.loads(path.read_text())
        samples.extend((path.name, event) for event in (document if isinstance(document, list) else [document]))
    return samples


@pytest.mark.parametrize(("sample", "event"), _samples(), ids=[name for name, _ in _samples()])
@pytest.mark.parametrize("base64_encoded", [False, True], ids=["plain-json", "base64"])
def test_every_sample_event_through_the_queue_reaches_the_intake(
    fleet: Fleet, sample: str, event: dict[str, Any], base64_encoded: bool
) -> None:
    """Key Vault's sample events in both schemas, as Event Grid writes them to a queue, are read as the Event Grid
    trigger reads them: each names its vault and certificate (here a vault off the allow-list)."""
    [outcome] = handle_queue_message(event_message(event, base64_encoded=base64_encoded), runtime=fleet.runtime())  # type: ignore[misc]

    assert (outcome.status, outcome.reason, outcome.vault_name, outcome.certificate_name) == (
        "skipped",
        "vault_not_allowed",
        "sample-kv",
        "newcert",
    ), sample
