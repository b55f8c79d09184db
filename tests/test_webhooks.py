"""Webhooks: the CloudEvents payload, endpoint selection, and signed delivery against a real loopback receiver."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import stamina
from standardwebhooks.webhooks import Webhook

from devstack.webhook_sink import WebhookSink
from renewal.flow.runtime import log_retries_at_debug
from renewal.outcome import Outcome
from renewal.pure.payloads import build_payload, endpoints_for
from renewal.pure.verify import VerifiedCertificate
from renewal.settings import WebhookEndpoint
from renewal.shells.webhooks import CONTENT_TYPE, WebhookSender

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OUTCOME = Outcome(
    status="renewed",
    reason="renewed",
    message="new version merged",
    vault_name="kv1",
    certificate_name="web",
    ca_profile="corp",
    previous_version="aaaa",
    new_version="bbbb",
)
VERIFIED = VerifiedCertificate(
    leaf_der=b"\x30",
    chain_der=(),
    thumbprint_sha1="00" * 19 + "FF",
    serial_number="0ABC",
    not_before=datetime(2026, 6, 1, tzinfo=UTC),
    not_after=datetime(2027, 6, 1, tzinfo=UTC),
)
PAYLOAD = build_payload(OUTCOME, verified=VERIFIED, vault_url="https://kv1.vault.azure.net/", now=NOW, event_id="ev1")


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink(SECRET) as running:
        yield running


@pytest.fixture(autouse=True)
def no_waits() -> Iterator[None]:
    """stamina's test mode: no waits between attempts, and (capped at 100) the sender's own attempt counts."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


class NoNetworkSession(requests.Session):
    """A session that fails the test if anything is sent (the third-party seam, not our code)."""

    def request(self, *args: object, **kwargs: object) -> requests.Response:
        raise AssertionError("a request was attempted")


def endpoint(url: str, *, secret: str = SECRET, tag: tuple[str, str] | None = None) -> WebhookEndpoint:
    return WebhookEndpoint(name="deploy", url=url, secret=secret, match_tag=tag)


def test_payload_is_a_cloudevent_with_key_vault_ids() -> None:
    """The payload is CloudEvents 1.0 with the vault as source and the certificate and secret ids of the new
    version, built from the configured vault URL."""
    assert {k: v for k, v in PAYLOAD.items() if k != "data"} == {
        "specversion": "1.0",
        "id": "ev1",
        "source": "https://kv1.vault.azure.net",
        "type": "com.github.renewal.certificate.renewed",
        "subject": "web",
        "time": "2026-06-01T12:00:00Z",
        "datacontenttype": "application/json",
    }
    data = PAYLOAD["data"]
    assert isinstance(data, dict)
    assert data["certificate_id"] == "https://kv1.vault.azure.net/certificates/web/bbbb"
    assert data["secret_id"] == "https://kv1.vault.azure.net/secrets/web/bbbb"
    assert data["x5t"] == base64.urlsafe_b64encode(bytes.fromhex("00" * 19 + "FF")).rstrip(b"=").decode()
    assert (data["serial_number"], data["not_after"], data["ca_profile"]) == ("0ABC", "2027-06-01T00:00:00Z", "corp")
    assert (data["vault_name"], data["previous_version"], data["new_version"]) == ("kv1", "aaaa", "bbbb")
    json.dumps(PAYLOAD)


def test_failed_outcome_payload_has_failed_type_and_no_certificate() -> None:
    """A failure announces type ...certificate.failed with its reason and no certificate fields."""
    failed = Outcome(status="failed", reason="ca_rejected", message="no", vault_name="kv1", certificate_name="web")
    payload = build_payload(failed, verified=None, vault_url="https://kv1.vault.azure.net", now=NOW, event_id="ev2")
    data = payload["data"]
    assert isinstance(data, dict)
    assert payload["type"] == "com.github.renewal.certificate.failed"
    assert (data["reason"], data["secret_id"], data["x5t"]) == ("ca_rejected", None, None)


def test_endpoints_for_matches_tags() -> None:
    """Untagged endpoints apply to every certificate; tagged ones only when the tag key (any case) and value match."""
    every = WebhookEndpoint("every", "https://a/", SECRET, None)
    prod = WebhookEndpoint("prod", "https://b/", SECRET, ("env", "prod"))
    test = WebhookEndpoint("test", "https://c/", SECRET, ("env", "test"))
    assert endpoints_for((every, prod, test), {"Env": "prod"}) == (every, prod)
    assert endpoints_for((every, prod, test), {"env": "PROD"}) == (every,)
    assert endpoints_for((every, prod, test), {}) == (every,)


def test_delivery_is_signed_and_verifies(sink: WebhookSink) -> None:
    """The request carries webhook-id/-timestamp/-signature and content-type, and standardwebhooks verifies it."""
    delivery = WebhookSender().deliver(endpoint(sink.url), PAYLOAD, webhook_id="msg_1")
    assert (delivery.delivered, delivery.attempts, delivery.status_code, delivery.error) == (True, 1, 204, None)
    (received,) = sink.deliveries
    assert received.verified
    assert received.headers["content-type"] == "application/cloudevents+json"
    assert received.headers["webhook-id"] == "msg_1"
    assert Webhook(SECRET).verify(received.body, dict(received.headers)) == PAYLOAD


def test_the_event_is_sent_in_cloudevents_structured_mode(sink: WebhookSink) -> None:
    """The body is the whole CloudEvent as JSON, typed application/cloudevents+json (HTTP binding §3.2.1), and the
    signature covers exactly the bytes sent, non-ASCII characters included."""
    assert CONTENT_TYPE == "application/cloudevents+json"
    data = PAYLOAD["data"]
    assert isinstance(data, dict)
    payload = {**PAYLOAD, "data": {**data, "message": "renouvelé à 12 h, ✓"}}
    delivery = WebhookSender().deliver(endpoint(sink.url), payload, webhook_id="msg_ce")
    assert delivery.delivered
    (received,) = sink.deliveries
    assert received.headers["content-type"] == CONTENT_TYPE
    assert json.loads(received.body) == payload
    assert "renouvelé à 12 h, ✓".encode() in received.body
    assert Webhook(SECRET).verify(received.body, dict(received.headers)) == payload
    assert "ce-id" not in received.headers, "structured mode: the attributes are in the body, not in ce- headers"


def test_retries_on_503_then_succeeds_with_the_same_id(sink: WebhookSink) -> None:
    """Two 503s are retried and the third attempt delivers; the id never changes and each attempt is signed anew."""
    sink.fail_next(2, status=503)
    delivery = WebhookSender(backoff=0.5).deliver(endpoint(sink.url), PAYLOAD, webhook_id="msg_2")
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (True, 3, 204)
    assert [d.headers["webhook-id"] for d in sink.deliveries] == ["msg_2"] * 3
    assert [d.headers["content-type"] for d in sink.deliveries] == [CONTENT_TYPE] * 3
    assert sink.deliveries[-1].verified


def test_attempts_are_bounded_by_the_senders_setting(sink: WebhookSink) -> None:
    """With attempts=2, a receiver that keeps failing is tried exactly twice."""
    sink.fail_next(5, status=500)
    delivery = WebhookSender(attempts=2).deliver(endpoint(sink.url), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 2, 500)
    assert len(sink.deliveries) == 2


def test_a_short_retry_after_is_retried_within_the_delivery(sink: WebhookSink) -> None:
    """A 429 or 503 asking to wait a few seconds (delay-seconds or an HTTP-date) is retried in the same delivery."""
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    sink.fail_next(1, status=429, headers={"Retry-After": "2"})
    sink.fail_next(1, status=503, headers={"Retry-After": soon})
    delivery = WebhookSender().deliver(endpoint(sink.url), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (True, 3, 204)


@pytest.mark.parametrize("later", ["120", "http-date"])
def test_a_long_retry_after_is_left_to_the_outbox(sink: WebhookSink, later: str) -> None:
    """A receiver asking to wait minutes is not retried now: the delivery fails at once and the outbox comes back."""
    value = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True) if later == "http-date" else later
    sink.fail_next(1, status=503, headers={"Retry-After": value})
    delivery = WebhookSender().deliver(endpoint(sink.url), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts, delivery.status_code, delivery.error) == (False, 1, 503, "HTTP 503")
    assert len(sink.deliveries) == 1


def test_endpoint_down_fails_after_three_retries(sink: WebhookSink) -> None:
    """A receiver that drops connections gives a failed Delivery after 1 attempt and 3 retries, without raising."""
    sink.down = True
    delivery = WebhookSender().deliver(endpoint(sink.url), PAYLOAD, webhook_id="msg_3")
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 4, None)
    assert delivery.error is not None
    assert "connection failed" in delivery.error


def test_nothing_listening_fails_without_raising() -> None:
    """A closed port gives a failed Delivery, not an exception."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    delivery = WebhookSender().deliver(endpoint(f"http://127.0.0.1:{port}/"), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts) == (False, 4)


def test_timeout_is_retried_then_fails() -> None:
    """A receiver that accepts but never answers times out on every attempt."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        delivery = WebhookSender(timeout=0.2, attempts=2).deliver(endpoint(url), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts) == (False, 2)
    assert delivery.error == "timed out after 0.2s"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(sink: WebhookSink, status: int) -> None:
    """A 3xx is a failure, not retried (even with a Retry-After), and the Location is never visited."""
    with WebhookSink(SECRET) as elsewhere:
        sink.fail_next(4, status=status, headers={"Location": elsewhere.url, "Retry-After": "1"})
        delivery = WebhookSender().deliver(endpoint(sink.url), PAYLOAD, webhook_id="m")
        assert elsewhere.deliveries == ()
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 1, status)
    assert delivery.error == f"HTTP {status}: redirects are not followed"


@pytest.mark.parametrize(
    ("status", "attempts"), [(400, 1), (401, 1), (404, 1), (409, 1), (408, 4), (429, 4), (500, 4), (503, 4)]
)
def test_client_errors_are_not_retried(sink: WebhookSink, status: int, attempts: int) -> None:
    """A 4xx is final (except 408 and 429), a 5xx is retried up to 3 times."""
    sink.fail_next(4, status=status)
    delivery = WebhookSender().deliver(endpoint(sink.url), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, attempts, status)
    assert len(sink.deliveries) == attempts


def test_wrong_secret_is_rejected_by_the_receiver(sink: WebhookSink) -> None:
    """Signed with another secret, the receiver's verification fails and answers 401."""
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    delivery = WebhookSender().deliver(endpoint(sink.url, secret=other), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.status_code) == (False, 401)
    assert not sink.deliveries[0].verified


@pytest.mark.parametrize(
    "url",
    ["http://example.com/hook", "http://10.0.0.5/hook", "ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/"],
    ids=["remote-http", "private-ip-http", "ftp", "credentials"],
)
def test_refused_urls_are_never_contacted(url: str) -> None:
    """Plain http off loopback (and other bad URLs) is refused as a failed Delivery with no connection attempt."""
    delivery = WebhookSender(session=NoNetworkSession()).deliver(endpoint(url), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 0, None)
    assert delivery.error is not None
    assert delivery.error.startswith("refused")


def test_secret_and_body_are_never_logged(sink: WebhookSink, caplog: pytest.LogCaptureFixture) -> None:
    """Even at DEBUG, neither the signing secret nor the payload appears in the logs."""
    sink.fail_next(1, status=503)
    log_retries_at_debug()  # the app's retry log, as build_runtime installs it
    with caplog.at_level(logging.DEBUG):
        WebhookSender().deliver(endpoint(sink.url), PAYLOAD, webhook_id="m")
    text = "\n".join(record.getMessage() + repr(vars(record)) for record in caplog.records)
    assert "attempt 1 failed" in text
    assert "retry name=" in text
    assert SECRET[6:] not in text
    assert "certificate_id" not in text


def test_a_token_in_the_url_never_reaches_the_logs(sink: WebhookSink, caplog: pytest.LogCaptureFixture) -> None:
    """A connection error's text repeats the URL; neither our lines nor the retry records (extras included) carry
    it."""
    sink.down = True
    token = "tok-5e5e5e5e"
    log_retries_at_debug()  # the app's retry log, as build_runtime installs it
    with caplog.at_level(logging.DEBUG):
        delivery = WebhookSender().deliver(endpoint(f"{sink.url}hook/{token}?key={token}"), PAYLOAD, webhook_id="m")
    assert (delivery.delivered, delivery.attempts) == (False, 4)
    names = ("renewal.flow.runtime", "renewal.shells.webhooks")
    records = [record for record in caplog.records if record.name in names]
    assert any(record.name == "renewal.flow.runtime" for record in records)
    for record in records:
        assert token not in record.getMessage() + repr(vars(record))
    assert delivery.error is not None
    assert token not in delivery.error
