"""The pacing rule on an injected clock: no span of ``window + guard`` seconds ever holds more than a vault's rate
of create slots, a caller waits for its own slot or defers when it is too far away, and the rates are settings."""

from __future__ import annotations

import pytest

from renewal.errors import ConfigurationError, ThrottledError
from renewal.shells.pacing import (
    InMemoryPacer,
    NoPacing,
    PacingOptions,
    Reservation,
    next_slot,
    vault_key,
    wait_for_slot,
)

START = 1_800_000_000.0


class Clock:
    """A settable clock in Unix seconds that ``sleep`` advances (no test sleeps)."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def most_in_any_span(times: list[float], span: float) -> int:
    """The largest number of ``times`` inside one half-open interval of ``span`` seconds."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered[i:] if t < start + span) for i, start in enumerate(ordered)), default=0)


def test_the_first_slots_of_a_window_are_granted_at_once() -> None:
    """Up to the rate, reservations are granted now with no delay."""
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=3))
    answers = [pacer.reserve("kv1.vault.azure.net", within=0.0) for _ in range(3)]
    assert answers == [Reservation(granted=True, delay=0.0, at=START)] * 3


def test_past_the_rate_the_next_slot_is_a_whole_span_after_the_oldest() -> None:
    """The rate-plus-first reservation waits until the oldest one is a window and the guard old."""
    clock = Clock()
    options = PacingOptions(creates_per_window=2, window_seconds=10.0, guard_seconds=0.25)
    pacer = InMemoryPacer(clock=clock, options=options)
    pacer.reserve("kv", within=0.0)
    clock.now += 1.0
    pacer.reserve("kv", within=0.0)
    third = pacer.reserve("kv", within=60.0)
    assert third == Reservation(granted=True, delay=9.25, at=START + 10.25)


def test_a_slot_further_than_the_caller_will_wait_is_not_reserved() -> None:
    """A caller who will not wait that long learns the wait, and no slot is used up for it."""
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=1, guard_seconds=0.0))
    pacer.reserve("kv", within=0.0)
    refused = pacer.reserve("kv", within=5.0)
    assert refused == Reservation(granted=False, delay=10.0)
    assert pacer.reservations["kv"] == [START]


def test_no_span_ever_holds_more_than_the_rate_however_callers_arrive() -> None:
    """Hundreds of callers arriving in bursts and trickles never get more than the rate in any span."""
    clock = Clock()
    options = PacingOptions(creates_per_window=20, window_seconds=10.0, guard_seconds=0.25)
    pacer = InMemoryPacer(clock=clock, options=options)
    for step in range(400):
        # Bursts of 30 at one instant, then callers every 0.1 s: both kinds of arrival.
        clock.now += 0.0 if step % 40 < 30 else 0.1
        assert pacer.reserve("kv", within=3600.0).granted
    slots = pacer.reservations["kv"]
    assert len(slots) == 400
    assert most_in_any_span(slots, options.span_seconds) == 20
    assert slots == sorted(slots)


def test_vaults_are_paced_apart() -> None:
    """One vault's spent rate does not hold up another's creates."""
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=1))
    assert pacer.reserve("kv1", within=0.0).granted
    assert pacer.reserve("kv2", within=0.0) == Reservation(granted=True, delay=0.0, at=START)


def test_a_caller_sleeps_until_its_own_slot() -> None:
    """``wait_for_slot`` sleeps exactly until the reserved slot, through the injected sleep."""
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=1, guard_seconds=0.5))
    wait_for_slot(pacer, "kv", within=15.0, sleep=clock.sleep)
    wait_for_slot(pacer, "kv", within=15.0, sleep=clock.sleep)
    assert clock.slept == [10.5]
    assert clock.now == START + 10.5


def test_a_slot_too_far_away_defers_the_create_with_the_wait() -> None:
    """Past the caller's wait, ``ThrottledError`` carries how long until a slot frees, and nothing slept."""
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=1, guard_seconds=0.0))
    wait_for_slot(pacer, "kv", within=15.0, sleep=clock.sleep)
    with pytest.raises(ThrottledError) as raised:
        wait_for_slot(pacer, "kv", within=5.0, sleep=clock.sleep)
    assert raised.value.reason == "keyvault_throttled"
    assert raised.value.retry_after == 10.0
    assert clock.slept == []


def test_next_slot_forgets_reservations_older_than_the_span() -> None:
    """Reservations a whole span old no longer count, and are dropped from what is stored."""
    slot, live = next_slot([START - 20.0, START - 10.5, START - 1.0], START, limit=2, span=10.25)
    assert live == [START - 1.0]
    assert slot == START


def test_no_pacing_grants_everything_at_once() -> None:
    """The no-op pacer never waits."""
    assert NoPacing().reserve("kv", within=0.0) == Reservation(granted=True, delay=0.0)


def test_a_rate_of_zero_turns_pacing_off_for_that_vault() -> None:
    """A vault whose rate is 0 is not paced."""
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=0))
    assert all(pacer.reserve("kv", within=0.0).granted for _ in range(100))


def test_rates_are_read_from_the_app_settings() -> None:
    """``RENEWAL_VAULT_CREATE_RATE`` sets every vault's rate; ``RENEWAL_VAULT_CREATE_RATES`` names exceptions."""
    options = PacingOptions.from_environ(
        {"RENEWAL_VAULT_CREATE_RATE": "15", "RENEWAL_VAULT_CREATE_RATES": "kv-hsm=10, Shared=5"}
    )
    assert options.creates_per_window == 15
    assert options.limit_for(vault_key("https://kv-hsm.vault.azure.net/")) == 10
    assert options.limit_for(vault_key("https://shared.vault.azure.net")) == 5
    assert options.limit_for(vault_key("https://other.vault.azure.net")) == 15
    assert options.limit_for("127.0.0.1:8443") == 15


def test_the_default_rate_is_key_vaults_software_key_create_limit() -> None:
    """With no setting, each vault may create 20 certificates per 10 seconds."""
    options = PacingOptions.from_environ({})
    assert (options.creates_per_window, options.window_seconds, options.enabled) == (20, 10.0, True)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("RENEWAL_VAULT_CREATE_RATE", "fast"),
        ("RENEWAL_VAULT_CREATE_RATE", "-1"),
        ("RENEWAL_VAULT_CREATE_RATES", "kv1"),
        ("RENEWAL_VAULT_CREATE_RATES", "kv1=ten"),
    ],
)
def test_a_malformed_rate_names_its_setting(setting: str, value: str) -> None:
    """A rate that is not a whole number from 0 up, or an override that is not ``name=rate``, is refused."""
    with pytest.raises(ConfigurationError) as raised:
        PacingOptions.from_environ({setting: value})
    assert raised.value.setting == setting


def test_the_pacing_key_is_the_vaults_host() -> None:
    """Clients of one vault share its slots whatever the URL's case, path or trailing slash."""
    assert (
        vault_key("https://KV1.vault.azure.net/") == vault_key("https://kv1.vault.azure.net") == "kv1.vault.azure.net"
    )
    assert vault_key("https://127.0.0.1:8443") == "127.0.0.1:8443"
