"""``make demo``: one whole renewal on this machine, through the same function the Functions host calls.

Steps: start the Key Vault emulator, the local CA, a webhook sink and a stand-in for the Functions host's Event
Grid endpoint; seed a certificate issued by the local CA that expires in 25 days; let the emulator emit
``CertificateNearExpiry``; the host stand-in builds a real ``func.EventGridEvent`` and calls the decorated
function of ``function_app.py``; the app renews the certificate. The artefacts land in the output folder.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
import threading
import time
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["run_demo"]

CERTIFICATE_NAME = "demo-web"
VAULT_NAME = "demo"
FUNCTION_NAME = "keyvault_certificate_events"
CA_PROFILE = "devstack"
DNS_NAMES = ("app.demo.internal", "api.demo.internal")


_print_lock = threading.Lock()


def _say(message: str) -> None:
    with _print_lock:
        print(f"demo: {message}", flush=True)


class _OutcomeCatcher(logging.Handler):
    """Prints the app's step lines as they happen and keeps the outcome of each renewal."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.outcomes: list[dict[str, Any]] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        source = "app" if record.name.startswith("renewal") else "host"
        with _print_lock:
            print(f"  {source}: {record.getMessage()}", flush=True)
        outcome = getattr(record, "renewal_outcome", None)
        if isinstance(outcome, dict):
            self.outcomes.append(outcome)
            if outcome.get("certificate_name") == CERTIFICATE_NAME and outcome.get("status") != "skipped":
                self.arrived.set()


@contextmanager
def _app_logging() -> Iterator[_OutcomeCatcher]:
    catcher = _OutcomeCatcher()
    loggers = [logging.getLogger("renewal"), logging.getLogger("devstack.functions_host")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(catcher)
        logger.setLevel(logging.DEBUG)
    try:
        yield catcher
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.removeHandler(catcher)
            logger.setLevel(level)


def run_demo(out: Path, *, timeout: float = 60.0) -> int:
    """Run the demo into ``out`` (emptied first); return the process exit code."""
    from devstack.azurite import Azurite
    from devstack.functions_host import FunctionsHost
    from devstack.keyvault import KeyVaultEmulator
    from devstack.localca import create_local_ca
    from devstack.seed import seed_certificate
    from devstack.webhook_sink import WebhookSink

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    webhook_secret = "whsec_" + b64encode(secrets.token_bytes(32)).decode()
    (out / "webhook-secret").write_text(webhook_secret + "\n")

    ca_files = create_local_ca(out / "ca")
    _say(f"local CA ready in {ca_files.directory} (root, intermediate, issuing key)")

    with (
        Azurite() as azurite,
        KeyVaultEmulator(state_dir=out / "keyvault", vaults=[VAULT_NAME]) as emulator,
        WebhookSink(secret=webhook_secret, journal=out / "webhook-deliveries.jsonl") as sink,
        FunctionsHost() as host,
        _app_logging() as catcher,
    ):
        vault_url = emulator.url(VAULT_NAME)
        _say(f"Key Vault emulator serving vault {VAULT_NAME!r} at {vault_url} (TLS CA {emulator.ca_pem_path})")
        _say(f"webhook sink listening at {sink.url}")
        _say(f"Azurite (journal storage) at {azurite.table_endpoint}")
        _say(f"Functions host stand-in at {host.url}")
        os.environ.update(
            {
                "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
                "RENEWAL_JOURNAL_TABLE": "renewals",
                "RENEWAL_VAULTS": f"{VAULT_NAME}={vault_url}",
                "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
                "RENEWAL_KEYVAULT_STATIC_TOKEN": "devstack-demo-token",
                "RENEWAL_CA_PROFILES": json.dumps({CA_PROFILE: ca_files.profile_options()}),
                "RENEWAL_WEBHOOKS": json.dumps(
                    {"demo-sink": {"url": sink.url, "secret_setting": "RENEWAL_DEMO_WEBHOOK_SECRET"}}
                ),
                "RENEWAL_DEMO_WEBHOOK_SECRET": webhook_secret,
            }
        )

        emulator.events.subscribe(host.event_grid_url(FUNCTION_NAME))
        _say(f"Event Grid subscription -> {host.event_grid_url(FUNCTION_NAME)}")
        now = datetime.fromtimestamp(emulator.clock(), UTC)
        before = seed_certificate(
            emulator.certificate_client(VAULT_NAME),
            CERTIFICATE_NAME,
            ca_files,
            dns_names=DNS_NAMES,
            not_before=now - timedelta(days=340),
            not_after=now + timedelta(days=25),
            tags={"renewal-ca": CA_PROFILE, "app": "demo"},
        )
        (out / "before.pem").write_bytes(before.public_bytes(serialization.Encoding.PEM))
        _say(
            f"seeded {CERTIFICATE_NAME!r}: serial {before.serial_number:x}, "
            f"expires {before.not_valid_after_utc:%Y-%m-%d} (in 25 days) -> before.pem"
        )

        _say("waiting for the emulator's CertificateNearExpiry event (the certificate is inside 30 days)")

        if not catcher.arrived.wait(timeout):
            _say(f"FAILED: no renewal outcome within {timeout:.0f} s")
            return 1
        outcome = catcher.outcomes[-1]
        (out / "outcome.json").write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n")
        _say(f"outcome: {outcome['status']} ({outcome['reason']}) -> outcome.json")
        if outcome["status"] != "renewed":
            return 1

        client = emulator.certificate_client(VAULT_NAME)
        after = x509.load_der_x509_certificate(bytes(client.get_certificate(CERTIFICATE_NAME).cer or b""))
        (out / "after.pem").write_bytes(after.public_bytes(serialization.Encoding.PEM))
        shutil.copyfile(ca_files.chain_path, out / "chain.pem")
        _say(
            f"new version read back from the emulator: serial {after.serial_number:x}, "
            f"expires {after.not_valid_after_utc:%Y-%m-%d} -> after.pem, chain.pem"
        )
        _wait_for(lambda: len(sink.deliveries) >= 1, timeout=10)
        verified = sum(1 for d in sink.deliveries if d.verified)
        _say(f"webhook deliveries: {len(sink.deliveries)} received, {verified} with a valid signature")
        counted = emulator.request_log.authenticated_requests(vault=VAULT_NAME)
        _say(f"Key Vault requests so far (authenticated, seeding and read-back included): {counted}")
    _say(f"done; artefacts in {out}")
    return 0


def _wait_for(condition: Any, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def main(argv: list[str]) -> int:
    """``python -m devstack demo [--out DIR]``."""
    out = Path(".demo")
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
    return run_demo(out.resolve())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
