"""The renewal's own figures (docs/architecture.md §7), measured in one run on this machine.

- Key Vault requests per renewal, counted from the emulator's request log (authenticated and all).
- End-to-end latency on loopback: from the emulator publishing ``CertificateNearExpiry`` to the webhook sink
  receiving the signed delivery, through the Functions host stand-in and ``function_app.py``.
- Cold start: importing ``function_app`` compared with importing ``azure.functions`` alone, in fresh interpreters.

Run: ``.venv/bin/python -m benchmarks.renewal [--renewals N]``. Bounded: N renewals (default 30), a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_seconds(statement: str, *, runs: int) -> float:
    """The median wall time of a fresh interpreter running ``statement`` (interpreter start included)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT)  # noqa: S603 - our own interpreter
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cold_start(runs: int = 7) -> dict[str, float]:
    """Import cost of the app against the floor every Python function app pays."""
    baseline = _import_seconds("pass", runs=runs)
    functions = _import_seconds("import azure.functions", runs=runs)
    app = _import_seconds("import function_app", runs=runs)
    return {
        "interpreter_s": baseline,
        "azure_functions_s": functions,
        "function_app_s": app,
        "ratio_app_to_azure_functions": (app - baseline) / max(functions - baseline, 1e-9),
    }


def end_to_end(renewals: int) -> dict[str, float]:
    """Renew ``renewals`` certificates one event at a time; time event publication → webhook received."""
    from devstack.azurite import Azurite
    from devstack.functions_host import FunctionsHost
    from devstack.keyvault import KeyVaultEmulator
    from devstack.localca import create_local_ca
    from devstack.seed import seed_certificate
    from devstack.webhook_sink import WebhookSink

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with tempfile.TemporaryDirectory() as tmp:
        ca = create_local_ca(Path(tmp) / "ca")
        with (
            Azurite() as azurite,
            KeyVaultEmulator(state_dir=Path(tmp) / "kv", vaults=["bench"], tick_interval=None) as emulator,
            WebhookSink(secret) as sink,
            FunctionsHost() as host,
        ):
            os.environ.update(
                {
                    "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
                    "RENEWAL_VAULTS": f"bench={emulator.url('bench')}",
                    "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
                    "RENEWAL_KEYVAULT_STATIC_TOKEN": "bench-token",
                    "RENEWAL_CA_PROFILES": json.dumps({"corp": ca.profile_options()}),
                    "RENEWAL_DEFAULT_CA_PROFILE": "corp",
                    "RENEWAL_WEBHOOKS": json.dumps({"sink": {"url": sink.url, "secret_setting": "BENCH_SECRET"}}),
                    "BENCH_SECRET": secret,
                }
            )
            client = emulator.certificate_client("bench")
            now = datetime.fromtimestamp(emulator.clock(), UTC)
            for index in range(renewals):
                seed_certificate(
                    client,
                    f"cert{index}",
                    ca,
                    dns_names=[f"cert{index}.bench.internal"],
                    not_before=now - timedelta(days=300),
                    not_after=now + timedelta(days=20),
                )
            emulator.events.subscribe(host.event_grid_url("keyvault_certificate_events"))
            emulator.request_log.clear()
            latencies = []
            for index in range(renewals):
                delivered = len(sink.deliveries)
                started = time.perf_counter()
                emulator.fire("bench", f"cert{index}", "CertificateNearExpiry")
                deadline = started + 30
                while len(sink.deliveries) == delivered:
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"renewal {index} delivered no webhook within 30 s")
                    time.sleep(0.0005)
                latencies.append(time.perf_counter() - started)
            authenticated = emulator.request_log.authenticated_requests(vault="bench")
            total = len(emulator.request_log)
    latencies.sort()
    return {
        "renewals": renewals,
        "keyvault_authenticated_requests_per_renewal": authenticated / renewals,
        "keyvault_requests_per_renewal_including_challenges": total / renewals,
        "latency_median_ms": statistics.median(latencies) * 1000,
        "latency_p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renewals", type=int, default=30)
    args = parser.parse_args()
    results = {"end_to_end": end_to_end(args.renewals), "cold_start": cold_start()}
    e2e, cold = results["end_to_end"], results["cold_start"]
    print(f"Key Vault requests per renewal: {e2e['keyvault_authenticated_requests_per_renewal']:.2f} authenticated")
    print(f"event -> webhook on loopback: median {e2e['latency_median_ms']:.1f} ms, p95 {e2e['latency_p95_ms']:.1f} ms")
    print(
        f"cold start: import function_app {cold['function_app_s'] * 1000:.0f} ms vs azure.functions "
        f"{cold['azure_functions_s'] * 1000:.0f} ms (interpreter {cold['interpreter_s'] * 1000:.0f} ms); "
        f"app/azure.functions beyond the interpreter = {cold['ratio_app_to_azure_functions']:.2f}x"
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
