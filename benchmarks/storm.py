"""A renewal storm (docs/architecture.md §7): N certificates due at once against a vault that throttles like Key Vault.

The emulator enforces Key Vault's documented per-vault limits (certificate create counts against the key
CREATE limit: 20 per 10 seconds, without ``Retry-After``). All N NearExpiry events are delivered at once to W
concurrent invocations of ``function_app``'s Event Grid function (as the Functions host runs them), then the
sweep runs until the journal says every renewal is done. It prints the total time, its ratio to the minimum the
throttle allows, the number of duplicate versions (must be 0) and of lost deliveries (must be 0).

Run: ``.venv/bin/python -m benchmarks.storm [--certificates 1000] [--workers 8]``. Takes the throttle's minimum
(about 500 s for 1,000 certificates) plus seeding; bounded by ``--limit-seconds``.

The multi-vault storm (issue 11), ``--vaults 10 --certificates 2000``: the certificates are spread over the
vaults, each throttled like Key Vault, and the app paces its creates per vault through the journal's storage
account (``renewal.shells.pacing.TablePacer``, its guard set by ``--guard-seconds``) from ``--instances``
instances, each in a process of its own (Functions instances share no interpreter) with its own Key Vault
clients, pacer and ``--workers`` concurrent invocations. The events are delivered interleaved across vaults, then
the per-vault sweep units (``sweep_vault``, as the queue's fan-out runs them) run until every renewal is done.

The bound is what the throttle allows with the vaults in parallel and unlimited CPU: one vault's share of ``n``
creates at ``limit`` per ``window`` needs ``ceil(n / limit) - 1`` windows after the first, which opens at 0, and
then the last create's renewal to finish: ``(ceil(n / limit) - 1) * window + t1``, where ``t1`` is one renewal
measured alone on a quiet vault just before the storm. The pacer's own floor, with its guard after each window,
is printed beside it. The run also counts the creates the emulator answered in each vault's busiest 10-second
window (must not exceed the rate) and its 429 answers (the pacing keeps them away), and the CPU seconds each
piece used. The fleet is seeded straight into the emulator's model. ``--profile PREFIX`` writes each instance's
CPU profile (per thread, in thread CPU time) to ``PREFIX.<pid>`` for ``pstats``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import json
import math
import multiprocessing
import os
import pstats
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--limit-seconds", type=float, default=1800)
    parser.add_argument("--vaults", type=int, default=1, help="more than 1: the paced multi-vault storm")
    parser.add_argument("--instances", type=int, default=2, help="multi-vault storm: app instances")
    parser.add_argument(
        "--profile", metavar="PREFIX", help="multi-vault storm: each instance's CPU profile to PREFIX.<pid>"
    )
    parser.add_argument(
        "--guard-seconds", type=float, default=0.5, help="multi-vault storm: the pacer's guard after each window"
    )
    args = parser.parse_args()
    if args.vaults > 1:
        multi_vault_storm(args)
        return

    from azure.keyvault.certificates import CertificatePolicy, KeyCurveName, KeyType
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    import renewal
    from devstack.azurite import Azurite
    from devstack.functions_host import event_grid_event, user_function
    from devstack.keyvault import KeyVaultEmulator, ThrottleLimits
    from devstack.localca import create_local_ca, issue_leaf
    from devstack.webhook_sink import WebhookSink
    from renewal.errors import RenewalError
    from renewal.flow.entry import current_runtime

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    names = [f"storm{index:04d}" for index in range(args.certificates)]
    with tempfile.TemporaryDirectory() as tmp:
        ca = create_local_ca(Path(tmp) / "ca")
        with (
            Azurite() as azurite,
            KeyVaultEmulator(state_dir=Path(tmp) / "kv", vaults=["storm"], tick_interval=None) as emulator,
            WebhookSink(secret) as sink,
        ):
            os.environ.update(
                {
                    "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
                    "RENEWAL_VAULTS": f"storm={emulator.url('storm')}",
                    "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
                    "RENEWAL_KEYVAULT_STATIC_TOKEN": "storm-token",
                    "RENEWAL_CA_PROFILES": json.dumps({"corp": ca.profile_options()}),
                    "RENEWAL_DEFAULT_CA_PROFILE": "corp",
                    "RENEWAL_WEBHOOKS": json.dumps({"sink": {"url": sink.url, "secret_setting": "STORM_SECRET"}}),
                    "STORM_SECRET": secret,
                    "RENEWAL_RETRY_SECONDS": "0",
                    "RENEWAL_SWEEP_BUDGET_SECONDS": "3600",
                }
            )
            client = emulator.certificate_client("storm")
            now = datetime.fromtimestamp(emulator.clock(), UTC)
            issuing = x509.load_pem_x509_certificate(ca.issuing_cert_path.read_bytes())

            def seed(name: str) -> None:
                policy = CertificatePolicy(
                    issuer_name="Unknown",
                    subject=f"CN={name}.storm.internal",
                    san_dns_names=[f"{name}.storm.internal"],
                    key_type=KeyType.ec,
                    key_curve_name=KeyCurveName.p_256,
                )
                # Issuer ``Unknown``: the poller ends on the pending CertificateOperation, which carries the CSR.
                operation: Any = client.begin_create_certificate(name, policy).result()
                csr = x509.load_der_x509_csr(bytes(operation.csr))
                leaf = issue_leaf(
                    ca,
                    subject_cn=f"{name}.storm.internal",
                    dns_names=[f"{name}.storm.internal"],
                    public_key=csr.public_key(),
                    not_before=now - timedelta(days=300),
                    not_after=now + timedelta(days=20),
                )
                der = serialization.Encoding.DER
                client.merge_certificate(name, [leaf.public_bytes(der), issuing.public_bytes(der)])

            seeding = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(seed, names))
            print(f"seeded {len(names)} certificates (EC P-256) in {time.monotonic() - seeding:.1f} s", flush=True)

            events = [emulator.fire("storm", name, "Microsoft.KeyVault.CertificateNearExpiry") for name in names]
            limits = emulator.throttle.enable(ThrottleLimits())
            emulator.request_log.clear()
            function = user_function("keyvault_certificate_events")

            def deliver(event: dict[str, Any]) -> None:
                # A transient failure (throttled past its retries) is recorded; the sweep finishes it.
                with contextlib.suppress(RenewalError):
                    function(event_grid_event(event))

            started = time.monotonic()
            with ThreadPoolExecutor(args.workers) as pool:
                list(pool.map(deliver, events))
            after_events = time.monotonic() - started
            sweeps = 0
            journal = current_runtime().journal
            while True:
                done = sum(1 for r in journal.records(["storm"]) if r.step == "done")
                if done == len(names) or time.monotonic() - started > args.limit_seconds:
                    break
                renewal.run_sweep()
                sweeps += 1
            total = time.monotonic() - started

            creates = limits.create
            minimum = (math.ceil(len(names) / creates) - 1) * limits.window_seconds
            versions = {name: len(list(client.list_properties_of_certificate_versions(name))) for name in names}
            duplicates = sum(max(0, count - 2) for count in versions.values())
            not_renewed = sum(1 for count in versions.values() if count < 2)
            delivered = {d.headers.get("webhook-id") for d in sink.deliveries if d.status == 204}
            lost = len(names) - len(delivered)
            throttled = emulator.request_log.count(status=429)
            print(
                f"storm: {len(names)} certificates, {args.workers} concurrent invocations, {sweeps} sweeps\n"
                f"  events handled in {after_events:.1f} s; all done in {total:.1f} s\n"
                f"  minimum the throttle allows ({creates} creates / {limits.window_seconds:g} s): {minimum:.0f} s\n"
                f"  ratio total/minimum: {total / minimum:.2f}x (target <= 1.5x)\n"
                f"  duplicate versions: {duplicates}; not renewed: {not_renewed}; lost deliveries: {lost}; "
                f"429 answers: {throttled}",
                flush=True,
            )


def multi_vault_storm(args: argparse.Namespace) -> None:
    """The paced storm over several vaults; see the module docstring."""
    from benchmarks._emulator_process import EmulatorProcess
    from devstack.azurite import Azurite
    from devstack.localca import LocalCAFiles
    from devstack.webhook_sink import WebhookSink
    from renewal.flow.runtime import build_runtime
    from renewal.settings import Settings

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    vaults = [f"storm{n:02d}" for n in range(args.vaults)]
    per_vault = math.ceil(args.certificates / args.vaults)
    total = per_vault * len(vaults)
    names = {vault: [f"{vault}-c{n:05d}" for n in range(per_vault)] for vault in vaults}
    with tempfile.TemporaryDirectory() as tmp, WebhookSink(secret) as sink, Azurite() as azurite:
        # The warm-up vault is outside the storm, so its creates take none of a storm vault's slots.
        emulator = EmulatorProcess(Path(tmp), [*vaults, _WARM_VAULT])
        instances: list[_Instance] = []
        try:
            ca = LocalCAFiles(**{key: Path(value) for key, value in emulator.ca.items()})
            environ = {
                "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
                "RENEWAL_VAULTS": ",".join(f"{name}={emulator.urls[name]}" for name in [*vaults, _WARM_VAULT]),
                "RENEWAL_KEYVAULT_CA_BUNDLE": emulator.ca_pem_path,
                "RENEWAL_KEYVAULT_STATIC_TOKEN": "storm-token",
                "RENEWAL_CA_PROFILES": json.dumps({"corp": ca.profile_options()}),
                "RENEWAL_DEFAULT_CA_PROFILE": "corp",
                "RENEWAL_SWEEP_BUDGET_SECONDS": "3600",
                "RENEWAL_WEBHOOKS": json.dumps({"sink": {"url": sink.url, "secret_setting": "STORM_SECRET"}}),
                "STORM_SECRET": secret,
                "RENEWAL_RETRY_SECONDS": "0",
            }
            seeding = time.monotonic()
            emulator.call("seed", {"names": names, "lived_days": 300, "expires_in_days": 20})
            seeded = time.monotonic() - seeding
            print(f"seeded {total} certificates (EC P-256) in {len(vaults)} vaults in {seeded:.1f} s", flush=True)
            journal = build_runtime(Settings.from_environ(environ)).journal
            instances += [
                _Instance(
                    environ,
                    emulator.ca_pem_path,
                    workers=args.workers,
                    guard_seconds=args.guard_seconds,
                    profile_to=args.profile,
                )
                for _ in range(args.instances)
            ]
            # One renewal alone, before the storm, in a vault of its own: the time a renewal takes after its
            # create's slot, which the bound adds to the throttle's windows. Each instance renews twice and the
            # second counts, with its connections and imports warm, as a running Function App's instances are.
            warm = {index: [f"warm{index}-{n}" for n in range(2)] for index in range(len(instances))}
            emulator.call(
                "seed",
                {
                    "names": {_WARM_VAULT: [name for pair in warm.values() for name in pair]},
                    "lived_days": 300,
                    "expires_in_days": 20,
                },
            )
            one_renewal = 0.0
            for index, instance in enumerate(instances):
                for name in warm[index]:
                    [event] = emulator.call("fire", {"of": [(_WARM_VAULT, name)], "event_type": _NEAR_EXPIRY})
                    took = instance.call("deliver", [event])
                one_renewal = max(one_renewal, took)
            warm_deliveries = len(sink.deliveries)
            # Interleaved across vaults, as one Event Grid subscription per vault delivers them at once.
            order = [(vault, names[vault][index]) for index in range(per_vault) for vault in vaults]
            events = emulator.call("fire", {"of": order, "event_type": _NEAR_EXPIRY})
            limits = emulator.call("throttle", True)
            emulator.call("clear_log")

            cpu_before = _cpu_now(emulator, instances)
            started = time.monotonic()
            for index, instance in enumerate(instances):
                instance.send("deliver", events[index :: len(instances)])
            for instance in instances:
                instance.receive()
            after_events = time.monotonic() - started
            rounds = 0
            while True:
                done = sum(1 for r in journal.records(vaults) if r.step == "done")
                if done >= total or time.monotonic() - started > args.limit_seconds:
                    break
                for index, instance in enumerate(instances):
                    instance.send("sweep", vaults[index :: len(instances)])
                for instance in instances:
                    instance.receive()
                rounds += 1
            elapsed = time.monotonic() - started
            cpu = {key: value - cpu_before[key] for key, value in _cpu_now(emulator, instances).items()}
            emulator.call("throttle", False)

            windows = (math.ceil(per_vault / limits.create) - 1) * limits.window_seconds
            bound = windows + one_renewal
            paced = (math.ceil(per_vault / limits.create) - 1) * (limits.window_seconds + args.guard_seconds)
            creates = emulator.call("log", {"operation": "create", "answered_by": "vault"})
            busiest = {
                vault: _busiest_window(
                    [e["received_at"] for e in creates if e["vault"] == vault], limits.window_seconds
                )
                for vault in vaults
            }
            throttled = len(emulator.call("log", {"status": 429}))
            versions = emulator.call("versions", names)
        finally:
            for instance in instances:
                instance.stop()
            emulator.stop()
        duplicates = sum(max(0, count - 2) for count in versions.values())
        not_renewed = sum(1 for count in versions.values() if count < 2)
        delivered = {d.headers.get("webhook-id") for d in sink.deliveries[warm_deliveries:] if d.status == 204}
        lost = total - len(delivered)
        over = sum(max(0, count - limits.create) for count in busiest.values())
        arrivals = sorted(e["received_at"] for e in creates)
        # The emulator stamps arrivals with time.monotonic(), one clock for every process on the machine.
        first_create, last_create = arrivals[0] - started, arrivals[-1] - started
        per_window = [0] * (int((arrivals[-1] - arrivals[0]) // limits.window_seconds) + 1)
        for moment in arrivals:
            per_window[int((moment - arrivals[0]) // limits.window_seconds)] += 1
        print(
            f"multi-vault storm: {total} certificates in {len(vaults)} vaults ({per_vault} each), "
            f"{args.instances} instances x {args.workers} concurrent invocations, {rounds} rounds of sweep units\n"
            f"  events handled in {after_events:.1f} s; all done in {elapsed:.1f} s\n"
            f"  bound the throttle allows, vaults in parallel ({limits.create} creates / "
            f"{limits.window_seconds:g} s per vault, the first window at 0): {windows:.0f} s of windows "
            f"+ {one_renewal:.2f} s for one renewal = {bound:.1f} s\n"
            f"  ratio total/bound: {elapsed / bound:.3f}x (goal <= 1.15x); the pacer's own floor "
            f"(windows of {limits.window_seconds + args.guard_seconds:g} s with its guard): "
            f"{(paced + one_renewal) / bound:.3f}x\n"
            f"  creates from {first_create:.1f} s to {last_create:.1f} s (the pacer's floor: to {paced:.1f} s); "
            f"all done {elapsed - last_create:.1f} s after the last create\n"
            f"  duplicate versions: {duplicates}; not renewed: {not_renewed}; lost deliveries: {lost}\n"
            f"  creates answered: {len(creates)}; busiest 10 s window per vault: {max(busiest.values())} "
            f"(rate {limits.create}); creates over the rate: {over}; 429 answers: {throttled}\n"
            f"  creates per 10 s, all vaults, from the first (at most {limits.create * len(vaults)}): {per_window}\n"
            f"  CPU over the storm, {cpu['machine'] / elapsed:.2f} of {os.cpu_count()} cores busy: "
            f"{cpu['machine']:.1f} s, of which app instances {cpu['instances']:.1f} s, "
            f"emulator {cpu['emulator']:.1f} s, "
            f"harness and webhook sink {cpu['harness']:.1f} s, the rest (Azurite, other work on the machine) "
            f"{cpu['machine'] - cpu['instances'] - cpu['emulator'] - cpu['harness']:.1f} s; "
            f"app CPU per renewal {1000 * cpu['instances'] / total:.0f} ms",
            flush=True,
        )


_NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
_WARM_VAULT = "stormwarm"


class _Instance:
    """One app instance in a process of its own (a Functions instance shares no interpreter with another), with
    its own Key Vault clients, pacer and ``workers`` concurrent invocations, driven through a pipe."""

    def __init__(
        self,
        environ: dict[str, str],
        ca_pem_path: str,
        *,
        workers: int,
        guard_seconds: float,
        profile_to: str | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_instance, args=(child, environ, ca_pem_path, workers, guard_seconds, profile_to), daemon=True
        )
        self._process.start()

    def send(self, command: str, arguments: Any = None) -> None:
        """Start ``command`` (``deliver`` events, ``sweep`` vaults) in the instance."""
        self._connection.send((command, arguments))

    def receive(self) -> Any:
        """The answer of the command sent last: the seconds it took."""
        return self._connection.recv()

    def call(self, command: str, arguments: Any = None) -> Any:
        """Run ``command`` in the instance and return its answer."""
        self.send(command, arguments)
        return self.receive()

    def stop(self) -> None:
        """Stop the instance's process."""
        with contextlib.suppress(OSError):
            self.call("stop")
        self._process.join(10)


def _serve_instance(
    connection: Any, environ: dict[str, str], ca_pem_path: str, workers: int, guard: float, profile_to: str | None
) -> None:
    from renewal.errors import RenewalError
    from renewal.flow.entry import handle_event
    from renewal.flow.runtime import build_runtime
    from renewal.flow.sweep import sweep_vault
    from renewal.settings import Settings
    from renewal.shells.journal import table_client_from_environ
    from renewal.shells.keyvault import KeyVaultClients, StaticTokenCredential
    from renewal.shells.pacing import PacingOptions, TablePacer

    options = dataclasses.replace(PacingOptions.from_environ(environ), guard_seconds=guard)
    pacer = TablePacer(table_client_from_environ(environ, "renewalpacing"), clock=time.time, options=options)
    clients = KeyVaultClients(
        credential=StaticTokenCredential("storm-token"),
        connection_verify=ca_pem_path,
        pacer=pacer,
        pacing_wait_seconds=options.max_wait_seconds,
    )
    runtime = build_runtime(Settings.from_environ(environ), keyvault=clients)

    profiles: list[cProfile.Profile] = []
    local = threading.local()

    def profiled(work: Callable[[], object]) -> None:
        if not profile_to:
            work()
            return
        if not hasattr(local, "profile"):
            # Per thread and in thread CPU time, so waits for slots and answers do not count.
            local.profile = cProfile.Profile(time.thread_time)
            profiles.append(local.profile)
        local.profile.runcall(work)

    def deliver(event: dict[str, Any]) -> None:
        # A deferred or failed renewal is recorded; the sweep units finish it.
        with contextlib.suppress(RenewalError):
            profiled(lambda: handle_event(event, runtime))

    def unit(vault: str) -> None:
        with contextlib.suppress(RenewalError):
            profiled(lambda: sweep_vault(runtime, vault))

    with ThreadPoolExecutor(workers) as pool:
        while True:
            command, arguments = connection.recv()
            if command == "stop":
                if profiles:
                    stats = pstats.Stats(profiles[0])
                    for more in profiles[1:]:
                        stats.add(more)
                    stats.dump_stats(f"{profile_to}.{os.getpid()}")
                connection.send(None)
                return
            if command == "cpu":
                connection.send(time.process_time())
                continue
            began = time.monotonic()
            list(pool.map(deliver if command == "deliver" else unit, arguments))
            connection.send(time.monotonic() - began)


def _cpu_now(emulator: Any, instances: list[_Instance]) -> dict[str, float]:
    """CPU seconds used so far: the whole machine's (from ``/proc/stat``), each piece's own (process time)."""
    with open("/proc/stat", encoding="ascii") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in stat.readline().split()[1:9])
    return {
        "machine": (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
        "instances": sum(instance.call("cpu") for instance in instances),
        "emulator": emulator.call("cpu"),
        "harness": time.process_time(),
    }


def _busiest_window(arrivals: list[float], window: float) -> int:
    """The most of ``arrivals`` in any sliding window (by arrival, as the emulator's throttle counts)."""
    times = sorted(arrivals)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - window:
            first += 1
        most = max(most, last - first + 1)
    return most


if __name__ == "__main__":
    main()
