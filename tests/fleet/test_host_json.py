"""host.json's queue settings, and how they fit the function timeout, the sweep's budget and a message's
lifetime (host.json has no comments: docs/deploy.md, "The work queue", says why each value is what it is)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from renewal.flow.fanout import MIN_TIME_TO_LIVE
from renewal.settings import Settings

HOST = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
QUEUES = HOST["extensions"]["queues"]


def _span(text: str) -> timedelta:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_queue_settings_are_the_deliberate_ones() -> None:
    """The values docs/deploy.md explains, and no other queue setting left to its default unawares."""
    assert QUEUES == {
        "batchSize": 4,
        "newBatchThreshold": 2,
        "maxDequeueCount": 5,
        "visibilityTimeout": "00:00:30",
        "maxPollingInterval": "00:00:10",
        "messageEncoding": "none",
    }


def test_a_unit_of_work_fits_the_function_timeout_with_room_to_spare() -> None:
    """The sweep's default budget per vault leaves at least a minute of functionTimeout for the last renewal
    it started: the host never kills a unit in the middle of a step."""
    budget = timedelta(
        seconds=Settings.from_environ({"RENEWAL_VAULTS": "kv1=https://kv1.vault.azure.net"}).sweep_budget_seconds
    )
    assert budget + timedelta(minutes=1) <= _span(HOST["functionTimeout"])


def test_a_failing_message_reaches_the_poison_queue_before_it_expires() -> None:
    """Every retry of a message (each up to functionTimeout, then visibilityTimeout apart) happens within its
    lifetime, so a unit that keeps failing is announced from the poison queue, never dropped by expiry."""
    attempts = QUEUES["maxDequeueCount"] * (_span(HOST["functionTimeout"]) + _span(QUEUES["visibilityTimeout"]))
    assert attempts < MIN_TIME_TO_LIVE


def test_an_instance_takes_a_few_units_at_a_time() -> None:
    """At most batchSize + newBatchThreshold units run at once on one instance (six): the rest stay on the queue
    for other instances, and the scale controller sees the backlog."""
    assert QUEUES["batchSize"] + QUEUES["newBatchThreshold"] <= 8
    assert QUEUES["newBatchThreshold"] < QUEUES["batchSize"]


def test_a_queued_event_waits_less_than_event_grids_first_retry() -> None:
    """An idle queue is polled at least every maxPollingInterval: an event queued is picked up sooner than Event
    Grid's own first retry (10 s) would have redelivered it."""
    assert _span(QUEUES["maxPollingInterval"]) <= timedelta(seconds=10)
