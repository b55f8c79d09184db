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
account (``renewal.shells.pacing.TablePacer``) from ``--instances`` instances, each with its own Key Vault clients,
pacer and ``--workers`` concurrent invocations. The events are delivered interleaved across vaults, then the
per-vault sweep units (``sweep_vault``, as the queue's fan-out runs them) run in parallel until every renewal is
done. The bound is the throttle's minimum for one vault's share, as the vaults work in parallel; it also counts
the creates the emulator answered in each vault's busiest 10-second window (must not exceed the rate) and its
429 answers (the pacing keeps them away). The fleet is seeded straight into the emulator's model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
import time
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
                operation = client.begin_create_certificate(name, policy).result()
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
    from renewal.errors import RenewalError
    from renewal.flow.entry import handle_event
    from renewal.flow.runtime import build_runtime
    from renewal.flow.sweep import sweep_vault
    from renewal.settings import Settings
    from renewal.shells.journal import table_client_from_environ
    from renewal.shells.keyvault import KeyVaultClients, StaticTokenCredential
    from renewal.shells.pacing import PacingOptions, TablePacer

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    vaults = [f"storm{n:02d}" for n in range(args.vaults)]
    per_vault = math.ceil(args.certificates / args.vaults)
    total = per_vault * len(vaults)
    names = {vault: [f"{vault}-c{n:05d}" for n in range(per_vault)] for vault in vaults}
    with tempfile.TemporaryDirectory() as tmp, WebhookSink(secret) as sink, Azurite() as azurite:
        emulator = EmulatorProcess(Path(tmp), vaults)
        try:
            ca = LocalCAFiles(**{key: Path(value) for key, value in emulator.ca.items()})
            environ = {
                "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
                "RENEWAL_VAULTS": ",".join(f"{name}={emulator.urls[name]}" for name in vaults),
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
            settings = Settings.from_environ(environ)
            options = PacingOptions.from_environ(environ)
            runtimes = []
            for _ in range(args.instances):
                pacer = TablePacer(
                    table_client_from_environ(environ, "renewalpacing"), clock=time.time, options=options
                )
                clients = KeyVaultClients(
                    credential=StaticTokenCredential("storm-token"),
                    connection_verify=emulator.ca_pem_path,
                    pacer=pacer,
                    pacing_wait_seconds=options.max_wait_seconds,
                )
                runtimes.append(build_runtime(settings, keyvault=clients))
            # Interleaved across vaults, as one Event Grid subscription per vault delivers them at once.
            order = [(vault, names[vault][index]) for index in range(per_vault) for vault in vaults]
            events = emulator.call("fire", {"of": order, "event_type": "Microsoft.KeyVault.CertificateNearExpiry"})
            limits = emulator.call("throttle", True)
            emulator.call("clear_log")

            def deliver(indexed: tuple[int, dict[str, Any]]) -> None:
                index, event = indexed
                # A deferred or failed renewal is recorded; the sweep units finish it.
                with contextlib.suppress(RenewalError):
                    handle_event(event, runtimes[index % len(runtimes)])

            started = time.monotonic()
            with ThreadPoolExecutor(args.workers * args.instances) as pool:
                list(pool.map(deliver, enumerate(events)))
            after_events = time.monotonic() - started
            journal = runtimes[0].journal
            rounds = 0

            def unit(indexed: tuple[int, str]) -> None:
                index, vault = indexed
                with contextlib.suppress(RenewalError):
                    sweep_vault(runtimes[index % len(runtimes)], vault)

            with ThreadPoolExecutor(args.workers * args.instances) as pool:
                while True:
                    done = sum(1 for r in journal.records(vaults) if r.step == "done")
                    if done >= total or time.monotonic() - started > args.limit_seconds:
                        break
                    list(pool.map(unit, enumerate(vaults)))
                    rounds += 1
            elapsed = time.monotonic() - started
            emulator.call("throttle", False)

            minimum = (math.ceil(per_vault / limits.create) - 1) * limits.window_seconds
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
            emulator.stop()
        duplicates = sum(max(0, count - 2) for count in versions.values())
        not_renewed = sum(1 for count in versions.values() if count < 2)
        delivered = {d.headers.get("webhook-id") for d in sink.deliveries if d.status == 204}
        lost = total - len(delivered)
        over = sum(max(0, count - limits.create) for count in busiest.values())
        arrivals = sorted(e["received_at"] for e in creates)
        per_window = [0] * (int((arrivals[-1] - arrivals[0]) // limits.window_seconds) + 1)
        for moment in arrivals:
            per_window[int((moment - arrivals[0]) // limits.window_seconds)] += 1
        print(
            f"multi-vault storm: {total} certificates in {len(vaults)} vaults ({per_vault} each), "
            f"{args.instances} instances x {args.workers} concurrent invocations, {rounds} rounds of sweep units\n"
            f"  events handled in {after_events:.1f} s; all done in {elapsed:.1f} s\n"
            f"  bound the throttle allows, vaults in parallel ({limits.create} creates / "
            f"{limits.window_seconds:g} s per vault): {minimum:.0f} s\n"
            f"  ratio total/bound: {elapsed / minimum:.3f}x (goal <= 1.15x)\n"
            f"  duplicate versions: {duplicates}; not renewed: {not_renewed}; lost deliveries: {lost}\n"
            f"  creates answered: {len(creates)}; busiest 10 s window per vault: {max(busiest.values())} "
            f"(rate {limits.create}); creates over the rate: {over}; 429 answers: {throttled}\n"
            f"  creates per 10 s, all vaults, from the first (at most {limits.create * len(vaults)}): {per_window}",
            flush=True,
        )


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
