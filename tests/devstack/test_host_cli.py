"""`python -m devstack host`: function_app.py behind the host stand-in, as docs/local-run.md runs it.

One host process serves the module: it reads a local.settings.json pointing at the Key Vault emulator and Azurite
(the helpers in devstack/), and is reached only over HTTP, as Event Grid, an operator or `curl` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.azurite import Azurite
from devstack.keyvault import KeyVaultEmulator
from devstack.localca import create_local_ca
from devstack.seed import seed_certificate

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
VAULT = "local"
TOKEN = "host-cli-token"
FUNCTION = "keyvault_certificate_events"
SKIPPED_SAMPLE = "renewal outcome=skipped reason=vault_not_allowed vault=sample-kv certificate=newcert"


@dataclass
class HostProcess:
    """The running `python -m devstack host` and everything it has written to stderr."""

    process: subprocess.Popen[str]
    url: str
    emulator: KeyVaultEmulator
    ca_dir: Path
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def count(self, text: str) -> int:
        with self.changed:
            return sum(text in line for line in self.lines)

    def wait_for(self, text: str, *, at_least: int = 1, timeout: float = 30.0) -> str:
        """The latest stderr line containing ``text`` once ``at_least`` such lines were written."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= at_least:
                    return found[-1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    pytest.fail(f"no {text!r} from the host; it wrote:\n" + "\n".join(self.lines[-40:]))
                self.changed.wait(remaining)

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Call the host; the status, the headers (names lower-cased) and the body, whatever the status."""
        call = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})  # noqa: S310 - loopback
        try:
            with urllib.request.urlopen(call, timeout=60) as answer:  # noqa: S310 - the host on loopback
                return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def _read_ready_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return result[0].strip() if result else ""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[HostProcess]:
    """The emulator (vault `local`), a local CA profile, Azurite for the journal, and the host started on them."""
    tmp = tmp_path_factory.mktemp("host-cli")
    ca = create_local_ca(tmp / "ca")
    with KeyVaultEmulator(state_dir=tmp / "keyvault", vaults=[VAULT], require_token=TOKEN) as emulator:
        settings = tmp / "local.settings.json"
        settings.write_text(
            json.dumps(
                {
                    "IsEncrypted": False,
                    "Values": {
                        "AzureWebJobsStorage": azurite.connection_string,
                        "FUNCTIONS_WORKER_RUNTIME": "python",
                        "RENEWAL_VAULTS": f"{VAULT}={emulator.url(VAULT)}",
                        "RENEWAL_SWEEP_SCHEDULE": "0 */5 * * * *",
                        "RENEWAL_JOURNAL_TABLE": f"hostcli{uuid.uuid4().hex[:12]}",
                        "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
                        "RENEWAL_KEYVAULT_STATIC_TOKEN": TOKEN,
                        "RENEWAL_CA_PROFILES": json.dumps({"devstack": ca.profile_options()}),
                        "RENEWAL_DEFAULT_CA_PROFILE": "devstack",
                        "RENEWAL_WEBHOOKS": "{}",
                    },
                }
            )
        )
        # The host's settings come from the file alone: nothing of this test process's app settings leaks in.
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RENEWAL_", "AzureWebJobs", "APPLICATIONINSIGHTS_"))
        }
        environment["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "devstack", "host", "--settings", str(settings), "--port", "0"],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready = _read_ready_line(process, timeout=60)
            if not ready.startswith("ready http://127.0.0.1:"):
                process.kill()
                _, err = process.communicate(timeout=10)
                pytest.fail(f"the host printed {ready!r} instead of its ready line:\n{err}")
            running = HostProcess(process=process, url=ready.split()[1], emulator=emulator, ca_dir=tmp / "ca")
            threading.Thread(target=running.drain, daemon=True).start()
            yield running
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_host_prints_one_ready_line_and_lists_every_function(host: HostProcess) -> None:
    """The ready line is exactly `ready http://127.0.0.1:PORT`, and stderr lists the app's four functions."""
    assert host.url.startswith("http://127.0.0.1:")
    for name in (FUNCTION, "manual_renew", "renewal_status", "renewal_sweep"):
        host.wait_for(f"  {name}: ")
    assert host.wait_for("  manual_renew: ").endswith(f"[POST] {host.url}/api/renew/{{vault}}/{{name}}")


@pytest.mark.parametrize(
    ("sample", "content_type"),
    [
        ("near-expiry.eventgrid.json", "application/json"),
        ("expired.eventgrid.json", "application/json"),
        ("near-expiry.cloudevent.json", "application/cloudevents+json; charset=utf-8"),
        ("expired.cloudevent.json", "application/cloudevents+json; charset=utf-8"),
    ],
)
def test_a_posted_sample_event_reaches_the_app_in_either_schema(
    host: HostProcess, sample: str, content_type: str
) -> None:
    """The Event Grid webhook answers 202 and the app logs its outcome: the sample's vault is not allowed."""
    before = host.count(SKIPPED_SAMPLE)
    status, _, _ = host.request(
        "POST",
        f"/runtime/webhooks/EventGrid?functionName={FUNCTION}",
        body=(EVENTS / sample).read_bytes(),
        headers={"Content-Type": content_type, "aeg-event-type": "Notification"},
    )
    assert status == 202
    host.wait_for(SKIPPED_SAMPLE, at_least=before + 1)


def test_the_webhook_answers_both_event_grid_validation_handshakes(host: HostProcess) -> None:
    """SubscriptionValidation gets its code back with 200; the CloudEvents OPTIONS request gets its origin allowed."""
    validation = [
        {
            "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
            "topic": "/subscriptions/00000000-0000-0000-0000-000000000000",
            "subject": "",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "1",
        }
    ]
    status, _, body = host.request(
        "POST",
        f"/runtime/webhooks/EventGrid?functionName={FUNCTION}",
        body=json.dumps(validation).encode(),
        headers={"Content-Type": "application/json", "aeg-event-type": "SubscriptionValidation"},
    )
    assert (status, json.loads(body)) == (200, {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})

    status, headers, _ = host.request(
        "OPTIONS",
        f"/runtime/webhooks/EventGrid?functionName={FUNCTION}",
        headers={"WebHook-Request-Origin": "eventgrid.azure.net"},
    )
    assert (status, headers.get("webhook-allowed-origin")) == (200, "eventgrid.azure.net")


def test_http_triggers_answer_through_the_host(host: HostProcess) -> None:
    """GET /api/status answers the journal (Azurite); POST /api/renew for an unknown certificate asks the vault."""
    status, headers, body = host.request("GET", "/api/status")
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert isinstance(json.loads(body), dict)

    status, _, body = host.request("POST", "/api/renew/local/no-such-certificate")
    assert (status, json.loads(body)["reason"]) == (404, "certificate_not_found")
    assert host.request("GET", "/api/renew/local/no-such-certificate")[0] == 405


def test_the_timer_runs_on_demand(host: HostProcess) -> None:
    """POST /admin/functions/renewal_sweep runs the sweep now and answers 202."""
    before = host.count("sweep resumed=")
    status, _, body = host.request("POST", "/admin/functions/renewal_sweep", body=b"{}")
    assert (status, json.loads(body)) == (202, {"function": "renewal_sweep", "succeeded": True})
    host.wait_for("sweep resumed=", at_least=before + 1)


def test_an_emulator_event_renews_a_certificate_through_the_host(host: HostProcess) -> None:
    """The local run of docs/local-run.md: the emulator's CloudEvents NearExpiry event reaches the host and the app
    renews the certificate with the local CA."""
    host.emulator.events.subscribe(
        f"{host.url}/runtime/webhooks/EventGrid?functionName={FUNCTION}", schema="CloudEvents", vault=VAULT
    )
    now = datetime.fromtimestamp(host.emulator.clock(), UTC)
    seed_certificate(
        host.emulator.certificate_client(VAULT),
        "web",
        create_local_ca(host.ca_dir),
        dns_names=["web.example.test"],
        not_before=now - timedelta(days=340),
        not_after=now + timedelta(days=25),
        tags={"renewal-ca": "devstack"},
    )
    line = host.wait_for("renewal outcome=renewed", timeout=90)
    assert f"vault={VAULT}" in line
    assert "certificate=web" in line
    assert "trigger=event_grid" in line
