"""Key Vault Event Grid events: envelopes, expiry events on the emulator clock, delivery, retries, dead letters."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.certificates import CertificatePolicy

from devstack.keyvault import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_NEAR_EXPIRY,
    CERTIFICATE_NEW_VERSION_CREATED,
    KeyVaultEmulator,
)
from tests.fakes.loopback import LoopbackServer, Request, Response

from .conftest import raw_call

TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/devstack"
    "/providers/Microsoft.KeyVault/vaults/kv1"
)
DAY = 86400
# 2027-02-01T00:00:00Z: a month from here is 28 days long, whatever the day the suite runs.
FIRST_OF_FEBRUARY = 1801440000.0


@dataclass(frozen=True, slots=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: Any
    at: float


class Receiver:
    """A loopback HTTP endpoint that records what it receives and answers scripted statuses (then 200).

    With ``hold`` it keeps each answer until ``release()`` (or ten seconds): a slow subscriber.
    """

    def __init__(self, statuses: list[int] | None = None, *, always: int | None = None, hold: bool = False) -> None:
        self.received: list[Received] = []
        self.answered = 0
        self._statuses = list(statuses or [])
        self._always = always
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._cond = threading.Condition()
        self._server = LoopbackServer(self.handle)
        self.url = f"{self._server.url}/api/events?code=abc"

    def handle(self, request: Request) -> Response:
        """The answer function: record the event, then answer the next scripted status."""
        with self._cond:
            self.received.append(Received(request.target, dict(request.headers), request.json(), time.monotonic()))
            status = self._statuses.pop(0) if self._statuses else (self._always or 200)
            self._cond.notify_all()
        self._released.wait(timeout=10)
        with self._cond:
            self.answered += 1
        return Response(status)

    def release(self) -> None:
        """Let a holding receiver answer."""
        self._released.set()

    def __enter__(self) -> Receiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.stop()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until ``count`` requests arrived; raise ``TimeoutError`` otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.received)} of {count} requests received")
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A loopback event receiver that answers 200."""
    with Receiver() as r:
        yield r


def create_self_signed(emu: KeyVaultEmulator, name: str, *, months: int = 12) -> None:
    """Create a Self-issued certificate through the SDK."""
    policy = CertificatePolicy(issuer_name="Self", subject=f"CN={name}", validity_in_months=months)
    emu.certificate_client().begin_create_certificate(name, policy=policy).result()


def test_new_version_event_has_the_event_grid_envelope(keyvault_emulator: KeyVaultEmulator, receiver: Receiver) -> None:
    """A Self create delivers CertificateNewVersionCreated as an Event Grid array of one with Key Vault's data."""
    keyvault_emulator.events.subscribe(receiver.url)
    create_self_signed(keyvault_emulator, "web")
    (request,) = receiver.wait_for(1)
    properties = keyvault_emulator.certificate_client().get_certificate("web").properties
    assert properties is not None
    version = properties.version
    assert request.path == "/api/events?code=abc"
    assert request.headers["aeg-event-type"] == "Notification"
    assert request.headers["content-type"] == "application/json"
    assert isinstance(request.body, list)
    assert len(request.body) == 1
    event = request.body[0]
    assert set(event) == {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
    uuid.UUID(event["id"])
    assert event["topic"] == TOPIC
    assert event["subject"] == "web"
    assert event["eventType"] == CERTIFICATE_NEW_VERSION_CREATED
    assert event["eventTime"].endswith("Z")
    assert (event["dataVersion"], event["metadataVersion"]) == ("1", "1")
    data = event["data"]
    assert data == {
        "Id": f"{keyvault_emulator.url()}/certificates/web/{version}",
        "VaultName": "kv1",
        "ObjectType": "Certificate",
        "ObjectName": "web",
        "Version": version,
        "NBF": data["NBF"],
        "EXP": data["EXP"],
    }
    assert isinstance(data["NBF"], int)
    assert isinstance(data["EXP"], int)
    assert data["EXP"] - data["NBF"] > 300 * DAY
    attempts = keyvault_emulator.events.wait_for_deliveries(1)
    assert (attempts[0].status, attempts[0].succeeded, attempts[0].event_id) == (200, True, event["id"])


def test_unknown_issuer_create_emits_nothing_until_merge(
    keyvault_emulator: KeyVaultEmulator, receiver: Receiver
) -> None:
    """A pending (Unknown-issuer) create is not a new version yet, so no event is published."""
    keyvault_emulator.events.subscribe(receiver.url)
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=pending")
    keyvault_emulator.certificate_client().begin_create_certificate("pending", policy=policy).result()
    keyvault_emulator.events.wait_idle()
    assert keyvault_emulator.events.published == []


def test_expiry_events_follow_the_emulator_clock_once_each(
    keyvault_emulator: KeyVaultEmulator, receiver: Receiver
) -> None:
    """Advancing the clock into the last 30 days sends NearExpiry once; past expiry, Expired once."""
    create_self_signed(keyvault_emulator, "soon", months=3)
    exp = keyvault_emulator.events.published[0]["data"]["EXP"]  # type: ignore[index]
    keyvault_emulator.events.subscribe(receiver.url)
    keyvault_emulator.clock.set(exp - 31 * DAY)
    keyvault_emulator.events.wait_idle()
    assert receiver.received == []
    keyvault_emulator.clock.set(exp - 29 * DAY)
    keyvault_emulator.clock.advance(DAY)
    receiver.wait_for(1)
    keyvault_emulator.clock.set(exp + 1)
    keyvault_emulator.clock.advance(DAY)
    receiver.wait_for(2)
    keyvault_emulator.events.wait_idle()
    assert [r.body[0]["eventType"] for r in receiver.received] == [CERTIFICATE_NEAR_EXPIRY, CERTIFICATE_EXPIRED]
    near = receiver.received[0].body[0]
    assert near["eventTime"].startswith(time.strftime("%Y-%m-%d", time.gmtime(exp - 29 * DAY)))


def test_background_ticker_emits_without_a_clock_change(tmp_path: Path, receiver: Receiver) -> None:
    """The ticker alone notices a certificate that reached its last 30 days."""
    with KeyVaultEmulator(state_dir=tmp_path, tick_interval=0.05) as emu:
        # A fixed start, never today's date: one month from 1 February is 28 days, inside the last 30 days.
        emu.clock.set(FIRST_OF_FEBRUARY)
        emu.events.subscribe(receiver.url)
        create_self_signed(emu, "ticked", months=1)
        received = receiver.wait_for(2)
        assert [r.body[0]["eventType"] for r in received] == [CERTIFICATE_NEW_VERSION_CREATED, CERTIFICATE_NEAR_EXPIRY]


def test_fire_sends_an_event_for_the_current_version_now(
    keyvault_emulator: KeyVaultEmulator, receiver: Receiver
) -> None:
    """fire() publishes the requested event type about the current version immediately."""
    create_self_signed(keyvault_emulator, "fired")
    keyvault_emulator.events.subscribe(receiver.url)
    envelope = keyvault_emulator.fire("kv1", "fired", "CertificateNearExpiry")
    (request,) = receiver.wait_for(1)
    assert request.body == [envelope]
    assert envelope["eventType"] == CERTIFICATE_NEAR_EXPIRY
    with pytest.raises(KeyError):
        keyvault_emulator.fire("kv1", "no-such-cert", CERTIFICATE_NEAR_EXPIRY)


def test_control_api_adds_a_subscriber_and_fires(keyvault_emulator: KeyVaultEmulator, receiver: Receiver) -> None:
    """POST /_emulator/events/subscribers and /_emulator/events/fire work over HTTP without a token."""
    create_self_signed(keyvault_emulator, "remote")
    url, ca = keyvault_emulator.url(), keyvault_emulator.ca_pem_path
    body = json.dumps({"url": receiver.url}).encode()
    assert raw_call(url, ca, "POST", "/_emulator/events/subscribers", body=body, token=None).status == 201
    fire = json.dumps({"certificate": "remote", "eventType": CERTIFICATE_EXPIRED}).encode()
    fired = raw_call(url, ca, "POST", "/_emulator/events/fire", body=fire, token=None)
    assert fired.status == 200
    (request,) = receiver.wait_for(1)
    assert request.body[0]["id"] == fired.json()["id"]  # type: ignore[index]
    keyvault_emulator.events.wait_for_deliveries(1)
    deliveries = raw_call(url, ca, "GET", "/_emulator/events/deliveries", token=None).json()
    assert deliveries["deliveries"][0]["status"] == 200  # type: ignore[index]
    missing = json.dumps({"certificate": "nope", "eventType": CERTIFICATE_EXPIRED}).encode()
    assert raw_call(url, ca, "POST", "/_emulator/events/fire", body=missing, token=None).status == 404


def test_failing_subscriber_is_retried_on_the_compressed_schedule_then_dead_lettered(tmp_path: Path) -> None:
    """A subscriber answering 500 gets Event Grid's 10 s ... 12 h retries (compressed), then a dead letter."""
    # The 24 h TTL counts the attempts' own time too, as Event Grid's does: the schedule leaves 4 400 s of it,
    # which 25 000-fold compression makes 0.18 s for ten round trips, enough on a loaded machine.
    compression = 25_000
    with (
        Receiver(always=500) as failing,
        KeyVaultEmulator(state_dir=tmp_path, event_retry_compression=compression) as emu,
    ):
        emu.events.subscribe(failing.url)
        create_self_signed(emu, "unlucky")
        (dead,) = emu.events.wait_for_dead_letters(1, timeout=30)
        attempts = emu.events.deliveries
        # 1 + 10 retries: 10 s ... 6 h (9 steps) and one 12 h step; the next 12 h would pass the 24 h TTL.
        assert [a.attempt for a in attempts] == list(range(1, 12))
        assert all(a.status == 500 and not a.succeeded for a in attempts)
        assert (dead.reason, dead.delivery_attempts, dead.last_outcome) == ("MaxRetryDurationExceeded", 11, "500")
        assert dead.event["subject"] == "unlucky"
        gaps = [b.at - a.at for a, b in zip(failing.received, failing.received[1:], strict=False)]
        assert gaps[-1] >= 43200 / compression * 0.9
        assert gaps[-2] >= 21600 / compression * 0.9
        assert sum(gaps[:3]) < 0.15


def test_unreachable_subscriber_records_the_error(tmp_path: Path) -> None:
    """A connection error is recorded as an error, retried, and ends as a dead letter."""
    with Receiver() as closed:
        url = closed.url
    with KeyVaultEmulator(state_dir=tmp_path, event_retry_compression=100_000) as emu:
        emu.events.subscribe(url)
        create_self_signed(emu, "nobody-home")
        emu.events.wait_for_dead_letters(1, timeout=8)
        first = emu.events.deliveries[0]
        assert first.status is None
        assert first.error is not None
        assert "Connection" in first.error


def test_400_is_not_retried(keyvault_emulator: KeyVaultEmulator) -> None:
    """A 400 from the subscriber is final: one attempt, then a dead letter."""
    with Receiver(always=400) as rejecting:
        keyvault_emulator.events.subscribe(rejecting.url)
        create_self_signed(keyvault_emulator, "rejected")
        (dead,) = keyvault_emulator.events.wait_for_dead_letters(1)
        keyvault_emulator.events.wait_idle()
        assert len(rejecting.received) == 1
        assert (dead.reason, dead.delivery_attempts) == ("NonRetriableStatus", 1)


def test_a_retry_that_succeeds_stops_retrying(keyvault_emulator: KeyVaultEmulator) -> None:
    """After two 503s the third attempt's 202 ends delivery without a dead letter."""
    with Receiver([503, 503, 202]) as flaky:
        keyvault_emulator.events.subscribe(flaky.url)
        create_self_signed(keyvault_emulator, "flaky")
        keyvault_emulator.events.wait_for_deliveries(1, succeeded=True)
        keyvault_emulator.events.wait_idle()
        assert [a.status for a in keyvault_emulator.events.deliveries] == [503, 503, 202]
        assert keyvault_emulator.events.dead_letters == []


def test_cloudevents_subscriber_gets_a_structured_cloudevent(
    keyvault_emulator: KeyVaultEmulator, receiver: Receiver
) -> None:
    """A CloudEvents subscriber gets one structured CloudEvents 1.0 event with source = the vault's topic."""
    keyvault_emulator.events.subscribe(receiver.url, schema="CloudEvents")
    create_self_signed(keyvault_emulator, "cloudy")
    (request,) = receiver.wait_for(1)
    assert request.headers["content-type"].startswith("application/cloudevents+json")
    assert request.headers["aeg-event-type"] == "Notification"
    event = request.body
    assert event["specversion"] == "1.0"
    assert event["source"] == TOPIC
    assert event["type"] == CERTIFICATE_NEW_VERSION_CREATED
    assert event["subject"] == "cloudy"
    assert event["time"].endswith("Z")
    assert event["data"]["ObjectName"] == "cloudy"


def test_delivery_never_runs_inside_the_request(keyvault_emulator: KeyVaultEmulator) -> None:
    """A slow subscriber does not slow down the create that caused the event."""
    with Receiver(hold=True) as slow:
        keyvault_emulator.events.subscribe(slow.url)
        create_self_signed(keyvault_emulator, "quick")
        # The subscriber holds its answer until released: a create that waited for the delivery would not be back.
        assert slow.answered == 0
        slow.release()
        slow.wait_for(1, timeout=5)


def test_every_subscriber_gets_each_event(keyvault_emulator: KeyVaultEmulator) -> None:
    """Two subscribers each receive the event; a subscriber for another vault receives nothing."""
    with Receiver() as first, Receiver() as second, Receiver() as elsewhere:
        keyvault_emulator.events.subscribe(first.url)
        keyvault_emulator.events.subscribe(second.url)
        keyvault_emulator.events.subscribe(elsewhere.url, vault="kv2")
        create_self_signed(keyvault_emulator, "shared")
        assert first.wait_for(1)[0].body == second.wait_for(1)[0].body
        keyvault_emulator.events.wait_idle()
        assert elsewhere.received == []


def test_subscribers_given_at_start_receive_events(tmp_path: Path, receiver: Receiver) -> None:
    """event_subscribers passed to the constructor are subscribed from the start."""
    with KeyVaultEmulator(state_dir=tmp_path, event_subscribers=[receiver.url]) as emu:
        create_self_signed(emu, "early")
        assert receiver.wait_for(1)[0].body[0]["subject"] == "early"
