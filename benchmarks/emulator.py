"""Benchmark of the Key Vault emulator: "get certificate" requests per second over HTTPS with keep-alive, and the
memory of a vault holding 1,000 certificates of 3 versions each.

Run: ``.venv/bin/python benchmarks/emulator.py`` (finishes well under 3 minutes). Keys are EC P-256: RSA-2048
generation would spend minutes in key generation alone and measure nothing about the emulator.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.keyvault import ApiRequest, KeyVaultEmulator

EC_SELF_POLICY = json.dumps(
    {
        "policy": {
            "key_props": {"kty": "EC", "crv": "P-256", "exportable": True},
            "issuer": {"name": "Self"},
            "x509_props": {"subject": "CN=bench", "validity_months": 12},
        }
    }
).encode()


def rss_bytes() -> int:
    """The process's resident set size (Linux ``/proc``), or 0 where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fill_vault(emulator: KeyVaultEmulator, certificates: int, versions: int) -> float:
    """Create ``certificates`` x ``versions`` Self-issued versions through the model directly; return seconds."""
    vault = emulator.vault()
    started = time.perf_counter()
    for version in range(versions):
        for index in range(certificates):
            response = vault.handle(
                ApiRequest(
                    method="POST",
                    path=f"/certificates/bench-{index}/create",
                    query={"api-version": "7.6"},
                    headers={"content-type": "application/json"},
                    body=EC_SELF_POLICY,
                )
            )
            if response.status != 202:
                raise RuntimeError(f"create answered {response.status}: {response.body}")
        print(f"  ... {certificates * (version + 1)} versions", file=sys.stderr, flush=True)
    return time.perf_counter() - started


def get_loop(emulator: KeyVaultEmulator, names: list[str], count: int, deadline: float, results: list[int]) -> None:
    """Send up to ``count`` authenticated GETs on one keep-alive connection until ``deadline``."""
    context = ssl.create_default_context(cafile=str(emulator.ca_pem_path))
    connection = http.client.HTTPSConnection("127.0.0.1", emulator.port(), context=context, timeout=10)
    headers = {"Authorization": "Bearer bench", "Accept": "application/json"}
    done = 0
    try:
        while done < count and time.perf_counter() < deadline:
            connection.request("GET", f"/certificates/{names[done % len(names)]}/?api-version=7.6", headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"get answered {response.status}")
            done += 1
    finally:
        connection.close()
        results.append(done)


def throughput(emulator: KeyVaultEmulator, names: list[str], *, clients: int, count: int, seconds: float) -> float:
    """Return requests per second for ``clients`` keep-alive connections sharing ``count`` requests."""
    results: list[int] = []
    deadline = time.perf_counter() + seconds
    threads = [
        threading.Thread(target=get_loop, args=(emulator, names, count // clients, deadline, results))
        for _ in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return sum(results) / (time.perf_counter() - started)


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit of each throughput run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state_dir:
        started = time.perf_counter()
        emulator = KeyVaultEmulator(state_dir=state_dir, tick_interval=None)
        with emulator:
            print(f"emulator start (TLS CA generated): {time.perf_counter() - started:.3f} s")
            gc.collect()
            rss_before = rss_bytes()
            tracemalloc.start()
            filled = fill_vault(emulator, args.certificates, args.versions)
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = rss_bytes()
            total = args.certificates * args.versions
            print(f"vault of {args.certificates} certificates x {args.versions} versions (EC P-256, Self):")
            print(f"  created in {filled:.1f} s through the model ({total / filled:.0f} versions/s, tracemalloc on)")
            print(
                f"  tracemalloc: {current / 2**20:.1f} MiB held ({current / total / 1024:.1f} KiB per version), "
                f"peak {peak / 2**20:.1f} MiB"
            )
            print(f"  RSS delta: {(rss_after - rss_before) / 2**20:.1f} MiB")
            snapshot = json.dumps(emulator.vault().snapshot()).encode()
            print(f"  persisted snapshot size: {len(snapshot) / 2**20:.1f} MiB")
            names = [f"bench-{i}" for i in range(min(args.certificates, 100))]
            for clients in (1, 4):
                rate = throughput(emulator, names, clients=clients, count=args.requests, seconds=args.seconds)
                print(f"get certificate over HTTPS keep-alive, {clients} connection(s): {rate:.0f} requests/s")
            logged = emulator.request_log.authenticated_requests()
            print(f"requests answered and logged: {logged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
