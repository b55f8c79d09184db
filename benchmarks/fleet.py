"""The fleet sweep (issue 11): 20,000 certificates across 20 emulated vaults, none due, swept the way the queue's
fan-out runs it: one unit per vault (``renewal.flow.sweep.sweep_vault``) on N concurrent workers, as a Flex
Consumption instance runs queue messages; then the same fleet swept in one process, vault after vault (the timer's
``sweep``), for comparison.

The emulator runs in its own process (as Key Vault shares nothing with the app). The fleet is seeded straight into
its model (EC P-256 leaves from the local CA; the seeding time is
printed apart), and the journal holds a finished renewal for every certificate, as it would after a year, plus a
few renewals under way. It prints the wall time of each sweep, Key Vault requests per certificate (goal: at most
1/25, the listing alone) counted both by the app's clients and at the emulator, and the journal reads per sweep
(requests and rows), which must follow what is under way and not the fleet.

Run: ``.venv/bin/python -m benchmarks.fleet [--vaults 20] [--per-vault 1000] [--workers 16]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks._emulator_process import EmulatorProcess
from devstack.azurite import Azurite
from devstack.localca import LocalCAFiles


@dataclass
class Fleet:
    """A running local fleet: Azurite, the emulator (in its own process) with its vaults, the local CA and the
    app's settings."""

    azurite: Azurite
    emulator: EmulatorProcess
    ca: LocalCAFiles
    vaults: list[str]
    environ: dict[str, str]


@contextmanager
def fleet_stack(tmp: Path, vaults: list[str], *, extra: Mapping[str, str] | None = None) -> Iterator[Fleet]:
    """Azurite, one emulator serving ``vaults`` (one port each) and the settings that point the app at them."""
    with Azurite() as azurite:
        emulator = EmulatorProcess(tmp, vaults)
        ca = LocalCAFiles(**{key: Path(value) for key, value in emulator.ca.items()})
        environ = {
            "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
            "RENEWAL_VAULTS": ",".join(f"{name}={emulator.urls[name]}" for name in vaults),
            "RENEWAL_KEYVAULT_CA_BUNDLE": emulator.ca_pem_path,
            "RENEWAL_KEYVAULT_STATIC_TOKEN": "fleet-token",
            "RENEWAL_CA_PROFILES": json.dumps({"corp": ca.profile_options()}),
            "RENEWAL_DEFAULT_CA_PROFILE": "corp",
            "RENEWAL_SWEEP_BUDGET_SECONDS": "3600",
            **(extra or {}),
        }
        try:
            yield Fleet(azurite, emulator, ca, vaults, environ)
        finally:
            emulator.stop()


def seed(
    fleet: Fleet, per_vault: int, *, expires_in: timedelta, lived: timedelta
) -> tuple[dict[str, list[str]], float]:
    """Seed ``per_vault`` certificates into each vault; the names per vault and the seconds it took."""
    names = {vault: [f"{vault}-c{n:05d}" for n in range(per_vault)] for vault in fleet.vaults}
    started = time.perf_counter()
    fleet.emulator.call("seed", {"names": names, "lived_days": lived.days, "expires_in_days": expires_in.days})
    return names, time.perf_counter() - started


def fill_journal(
    fleet: Fleet, names: Mapping[str, list[str]], *, under_way_per_vault: int, delivered_per_vault: int, now: float
) -> float:
    """Write a finished renewal for every certificate, a few renewals under way (a CA request deferred, polled
    later) and delivered webhooks kept for the retention period, per vault, in entity-group batches; the seconds
    it took."""
    from renewal.settings import Settings
    from renewal.shells.journal import (
        OutboxItem,
        RenewalRecord,
        _outbox_entity,
        _record_entity,
        table_client_from_environ,
    )
    from renewal.steps import Step

    table = table_client_from_environ(fleet.environ, Settings.from_environ(fleet.environ).journal_table)
    table.create_table()
    started = time.perf_counter()
    for vault, vault_names in names.items():
        entities = []
        for index, name in enumerate(vault_names):
            record = RenewalRecord(vault, name, step=Step.DONE, ca_profile="corp", new_version="0" * 32)
            if index < under_way_per_vault:
                record = replace(record, step=Step.POLL, ca_reference=f"ref-{index}", next_attempt_at=now + 3600)
            entities.append(_record_entity(record))
        for index, name in enumerate(vault_names[:delivered_per_vault]):
            item = OutboxItem(
                vault, f"msg_{index:032x}", "sink", name, "0" * 32, "{}", status="delivered", created_at=now - 3600
            )
            entities.append(_outbox_entity(item))
        for start in range(0, len(entities), 100):
            table.submit_transaction([("upsert", entity) for entity in entities[start : start + 100]])
    return time.perf_counter() - started


def build(fleet: Fleet) -> Any:
    """The app's runtime for the fleet, with Key Vault clients whose requests are counted."""
    from renewal.flow.runtime import build_runtime
    from renewal.settings import Settings
    from renewal.shells.keyvault import KeyVaultClients, StaticTokenCredential

    settings = Settings.from_environ(fleet.environ)
    clients = KeyVaultClients(
        credential=StaticTokenCredential("fleet-token"), connection_verify=fleet.emulator.ca_pem_path
    )
    return build_runtime(settings, keyvault=clients)


def measure(fleet: Fleet, runtime: Any, run: Any) -> dict[str, float]:
    """Run one sweep through ``run``; its wall time, Key Vault requests and journal reads."""
    fleet.emulator.call("clear_log")
    sent, reads, rows = runtime.keyvault.sent.requests, runtime.journal.reads.requests, runtime.journal.reads.entities
    started = time.perf_counter()
    reports = run()
    return {
        "seconds": time.perf_counter() - started,
        "sent": runtime.keyvault.sent.requests - sent,
        "at_emulator": len(fleet.emulator.call("log", {"authenticated": True})),
        "lists": len(fleet.emulator.call("log", {"authenticated": True, "operation": "list"})),
        "journal_requests": runtime.journal.reads.requests - reads,
        "journal_rows": runtime.journal.reads.entities - rows,
        "started": sum(len(r.started) for r in reports),
        "failed": sum(len(r.failed) for r in reports),
    }


def through_the_queue(fleet: Fleet, runtime: Any, workers: int) -> list[Any]:
    """The planner sends one message per vault to an Azurite queue; ``workers`` threads take messages one at a
    time, as the queue trigger hands them out, and run the unit each names; the units' reports."""
    import threading

    from azure.storage.queue import QueueClient

    from renewal.flow.fanout import VaultWork, plan_sweep, read_message
    from renewal.flow.sweep import sweep_vault
    from renewal.shells.queue import StorageQueue

    name = f"sweep-{uuid.uuid4().hex[:8]}"
    plan_sweep(runtime, StorageQueue(QueueClient.from_connection_string(fleet.azurite.connection_string, name)))
    reports: list[Any] = []
    lock = threading.Lock()

    def worker() -> None:
        client = QueueClient.from_connection_string(fleet.azurite.connection_string, name)
        while True:
            message = next(iter(client.receive_messages(messages_per_page=1, visibility_timeout=300)), None)
            if message is None:
                return
            work = read_message(message.content)
            assert isinstance(work, VaultWork)
            report = sweep_vault(runtime, work.vault_name)
            client.delete_message(message)
            with lock:
                reports.append(report)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vaults", type=int, default=20)
    parser.add_argument("--per-vault", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16, help="concurrent queue messages on one instance")
    parser.add_argument("--under-way", type=int, default=5, help="renewals under way per vault in the journal")
    parser.add_argument(
        "--delivered", type=int, default=100, help="delivered webhooks per vault kept in the journal's outbox"
    )
    args = parser.parse_args()

    from renewal.flow.sweep import sweep, sweep_vault

    vaults = [f"fleet{n:02d}" for n in range(args.vaults)]
    total = args.vaults * args.per_vault
    with tempfile.TemporaryDirectory() as tmp, fleet_stack(Path(tmp), vaults) as fleet:
        names, seeding = seed(fleet, args.per_vault, expires_in=timedelta(days=300), lived=timedelta(days=65))
        print(f"seeded {total} certificates (EC P-256) in {args.vaults} vaults in {seeding:.1f} s", flush=True)
        journaled = fill_journal(
            fleet,
            names,
            under_way_per_vault=args.under_way,
            delivered_per_vault=args.delivered,
            now=time.time(),
        )
        print(
            f"journal filled with {total} records ({args.under_way} under way per vault) and "
            f"{args.delivered * args.vaults} delivered webhooks in {journaled:.1f} s"
        )
        runtime = build(fleet)
        # The first request of each vault's client answers the bearer challenge: once per client, not per sweep.
        for vault in vaults:
            runtime.keyvault.vault(fleet.emulator.urls[vault]).list_certificate_properties()

        def fan_out() -> list[Any]:
            with ThreadPoolExecutor(args.workers) as pool:
                return list(pool.map(lambda vault: sweep_vault(runtime, vault), vaults))

        figures = {
            f"planner, then {args.workers} queue workers (Azurite queue)": measure(
                fleet, runtime, lambda: through_the_queue(fleet, runtime, args.workers)
            ),
            f"fan-out, one unit per vault on {args.workers} workers": measure(fleet, runtime, fan_out),
            "one process, vault after vault (timer sweep)": measure(fleet, runtime, lambda: [sweep(runtime)]),
        }
        print(f"fleet sweep: {total} certificates in {args.vaults} vaults, none due")
        for label, f in figures.items():
            print(
                f"  {label}: {f['seconds']:.1f} s ({total / f['seconds']:.0f} certificates/s); "
                f"renewals started {f['started']:.0f}, failed {f['failed']:.0f}\n"
                f"    Key Vault requests: {f['sent']:.0f} sent by the app, {f['at_emulator']:.0f} at the emulator "
                f"({f['lists']:.0f} list pages) = {f['sent'] / total:.4f} per certificate "
                f"(goal <= {1 / 25:.4f}, the listing alone: {-(-args.per_vault // 25) * args.vaults} pages)\n"
                f"    journal reads: {f['journal_requests']:.0f} requests, {f['journal_rows']:.0f} rows "
                f"({args.under_way * args.vaults} renewals under way, {total} records and "
                f"{args.delivered * args.vaults} settled deliveries in all)",
                flush=True,
            )


if __name__ == "__main__":
    main()
