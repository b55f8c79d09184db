"""The status page in a real browser: headless Chromium (Debian's ``chromium``) loads it from the app, served by
the Functions host stand-in over loopback, against a seeded stack (Key Vault emulator, Azurite, the local CA):
renewed certificates, one whose renewal fails, one at risk, one paused, and a dead-lettered delivery.

Set ``RENEWAL_STATUS_PAGE_SCREENSHOT=docs/img/status-page.png`` to keep the screenshot (the docs' image).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from devstack.functions_host import FunctionsHost
from renewal.flow.page import render_status_page
from renewal.flow.renew import renew
from renewal.flow.runtime import build_runtime
from renewal.pure.intake import on_demand_request
from renewal.settings import Settings
from tests.fakes.loopback import LoopbackServer, Response
from tests.stack import WEBHOOK_SECRET, Stack
from tests.status_page.png import read_png

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>alert(1)</script>"
WHITE = (255, 255, 255)


def _chromium() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    message = f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/install-services.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (under CI=true a missing browser is a failure)")
    pytest.skip(message)


def _browse(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``url`` with a profile of its own, isolated from the network but loopback."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *args,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@dataclass
class SeededPage:
    """The app's status page URL over loopback, and the seeded stack behind it."""

    url: str
    stack: Stack
    dead_webhook_id: str


@pytest.fixture
def seeded_page(stack: Stack) -> Iterator[SeededPage]:
    """Seed a small fleet, renew part of it, fail one, dead-letter one delivery, and serve the app."""
    assert stack.env is not None
    with LoopbackServer(lambda request: Response(400)) as refusing:
        stack.env.setenv(
            "RENEWAL_WEBHOOKS",
            json.dumps(
                {
                    "sink": {"url": stack.sink.url, "secret_setting": "SINK_SECRET"},
                    "payments-hook": {"url": refusing.url, "secret_setting": "SINK_SECRET", "tag": "team=payments"},
                }
            ),
        )
        stack.seed("web-frontend", days_left=25, days_old=300)
        stack.seed("api-gateway", days_left=20, days_old=300, tags={"renewal-ca": "corp", "team": "payments"})
        stack.seed("billing", days_left=12, days_old=300, tags={"renewal-ca": HOSTILE})
        stack.seed("legacy-portal", days_left=4, days_old=360, tags={})
        stack.seed("frozen", days_left=90, days_old=200, tags={"renewal-ca": "corp", "renewal-paused": "true"})
        for index, days_left in enumerate((40, 65, 95, 130, 160)):
            stack.seed(f"svc-{index}", days_left=days_left, days_old=30)

        settings = Settings.from_environ(dict(os.environ))
        runtime = build_runtime(settings, clock=stack.now)
        vault = next(iter(settings.vaults.values()))
        for name in ("web-frontend", "api-gateway", "billing"):
            renew(on_demand_request(vault, name, trigger="manual"), runtime)
        # A day later the refused delivery is past the maximum age: the next attempt dead-letters it.
        later = build_runtime(settings, clock=lambda: stack.now() + timedelta(hours=25))
        pending = [item for item in later.journal.outbox([vault.name]) if item.status == "pending"]
        assert [item.endpoint for item in pending] == ["payments-hook"]
        later.deliverer().send(pending)

        with FunctionsHost() as host:
            yield SeededPage(f"{host.url}/api/status/page", stack, pending[0].webhook_id)


def test_the_app_serves_the_page_as_one_self_contained_html_document(seeded_page: SeededPage) -> None:
    """The route answers 200 with HTML that loads nothing: no script, no external URL, a CSP that forbids both."""
    with urllib.request.urlopen(seeded_page.url, timeout=30) as answer:  # noqa: S310 - the host on loopback
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/html")
        page = answer.read().decode("utf-8")
    assert "<script" not in page.lower()
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "default-src 'none'" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_chromium_renders_the_fleet_summary_failures_dead_letters_and_next_renewals(
    seeded_page: SeededPage,
) -> None:
    """The DOM Chromium builds shows the counts, the failing certificate's reason, the dead letter, what is at
    risk and the next renewals; the hostile tag stays text."""
    dom = _browse(seeded_page.url, "--dump-dom").stdout
    assert "Key Vault certificate renewal" in dom
    assert '<li class="card" id="count-certificates"><b>10</b>' in dom
    assert '<li class="card bad" id="count-failing"><b>1</b>failing</li>' in dom
    assert '<li class="card bad" id="count-dead_letters"><b>1</b>dead letters</li>' in dom
    assert '<li class="card" id="count-paused"><b>1</b>paused</li>' in dom
    failures = dom.split('id="failures"')[1].split("</section>")[0]
    assert "billing" in failures
    assert "unknown_ca_profile" in failures
    dead = dom.split('id="dead-letters"')[1].split("</section>")[0]
    assert seeded_page.dead_webhook_id in dead
    assert "payments-hook" in dead
    assert "HTTP 400" in dead or "400" in dead
    at_risk = dom.split('id="at-risk"')[1].split("</section>")[0]
    assert "legacy-portal" in at_risk
    assert "expires_unmanaged" in at_risk
    upcoming = dom.split('id="next-renewals"')[1].split("</section>")[0]
    assert upcoming.index("svc-0") < upcoming.index("svc-4")
    assert dom.count('class="cert state-') == 8  # the two renewed ones expire after the 26 weeks drawn
    assert "state-failing" in dom
    assert "state-paused" in dom
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert WEBHOOK_SECRET not in dom


def test_chromium_screenshot_of_the_page_is_not_blank(seeded_page: SeededPage, tmp_path: Path) -> None:
    """A 1280x1600 screenshot decodes to a picture with the page's colours, not a blank or single-colour one."""
    shot = tmp_path / "status-page.png"
    _browse(seeded_page.url, f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars")
    image = read_png(shot.read_bytes())
    assert (image.width, image.height) == (1280, 1600)
    colours = image.colours()
    assert len(colours) > 50
    assert image.share_of(WHITE) < 0.9
    assert (0x1B, 0x1F, 0x24) in colours  # the header's background
    assert (0xD6, 0x27, 0x28) in colours  # the failing certificate's dot and card
    keep = os.environ.get("RENEWAL_STATUS_PAGE_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_every_value_on_the_page_is_escaped() -> None:
    """Names, reasons and messages from outside are text on the page, never markup."""
    hostile = '"><img src=x onerror=alert(1)>'
    report = {
        "generated_at": "2026-12-01T10:00:00+00:00",
        "summary": {"certificates": 1, "failing": 1},
        "list_errors": [hostile],
        "expiry_by_week": {"starting": "2026-12-01T10:00:00+00:00", "weeks": [1] + [0] * 25, "expired": 0, "later": 0},
        "expiring": [
            {"vault": "kv1", "certificate": hostile, "expires_on": "2026-12-03T10:00:00+00:00", "state": hostile}
        ],
        "at_risk": [
            {"vault": "kv1", "certificate": hostile, "expires_on": None, "reason": hostile, "message": hostile}
        ],
        "failures": [
            {
                "vault": "kv1",
                "certificate": hostile,
                "step": "begin",
                "attempts": 1,
                "next_attempt_at": None,
                "last_reason": hostile,
                "last_error": hostile,
                "last_outcome": {"reason": hostile, "message": hostile},
            }
        ],
        "dead_letters": [
            {
                "endpoint": hostile,
                "vault": "kv1",
                "certificate": hostile,
                "webhook_id": hostile,
                "attempts": 3,
                "created_at": None,
                "last_error": hostile,
            }
        ],
        "next_renewals": [{"vault": "kv1", "certificate": hostile, "renews_from": None, "expires_on": None}],
        "rollouts": [
            {
                "vault": "kv1",
                "certificate": hostile,
                "target": hostile,
                "version": "v2",
                "state": "stalled",
                "pushed_at": None,
                "deadline": None,
                "probe": hostile,
            }
        ],
    }
    page = render_status_page(report)
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 13
    assert 'id="rollouts"' in page
