"""The devstack webhook sink: verifies Standard Webhooks signatures and records what it receives."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from devstack.webhook_sink import STRUCTURED_CLOUDEVENT, WebhookSink

SECRET = "whsec_" + base64.b64encode(b"q" * 32).decode()


def signed_headers(
    body: str, *, secret: str = SECRET, msg_id: str = "msg_x", content_type: str = STRUCTURED_CLOUDEVENT
) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        "content-type": content_type,
    }


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink(SECRET) as running:
        yield running


def test_signed_request_is_verified_and_recorded(sink: WebhookSink) -> None:
    """A correctly signed POST is answered 204 and recorded as verified, with its headers and body."""
    body = '{"hello": "world"}'
    response = requests.post(sink.url + "hook", data=body, headers=signed_headers(body), timeout=5)
    assert response.status_code == 204
    (delivery,) = sink.deliveries
    assert (delivery.path, delivery.verified, delivery.status, delivery.json()) == (
        "/hook",
        True,
        204,
        {"hello": "world"},
    )
    assert delivery.headers["webhook-id"] == "msg_x"


@pytest.mark.parametrize(
    "headers",
    [
        signed_headers("{}", secret="whsec_" + base64.b64encode(b"z" * 32).decode()),
        signed_headers('{"other": 1}'),
        {"content-type": STRUCTURED_CLOUDEVENT},
    ],
    ids=["wrong-secret", "body-changed", "unsigned"],
)
def test_unverifiable_request_is_answered_401(sink: WebhookSink, headers: dict[str, str]) -> None:
    """A request whose signature does not verify is answered 401 and recorded as unverified."""
    response = requests.post(sink.url, data="{}", headers=headers, timeout=5)
    assert response.status_code == 401
    assert [d.verified for d in sink.deliveries] == [False]


@pytest.mark.parametrize(
    "content_type", ["application/cloudevents+json", "Application/CloudEvents+JSON; charset=utf-8"]
)
def test_structured_cloudevents_are_accepted(sink: WebhookSink, content_type: str) -> None:
    """application/cloudevents+json, in any case and with parameters, is what the sink accepts (HTTP binding §3.2.1)."""
    body = '{"specversion": "1.0"}'
    response = requests.post(sink.url, data=body, headers=signed_headers(body, content_type=content_type), timeout=5)
    assert response.status_code == 204
    assert sink.deliveries[0].headers["content-type"] == content_type


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/cloudevents-batch+json", ""])
def test_other_media_types_are_answered_415(sink: WebhookSink, content_type: str) -> None:
    """A verified request that is not a structured CloudEvent is answered 415, and recorded as verified."""
    body = '{"specversion": "1.0"}'
    response = requests.post(sink.url, data=body, headers=signed_headers(body, content_type=content_type), timeout=5)
    assert response.status_code == 415
    assert [(d.verified, d.status) for d in sink.deliveries] == [(True, 415)]


def test_fail_next_answers_scripted_statuses_then_recovers(sink: WebhookSink) -> None:
    """fail_next(2) answers 503 twice (recording both) and then answers normally."""
    sink.fail_next(2)
    statuses = [
        requests.post(sink.url, data="{}", headers=signed_headers("{}"), timeout=5).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 204]
    assert len(sink.deliveries) == 3


def test_down_drops_connections(sink: WebhookSink) -> None:
    """A sink told to be down closes connections without answering."""
    sink.down = True
    with pytest.raises(requests.ConnectionError):
        requests.post(sink.url, data="{}", headers=signed_headers("{}"), timeout=5)
    assert sink.deliveries == ()


def test_journal_appends_jsonl(tmp_path: Path) -> None:
    """With a journal file, every delivery is appended as one JSON line."""
    journal = tmp_path / "deliveries.jsonl"
    with WebhookSink(SECRET, journal=journal) as sink:
        for _ in range(2):
            requests.post(sink.url, data="{}", headers=signed_headers("{}"), timeout=5)
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(r["verified"], r["status"], r["body"]) for r in records] == [(True, 204, "{}")] * 2
