"""Pacing where it counts: certificate creates from several instances, each with its own Key Vault clients and
its own pacer on the shared table, never exceed the vault's create rate at the emulator (so Key Vault's 429 is
never needed); and the Key Vault shell's own costs: a listing is its pages and nothing per certificate."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.azurite import Azurite
from devstack.keyvault import KeyVaultEmulator, ThrottleLimits
from devstack.localca import LocalCAFiles, create_local_ca
from devstack.seed import seed_fleet
from renewal.errors import ThrottledError
from renewal.shells.journal import table_client_from_environ
from renewal.shells.keyvault import KeyVaultClients, StaticTokenCredential
from renewal.shells.pacing import InMemoryPacer, Pacer, PacingOptions, TablePacer
from tests.pacing.test_pacing_rule import Clock

WINDOW = 1.0
RATE = 5
# The guard is generous for a 1-second window: a loaded test machine can send a few hundred milliseconds late.
OPTIONS = PacingOptions(creates_per_window=RATE, window_seconds=WINDOW, guard_seconds=0.5)


@pytest.fixture
def ca(tmp_path: Path) -> LocalCAFiles:
    """A local CA to seed certificates with."""
    return create_local_ca(tmp_path / "ca")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[KeyVaultEmulator]:
    """An emulator with one vault and no background ticker."""
    with KeyVaultEmulator(state_dir=tmp_path / "kv", vaults=["kv1"], tick_interval=None) as emu:
        yield emu


def seeded(emulator: KeyVaultEmulator, ca: LocalCAFiles, count: int) -> list[str]:
    """``count`` certificates seeded into kv1, valid for 20 more days."""
    now = datetime.fromtimestamp(emulator.clock(), UTC)
    names = [f"cert{n:03d}" for n in range(count)]
    seed_fleet(emulator, "kv1", names, ca, not_before=now - timedelta(days=70), not_after=now + timedelta(days=20))
    return names


def clients(emulator: KeyVaultEmulator, pacer: Pacer | None, **options: object) -> KeyVaultClients:
    """One instance's Key Vault clients (the SDK retries nothing, so every 429 reaches the shell)."""
    return KeyVaultClients(
        credential=StaticTokenCredential("pacing-test"),
        connection_verify=str(emulator.ca_pem_path),
        retry_total=0,
        pacer=pacer,
        **options,  # type: ignore[arg-type]
    )


def renew_from_instances(emulator: KeyVaultEmulator, instances: list[KeyVaultClients], names: list[str]) -> list[str]:
    """Two threads per instance begin new versions of ``names`` at once; the names whose create was throttled."""
    throttled: list[str] = []
    queue = list(names)
    lock = threading.Lock()

    def worker(instance: KeyVaultClients) -> None:
        vault = instance.vault(emulator.url("kv1"))
        while True:
            with lock:
                if not queue:
                    return
                name = queue.pop()
            try:
                vault.create_version(vault.read(name), tags={})
            except ThrottledError:
                with lock:
                    throttled.append(name)

    threads = [threading.Thread(target=worker, args=(instance,)) for instance in instances for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return throttled


def most_creates_in_a_window(emulator: KeyVaultEmulator) -> int:
    """The most creates the vault answered inside any window of ``WINDOW`` seconds (by arrival time)."""
    times = sorted(e.received_at for e in emulator.request_log.entries(operation="create", answered_by="vault"))
    return max((sum(1 for t in times[i:] if t < start + WINDOW) for i, start in enumerate(times)), default=0)


def test_instances_pacing_through_the_table_never_reach_key_vaults_throttle(
    emulator: KeyVaultEmulator, ca: LocalCAFiles, azurite: Azurite
) -> None:
    """Three instances of two threads, each instance with its own pacer on one table, create 15 versions with
    no 429 at all and never more than the vault's rate in any window."""
    names = seeded(emulator, ca, 15)
    emulator.throttle.enable(ThrottleLimits(create=RATE, window_seconds=WINDOW))
    table = f"pace{uuid.uuid4().hex[:12]}"
    environ = {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}
    instances = [
        clients(emulator, TablePacer(table_client_from_environ(environ, table), clock=time.time, options=OPTIONS))
        for _ in range(3)
    ]
    started = time.monotonic()
    assert renew_from_instances(emulator, instances, names) == []
    elapsed = time.monotonic() - started
    assert emulator.request_log.count(operation="create", status=429) == 0
    assert emulator.request_log.count(operation="create", status=202) == 15
    assert most_creates_in_a_window(emulator) <= RATE
    # Paced, not serialised: about one span per rate's worth of creates after the first.
    assert elapsed < (math.ceil(15 / RATE) - 1) * OPTIONS.span_seconds + 3.0


def test_without_pacing_the_same_load_meets_the_throttle(emulator: KeyVaultEmulator, ca: LocalCAFiles) -> None:
    """The same three instances with no pacer get 429s from the vault: the pacing is what keeps them away."""
    names = seeded(emulator, ca, 15)
    emulator.throttle.enable(ThrottleLimits(create=RATE, window_seconds=WINDOW))
    instances = [clients(emulator, None, throttle_delays=(0.01,)) for _ in range(3)]
    throttled = renew_from_instances(emulator, instances, names)
    assert emulator.request_log.count(operation="create", status=429) > 0
    assert throttled


def test_a_create_whose_slot_is_too_far_is_deferred_without_a_request(
    emulator: KeyVaultEmulator, ca: LocalCAFiles
) -> None:
    """When the vault's rate is spent past the pacing wait, the create raises ``ThrottledError`` with the wait
    and sends nothing to Key Vault."""
    names = seeded(emulator, ca, 3)
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=2, guard_seconds=0.0))
    vault = clients(emulator, pacer, pacing_wait_seconds=5.0, sleep=clock.sleep).vault(emulator.url("kv1"))
    for name in names[:2]:
        vault.create_version(vault.read(name), tags={})
    snapshot = vault.read(names[2])
    emulator.request_log.clear()
    with pytest.raises(ThrottledError) as raised:
        vault.create_version(snapshot, tags={})
    assert raised.value.retry_after == pytest.approx(10.0)
    assert emulator.request_log.count(operation="create") == 0
    assert clock.slept == []


def test_a_create_waits_for_its_slot_through_the_injected_sleep(emulator: KeyVaultEmulator, ca: LocalCAFiles) -> None:
    """A slot within the pacing wait is slept for (on the injected clock), then the create goes out."""
    names = seeded(emulator, ca, 2)
    clock = Clock()
    pacer = InMemoryPacer(clock=clock, options=PacingOptions(creates_per_window=1, guard_seconds=0.5))
    vault = clients(emulator, pacer, pacing_wait_seconds=15.0, sleep=clock.sleep).vault(emulator.url("kv1"))
    for name in names:
        assert vault.create_version(vault.read(name), tags={}).csr_der
    assert clock.slept == [10.5]
    assert emulator.request_log.count(operation="create", status=202) == 2


def test_listing_costs_only_its_pages(emulator: KeyVaultEmulator, ca: LocalCAFiles) -> None:
    """Listing 60 certificates with their validity and tags costs 3 pages and no request per certificate."""
    seeded(emulator, ca, 60)
    instance = clients(emulator, None)
    vault = instance.vault(emulator.url("kv1"))
    list(vault.list_certificate_properties())  # the first request also answers the bearer challenge
    emulator.request_log.clear()
    before = instance.sent.requests
    listed = vault.list_certificate_properties()
    assert len(listed) == 60
    assert all(item.expires_on is not None for item in listed)
    assert instance.sent.requests - before == 3
    assert (
        emulator.request_log.authenticated_requests()
        == emulator.request_log.authenticated_requests(operation="list")
        == 3
    )


def test_the_request_count_includes_challenges_and_retries(emulator: KeyVaultEmulator, ca: LocalCAFiles) -> None:
    """Every HTTP request is counted as the emulator sees it: the challenge probe, the SDK's retries, the rest."""
    names = seeded(emulator, ca, 1)
    emulator.faults.script("get", 503, count=1)
    instance = KeyVaultClients(
        credential=StaticTokenCredential("pacing-test"),
        connection_verify=str(emulator.ca_pem_path),
        retry_total=2,
        retry_backoff_factor=0.0,
    )
    instance.vault(emulator.url("kv1")).read(names[0])
    assert instance.sent.requests == len(emulator.request_log) == 3
