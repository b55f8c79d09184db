"""A simulated year (docs/architecture.md §7): a fleet of mixed lifetimes renewed on the emulator's clock, events and
sweep alike.

Certificates living 1, 7, 30, 47, 90 and 397 days are seeded from the local CA, whose profiles cap each leaf's
validity (as Vault roles' ``max_ttl`` and step-ca do). Then the emulator's clock moves one sweep interval at a
time for a year: the emulator's ``CertificateNearExpiry`` / ``CertificateExpired`` events are delivered over HTTP
to a receiver and handed to the app, and the sweep runs, as the timer would. The app, the local CA and the
emulator all read the same clock. For each lifetime it prints the renewals made against the ideal (one per two
thirds of a lifetime, from each certificate's own start), the versions created, the longest time any
certificate was left expired (must be 0) and the Key Vault requests per renewal.

Run: ``.venv/bin/python -m benchmarks.year [--days 365] [--sweep-minutes 60] [--per-lifetime 2]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LIFETIMES_DAYS = (1, 7, 30, 47, 90, 397)
FRACTION = 2 / 3


@contextmanager
def event_receiver() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    """An Event Grid endpoint on loopback that queues each event it receives (and answers 200, as the host does)."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"[]")
            for event in body if isinstance(body, list) else [body]:
                received.put(event)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/events", received
    finally:
        server.shutdown()
        server.server_close()


def ideal_renewals(first_window: datetime, start: datetime, end: datetime, lifetime: timedelta) -> int:
    """Renewals in [start, end) if each happened exactly when two thirds of its version's lifetime had passed."""
    if first_window >= end:
        return 0
    return math.floor((end - max(first_window, start)) / (lifetime * FRACTION)) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=365)
    parser.add_argument("--sweep-minutes", type=int, default=60, choices=(5, 10, 15, 20, 30, 60))
    parser.add_argument("--per-lifetime", type=int, default=2)
    args = parser.parse_args()

    from devstack.azurite import Azurite
    from devstack.keyvault import KeyVaultEmulator
    from devstack.localca import create_local_ca
    from devstack.seed import seed_certificate
    from devstack.webhook_sink import WebhookSink
    from renewal.ca.local import LocalCA
    from renewal.errors import RenewalError
    from renewal.flow.entry import handle_event
    from renewal.flow.runtime import build_runtime
    from renewal.flow.sweep import sweep
    from renewal.settings import Settings

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    step = timedelta(minutes=args.sweep_minutes)
    schedule = "0 0 * * * *" if args.sweep_minutes == 60 else f"0 */{args.sweep_minutes} * * * *"
    with tempfile.TemporaryDirectory() as tmp, event_receiver() as (receiver_url, received):
        ca = create_local_ca(Path(tmp) / "ca")
        with (
            Azurite() as azurite,
            KeyVaultEmulator(state_dir=Path(tmp) / "kv", vaults=["year"], tick_interval=None) as emulator,
            WebhookSink(secret) as sink,
        ):
            local = {k: v for k, v in ca.profile_options().items() if k != "adapter"}
            profiles = {f"days{d}": {"adapter": "local", **local, "max_validity_hours": d * 24} for d in LIFETIMES_DAYS}
            environ = {
                **os.environ,
                "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
                "RENEWAL_VAULTS": f"year={emulator.url('year')}",
                "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
                "RENEWAL_KEYVAULT_STATIC_TOKEN": "year-token",
                "RENEWAL_CA_PROFILES": json.dumps(profiles),
                "RENEWAL_WEBHOOKS": json.dumps({"sink": {"url": sink.url, "secret_setting": "YEAR_SECRET"}}),
                "YEAR_SECRET": secret,
                "RENEWAL_SWEEP_SCHEDULE": schedule,
                "RENEWAL_SWEEP_BUDGET_SECONDS": "3600",
                "RENEWAL_RETRY_SECONDS": "0",
            }

            def now() -> datetime:
                return datetime.fromtimestamp(emulator.clock(), UTC)

            settings = Settings.from_environ(environ)
            adapters = {
                name: LocalCA.from_profile(profile, environ, clock=now)
                for name, profile in settings.ca_profiles.items()
            }
            runtime = build_runtime(settings, clock=now, adapters=adapters)
            client = emulator.certificate_client("year")

            start = now()
            lifetimes: dict[str, timedelta] = {}
            expiry: dict[str, datetime] = {}
            ideal: dict[str, int] = {}
            seeding = time.monotonic()
            for days in LIFETIMES_DAYS:
                lifetime = timedelta(days=days)
                for index in range(args.per_lifetime):
                    name = f"life{days}d-{index}"
                    # Spread the starts: the second certificate is already a third of the way through its life.
                    age = lifetime * (index / max(args.per_lifetime, 1)) * 0.6
                    not_before = start - age
                    seed_certificate(
                        client,
                        name,
                        ca,
                        dns_names=[f"{name}.year.internal"],
                        not_before=not_before,
                        not_after=not_before + lifetime,
                        tags={"renewal-ca": f"days{days}"},
                        validity_months=max(1, math.ceil(days / 28)),
                    )
                    lifetimes[name] = lifetime
                    expiry[name] = not_before + lifetime
                    end = start + timedelta(days=args.days)
                    ideal[name] = ideal_renewals(not_before + lifetime * FRACTION, start, end, lifetime)
            print(f"seeded {len(lifetimes)} certificates in {time.monotonic() - seeding:.1f} s", flush=True)

            emulator.events.subscribe(receiver_url, vault="year")
            emulator.request_log.clear()
            renewals: Counter[str] = Counter()
            longest_expired: dict[str, timedelta] = defaultdict(timedelta)
            handled_events: Counter[str] = Counter()
            seen_deliveries = 0
            sweeps = 0
            running = time.monotonic()
            end = start + timedelta(days=args.days)
            while now() < end:
                emulator.clock.advance(step.total_seconds())
                emulator.events.wait_idle(timeout=30)
                while not received.empty():
                    envelope = received.get()
                    try:
                        outcome = handle_event(envelope, runtime)
                        handled_events[f"{outcome.status}/{outcome.reason}"] += 1
                    except RenewalError as exc:  # transient, raised for a redelivery: the sweep finishes it
                        handled_events[f"raised/{exc.reason}"] += 1
                sweep(runtime)
                sweeps += 1
                for delivery in sink.deliveries[seen_deliveries:]:
                    payload = json.loads(delivery.body)
                    data = payload["data"]
                    if payload["type"].endswith(".renewed") and delivery.status == 204:
                        name = data["certificate_name"]
                        merged_at = datetime.fromisoformat(payload["time"])
                        longest_expired[name] = max(longest_expired[name], merged_at - expiry[name])
                        expiry[name] = datetime.fromisoformat(data["not_after"])
                        renewals[name] += 1
                seen_deliveries = len(sink.deliveries)
            wall = time.monotonic() - running
            for name, expires in expiry.items():
                longest_expired[name] = max(longest_expired[name], now() - expires)

            log = emulator.request_log
            operations = Counter(entry.operation for entry in log.entries() if entry.authenticated)
            listing = operations.pop("list", 0)
            made_in_all = max(sum(renewals.values()), 1)
            early_reads = handled_events.get("skipped/not_due", 0)
            per_renewal = (sum(operations.values()) - early_reads) / made_in_all
            print(
                f"year: {args.days:g} days on the emulator's clock, a sweep every {args.sweep_minutes} min "
                f"({sweeps} sweeps), in {wall:.0f} s of wall time\n"
                f"  {'lifetime':>9} {'renewals':>9} {'ideal':>6} {'versions':>9} {'longest expired':>16}"
            )
            worst = timedelta(0)
            for days in LIFETIMES_DAYS:
                names = [n for n in lifetimes if n.startswith(f"life{days}d-")]
                made = sum(renewals[n] for n in names)
                wanted = sum(ideal[n] for n in names)
                versions = sum(len(list(client.list_properties_of_certificate_versions(n))) for n in names)
                expired = max(max(longest_expired[n], timedelta(0)) for n in names)
                worst = max(worst, expired)
                print(f"  {days:>8}d {made:>9} {wanted:>6} {versions:>9} {expired.total_seconds():>15.0f}s")
            print(
                f"  Key Vault requests per renewal: {per_renewal:.2f} (read, create, merge); besides: one read per "
                f"early event ({early_reads}) and the sweep's listing ({listing}, {listing / max(sweeps, 1):.2f} per "
                f"sweep); by operation: {dict(sorted(operations.items()))}\n"
                f"  events handled: {dict(sorted(handled_events.items()))}\n"
                f"  longest time any certificate was expired: {worst.total_seconds():.0f} s (must be 0)",
                flush=True,
            )


if __name__ == "__main__":
    main()
