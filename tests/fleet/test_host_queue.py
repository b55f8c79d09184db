"""The queue functions as the Functions host drives them (devstack's stand-in host on Azurite's Queue service):
the planner's timer, the work queue, redelivery after a failure, and the poison queue after maxDequeueCount."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.functions_host import FunctionsHost
from tests.fleet.conftest import Fleet, event_message
from tests.fleet.outage_ca import OUTAGE

HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
MAX_DEQUEUE_COUNT = json.loads(HOST_JSON.read_text())["extensions"]["queues"]["maxDequeueCount"]


@pytest.fixture
def host(fleet: Fleet) -> Iterator[FunctionsHost]:
    """The stand-in host, retrying a failed message at once instead of after visibilityTimeout."""
    with FunctionsHost(queue_retry_seconds=0) as running:
        yield running


@pytest.fixture
def ca_down(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CA profile ``corp`` behind a switch: the CA is down while the returned file exists (it does now)."""
    stack = fleet.durable.stack
    down = stack.tmp / "ca-down"
    down.touch()
    options = {k: v for k, v in stack.ca.profile_options().items() if k != "adapter"}
    monkeypatch.setenv(
        "RENEWAL_CA_PROFILES", json.dumps({"corp": {"adapter": OUTAGE, **options, "down_file": str(down)}})
    )
    return down


def _poisoned(fleet: Fleet) -> list[str]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    name = f"{fleet.environ['RENEWAL_WORK_QUEUE']}-poison"
    client = QueueClient.from_connection_string(fleet.environ["AzureWebJobsStorage"], name)
    try:
        return [str(m.content) for m in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:  # the host creates the poison queue with its first poison message
        return []


def test_the_timer_plans_and_the_queue_function_renews(fleet: Fleet, host: FunctionsHost) -> None:
    """The timer queues the vault's unit; the queue function takes it, renews the due certificate, and the host
    deletes the message."""
    stack = fleet.durable.stack
    stack.seed("due", days_old=300, days_left=60)

    assert host.run_timer("renewal_sweep").succeeded
    assert len(stack.versions("due")) == 1
    [invocation] = host.run_queue("renewal_work")

    assert invocation.succeeded
    assert len(stack.versions("due")) == 2
    assert host.run_queue("renewal_work") == []


def test_a_message_that_keeps_failing_goes_to_the_poison_queue_and_is_announced_once(
    fleet: Fleet, host: FunctionsHost, ca_down: Path
) -> None:
    """A queued Key Vault event whose renewal fails transiently every time is retried maxDequeueCount times, then
    moved to the poison queue, whose function announces it once as queue_message_poisoned."""
    stack = fleet.durable.stack
    stack.seed("web")
    fleet.queue.send_message(event_message(stack.near_expiry_event("web"), base64_encoded=True))

    attempts = [invocation for _ in range(MAX_DEQUEUE_COUNT) for invocation in host.run_queue("renewal_work")]

    assert [a.succeeded for a in attempts] == [False] * MAX_DEQUEUE_COUNT
    assert host.run_queue("renewal_work") == []
    assert len(_poisoned(fleet)) == 1
    before = len(stack.recorder.outcomes)
    [announced] = host.run_queue("renewal_work_poisoned")

    assert announced.succeeded
    poisoned = [o for o in stack.recorder.outcomes[before:] if o["reason"] == "queue_message_poisoned"]
    assert [(o["vault_name"], o["certificate_name"]) for o in poisoned] == [("kv1", "web")]
    assert "poison" in poisoned[0]["message"]
    assert _poisoned(fleet) == []


def test_a_transient_failure_is_retried_by_the_host_and_then_renews(
    fleet: Fleet, host: FunctionsHost, ca_down: Path
) -> None:
    """One failed attempt leaves the message on the queue; the next attempt renews, once."""
    stack = fleet.durable.stack
    stack.seed("web")
    fleet.queue.send_message(event_message(stack.near_expiry_event("web"), base64_encoded=False))

    [first] = host.run_queue("renewal_work")
    ca_down.unlink()
    [second] = host.run_queue("renewal_work")

    assert (first.succeeded, second.succeeded) == (False, True)
    assert len(stack.versions("web")) == 2
    assert host.run_queue("renewal_work") == []


def test_a_malformed_message_is_not_retried(fleet: Fleet, host: FunctionsHost) -> None:
    """An unreadable message succeeds as an invocation (one failed outcome): the host deletes it, no poison."""
    fleet.queue.send_message("definitely not a message")

    [invocation] = host.run_queue("renewal_work")

    assert invocation.succeeded
    assert host.run_queue("renewal_work") == []
    assert _poisoned(fleet) == []
    assert fleet.durable.stack.recorder.last["reason"] == "malformed_event"
