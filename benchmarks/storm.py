"""A renewal storm (docs/architecture.md §7): N certificates due at once against a vault that throttles like Key Vault.

The emulator enforces Key Vault's documented per-vault limits (certificate create counts against the key
CREATE limit: 20 per 10 seconds, without ``Retry-After``). All N NearExpiry events are delivered at once to W
concurrent invocations of ``function_app``'s Event Grid function (as the Functions host runs them), then the
sweep runs until the journal says every renewal is done. It prints the total time, its ratio to the minimum the
throttle allows, the number of duplicate versions (must be 0) and of lost deliveries (must be 0).

Run: ``.venv/bin/python -m benchmarks.storm [--certificates 1000] [--workers 8]``. Takes the throttle's minimum
(about 500 s for 1,000 certificates) plus seeding; bounded by ``--limit-seconds``.
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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
