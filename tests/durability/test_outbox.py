"""The outbox: failed deliveries come back with the sweep, old ones are dead-lettered, topics get outcomes."""

from __future__ import annotations

import json
import logging

import pytest

import renewal
from tests.durability.conftest import Durable
from tests.fakes.ca import GARBAGE
from tests.fakes.eventgrid_topic import FakeTopic
from tests.stack import TOKEN


def test_failed_webhook_is_redelivered_by_the_sweep_with_the_same_id(durable: Durable) -> None:
    """A receiver that was down gets the delivery from the next sweep, under the webhook-id first used."""
    stack = durable.stack
    stack.sink.down = True
    stack.seed("web")
    durable.deliver(stack.near_expiry_event("web"))
    first = {d["endpoint"]: d for d in stack.recorder.last["deliveries"]}
    assert not first["a"]["delivered"]
    assert not first["b"]["delivered"]

    stack.sink.down = False
    report = durable.sweep()

    assert report is not None
    assert report.deliveries_sent == 2
    for endpoint in ("a", "b"):
        [received] = durable.deliveries_to(endpoint)
        assert received.headers["webhook-id"] == first[endpoint]["webhook_id"]
        assert received.verified
    assert durable.sweep().deliveries_sent == 0


def test_delivery_past_its_maximum_age_is_dead_lettered(
    durable: Durable, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Still failing past RENEWAL_WEBHOOK_MAX_AGE_HOURS: recorded dead, logged at error level, shown in the status."""
    stack = durable.stack
    monkeypatch.setenv("RENEWAL_WEBHOOK_MAX_AGE_HOURS", "1")
    stack.sink.down = True
    stack.seed("web")
    with caplog.at_level(logging.ERROR, logger="renewal"):
        durable.deliver(stack.near_expiry_event("web"))
        durable.clock.advance(3600 + 1)
        durable.sweep()

    dead_lines = [r for r in caplog.records if r.getMessage().startswith("delivery dead-lettered")]
    assert len(dead_lines) == 2
    assert all(r.levelno == logging.ERROR for r in dead_lines)
    code, body = renewal.status()
    assert code == 200
    dead = json.loads(body)["dead_letters"]
    assert sorted(d["endpoint"] for d in dead) == ["a", "b"]
    stack.sink.down = False
    assert durable.sweep().deliveries_sent == 0
    assert len(stack.sink.deliveries) == 0


def test_outcomes_are_published_to_the_event_grid_topic(durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a topic configured, the renewal's outcome goes there as a CloudEvent, authenticated, via the outbox."""
    stack = durable.stack
    with FakeTopic(stack.tmp / "topic", token=TOKEN) as topic:
        monkeypatch.setenv("RENEWAL_OUTCOME_TOPIC_ENDPOINT", topic.endpoint)
        topic.down = True
        stack.seed("web")
        durable.deliver(stack.near_expiry_event("web"))
        assert topic.events == []
        topic.down = False
        durable.sweep()

        [event] = topic.events
        assert event["type"] == "com.github.renewal.certificate.renewed"
        assert event["subject"] == "web"
        assert event["data"]["new_version"] == stack.client.get_certificate("web").properties.version
        assert topic.rejected == []


def test_a_failed_renewal_is_announced_on_the_topic(durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    """Failures reach the topic too (here with the topic's access key), so Azure-native consumers can react."""
    stack = durable.stack
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": {"adapter": GARBAGE}}))
    with FakeTopic(stack.tmp / "topic", key="topic-access-key") as topic:
        monkeypatch.setenv("RENEWAL_OUTCOME_TOPIC_ENDPOINT", topic.endpoint)
        monkeypatch.setenv("TOPIC_KEY", "topic-access-key")
        monkeypatch.setenv("RENEWAL_OUTCOME_TOPIC_KEY_SETTING", "TOPIC_KEY")
        stack.seed("web")
        durable.deliver(stack.near_expiry_event("web"))

        assert stack.recorder.last["status"] == "failed"
        [event] = topic.events
        assert event["type"] == "com.github.renewal.certificate.failed"
        assert event["data"]["reason"] == "unparsable_certificate"
        assert topic.rejected == []


def test_dead_lettered_delivery_is_announced_on_the_topic(durable: Durable, monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook given up on becomes a failure event on the topic."""
    stack = durable.stack
    monkeypatch.setenv("RENEWAL_WEBHOOK_MAX_AGE_HOURS", "1")
    with FakeTopic(stack.tmp / "topic", token=TOKEN) as topic:
        monkeypatch.setenv("RENEWAL_OUTCOME_TOPIC_ENDPOINT", topic.endpoint)
        stack.sink.down = True
        stack.seed("web")
        durable.deliver(stack.near_expiry_event("web"))
        durable.clock.advance(3600 + 1)
        durable.sweep()
        durable.sweep()
        reasons = sorted(e["data"]["reason"] for e in topic.events)
        assert reasons == ["delivery_dead_lettered", "delivery_dead_lettered", "renewed"]
