"""The operator CLI end to end: the Key Vault emulator, Azurite and the local CA, entered through ``renewal.cli.main``
as the console script does, with the app's own settings."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from renewal.flow.report import INVENTORY_COLUMNS, PLAN_COLUMNS
from renewal.pure.tags import is_paused
from tests.cli.conftest import TOKEN, VAULT, WEBHOOK_SECRET, Run, Stack
from tests.fakes.loopback import LoopbackServer, Request, Response

ROOT = Path(__file__).resolve().parents[2]
RunCli = Callable[..., Run]

EXPECTED_INVENTORY_COLUMNS = (
    "vault,certificate,managed,why,ca_profile,issuer,issued_by,subject,sans,not_before,expires_on,window_start,"
    "next_renewal,journal_step,last_outcome,last_reason,at_risk,error"
)


def _fleet(stack: Stack) -> None:
    """A managed certificate inside its window, a young managed one, an unmanaged one expiring in 3 days."""
    stack.seed("due-app", days_left=25, days_old=300)
    stack.seed("young-app", days_left=300, days_old=10, tags={"renewal-ca": "corp", "team": "payments"})
    stack.seed("legacy", days_left=3, days_old=360, tags={})


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _no_secrets(run: Run) -> None:
    for secret in (TOKEN, WEBHOOK_SECRET):
        assert secret not in run.out
        assert secret not in run.err


def test_inventory_csv_has_the_documented_columns_and_one_row_per_certificate(stack: Stack, run: RunCli) -> None:
    """``inventory --csv`` prints the documented header and each certificate's issuer, subject, SANs and state."""
    _fleet(stack)
    result = run("inventory", "--csv")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == EXPECTED_INVENTORY_COLUMNS
    assert tuple(lines[0].split(",")) == INVENTORY_COLUMNS
    rows = {row["certificate"]: row for row in csv.DictReader(io.StringIO(result.out))}
    assert set(rows) == {"due-app", "young-app", "legacy"}
    due = rows["due-app"]
    assert due["vault"] == VAULT
    assert due["managed"] == "true"
    assert due["why"] == "renewal-ca tag"
    assert due["ca_profile"] == "corp"
    assert due["issuer"] == "Unknown"
    assert "CN=" in due["issued_by"]
    assert due["subject"] == "CN=due-app.corp.internal"
    assert due["sans"] == "due-app.corp.internal www.due-app.corp.internal"
    assert due["next_renewal"] == stack.now().isoformat(timespec="seconds")  # inside its window: now
    assert due["journal_step"] == ""
    assert rows["legacy"]["managed"] == "false"
    assert rows["legacy"]["why"] == "no renewal-ca tag and no default CA profile"
    assert rows["legacy"]["at_risk"] == "expires_unmanaged"
    assert rows["young-app"]["at_risk"] == ""
    assert rows["young-app"]["window_start"] > stack.now().isoformat()
    _no_secrets(result)


def test_inventory_json_rows_carry_exactly_the_documented_keys(stack: Stack, run: RunCli) -> None:
    """``inventory --json`` gives one object per certificate with exactly the CSV's columns as keys."""
    _fleet(stack)
    result = run("inventory", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert set(report) == {"generated_at", "certificates", "list_errors"}
    assert report["list_errors"] == []
    for row in report["certificates"]:
        assert tuple(row) == INVENTORY_COLUMNS
    due = next(row for row in report["certificates"] if row["certificate"] == "due-app")
    assert due["managed"] is True
    assert due["sans"] == ["due-app.corp.internal", "www.due-app.corp.internal"]


def test_inventory_table_names_every_certificate(stack: Stack, run: RunCli) -> None:
    """The default output is a table that names each certificate and whether it is managed."""
    _fleet(stack)
    result = run("inventory")
    assert result.code == 0, result.err
    for name in ("due-app", "young-app", "legacy"):
        assert name in result.out
    assert "3 certificates" in result.out
    legacy = next(line for line in result.out.splitlines() if "legacy" in line)
    assert "│ no " in legacy
    assert f"{VAULT}/legacy: no: no renewal-ca tag and no default CA profile" in result.out


def test_inventory_reports_a_vault_it_cannot_list_and_exits_1(stack: Stack, run: RunCli) -> None:
    """A vault that refuses its listing is named on stderr with the reason, and the exit code is 1."""
    stack.seed("due-app", days_left=25, days_old=300)
    stack.emulator.faults.script("list", 403, vault=VAULT)
    result = run("inventory", "--json", "--quiet")
    assert result.code == 1
    assert f"could not list vault {VAULT}: keyvault_access_denied" in result.err
    assert json.loads(result.out)["certificates"] == []


def test_inventory_keeps_the_listing_of_a_certificate_it_cannot_read_and_exits_1(stack: Stack, run: RunCli) -> None:
    """A certificate whose read is refused keeps its listed columns and says why in ``error``; exit code 1."""
    stack.seed("due-app", days_left=25, days_old=300)
    stack.emulator.faults.script("get", 403, vault=VAULT)
    result = run("inventory", "--json", "--quiet", "--workers", "1")
    assert result.code == 1
    [row] = json.loads(result.out)["certificates"]
    assert row["error"].startswith("keyvault_access_denied: ")
    assert row["expires_on"] is not None
    assert row["subject"] is None


def test_plan_lists_what_renews_inside_the_horizon_and_exits_1_for_what_is_at_risk(stack: Stack, run: RunCli) -> None:
    """``plan --days 30`` shows the due certificate and the unmanaged one about to expire (at risk, exit 1), not the
    young one."""
    _fleet(stack)
    result = run("plan", "--days", "30", "--json")
    assert result.code == 1, result.err
    report = json.loads(result.out)
    rows = {row["certificate"]: row for row in report["renewals"]}
    assert set(rows) == {"due-app", "legacy"}
    for row in report["renewals"]:
        assert tuple(row) == PLAN_COLUMNS
    assert rows["due-app"]["action"] == "due"
    assert rows["due-app"]["at_risk"] is None
    assert rows["legacy"]["action"] == "not_managed"
    assert rows["legacy"]["at_risk"] == "expires_unmanaged"
    assert report["at_risk"] == 1


def test_plan_over_a_longer_horizon_shows_when_the_young_certificate_renews(stack: Stack, run: RunCli) -> None:
    """Over a year the young certificate appears with action ``renews`` at its window's start."""
    stack.seed("young-app", days_left=300, days_old=10)
    result = run("plan", "--days", "365", "--json")
    assert result.code == 0, result.err
    [row] = json.loads(result.out)["renewals"]
    assert row["action"] == "renews"
    assert row["when"] == row["window_start"]
    assert row["when"] > stack.now().isoformat()
    table = run("plan", "--days", "365")
    assert "young-app" in table.out
    assert "renews" in table.out


def test_renew_renews_one_certificate_by_the_manual_path(stack: Stack, run: RunCli) -> None:
    """``renew VAULT NAME`` makes a new version signed by the local CA, delivers its webhook, and exits 0."""
    stack.seed("young-app", days_left=300, days_old=10)
    result = run("renew", VAULT, "young-app")
    assert result.code == 0, result.err
    assert "young-app: renewed (renewed)" in result.out
    assert len(stack.versions("young-app")) == 2
    assert len(stack.sink.deliveries) == 1
    again = run("renew", VAULT, "young-app", "--json")
    assert json.loads(again.out)["reason"] == "recently_renewed"
    assert again.code == 0
    forced = run("renew", VAULT, "young-app", "--force", "--json")
    assert json.loads(forced.out)["status"] == "renewed"
    _no_secrets(result)


def test_renew_exits_1_when_the_renewal_fails_and_2_for_a_vault_not_allowed(stack: Stack, run: RunCli) -> None:
    """An unknown certificate fails (exit 1); a vault not in RENEWAL_VAULTS is a usage error (exit 2)."""
    missing = run("renew", VAULT, "nowhere")
    assert missing.code == 1
    assert "failed (certificate_not_found)" in missing.out
    other = run("renew", "elsewhere", "nowhere")
    assert other.code == 2
    assert "vault 'elsewhere' is not in RENEWAL_VAULTS (allowed: kv1)" in other.err


def test_status_json_is_the_status_endpoints_report_with_the_summary(stack: Stack, run: RunCli) -> None:
    """``status --json`` keeps the endpoint's keys, adds the fleet summary, and exits 1 while a renewal fails."""
    _fleet(stack)
    stack.seed("broken", days_left=200, days_old=10, tags={"renewal-ca": "nosuch"})
    assert run("renew", VAULT, "broken").code == 1
    result = run("status", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    for key in (
        "generated_at",
        "under_way",
        "failures",
        "pending_deliveries",
        "dead_letters",
        "next_renewals",
        "paused",
        "certificate_problems",
        "list_errors",
    ):
        assert key in report
    summary = report["summary"]
    assert summary["certificates"] == 4
    assert summary["managed"] == 3
    assert summary["not_managed"] == 1
    assert summary["failing"] == 1
    assert {row["certificate"] for row in report["at_risk"]} == {"legacy", "broken"}
    assert [f["certificate"] for f in report["failures"]] == ["broken"]
    assert report["failures"][0]["last_outcome"]["reason"] == "unknown_ca_profile"
    table = run("status")
    assert "failures" in table.out
    assert "unknown_ca_profile" in table.out


def test_status_exits_0_for_a_healthy_fleet(stack: Stack, run: RunCli) -> None:
    """With nothing failing, at risk or dead-lettered, ``status`` exits 0."""
    stack.seed("young-app", days_left=300, days_old=10)
    result = run("status")
    assert result.code == 0, result.out + result.err
    assert "next renewals" in result.out
    assert "young-app" in result.out


def test_pause_and_resume_set_and_remove_only_the_pause_tag(stack: Stack, run: RunCli) -> None:
    """``pause`` adds ``renewal-paused=true`` keeping the other tags, the app then skips it; ``resume`` removes it."""
    stack.seed("young-app", days_left=300, days_old=10, tags={"renewal-ca": "corp", "team": "payments"})
    paused = run("pause", VAULT, "young-app")
    assert paused.code == 0, paused.err
    tags = stack.client.get_certificate("young-app").properties.tags
    assert tags == {"renewal-ca": "corp", "team": "payments", "renewal-paused": "true"}
    assert is_paused(tags)
    skipped = run("renew", VAULT, "young-app", "--json")
    assert json.loads(skipped.out)["reason"] == "paused"
    assert "already paused" in run("pause", VAULT, "young-app").out
    resumed = run("resume", VAULT, "young-app")
    assert resumed.code == 0, resumed.err
    assert stack.client.get_certificate("young-app").properties.tags == {"renewal-ca": "corp", "team": "payments"}
    assert run("pause", VAULT, "nowhere").code == 1


def test_deliveries_lists_dead_letters_and_redeliver_sends_one_again(stack: Stack, run: RunCli) -> None:
    """A delivery that keeps failing is dead-lettered past the maximum age (``deliveries`` exits 1); once the
    endpoint is back, ``deliveries redeliver ID`` sends it and it is delivered."""
    answers = {"status": 400}

    def endpoint(request: Request) -> Response:
        return Response(answers["status"])

    with LoopbackServer(endpoint) as receiver:
        stack.env.setenv(  # type: ignore[union-attr]
            "RENEWAL_WEBHOOKS", json.dumps({"flaky": {"url": receiver.url, "secret_setting": "SINK_SECRET"}})
        )
        stack.seed("young-app", days_left=300, days_old=10)
        assert run("renew", VAULT, "young-app").code == 0
        pending = run("deliveries", "--json")
        assert pending.code == 0
        [row] = json.loads(pending.out)["pending"]
        webhook_id = row["webhook_id"]
        assert row["endpoint"] == "flaky"

        stack.emulator.clock.advance(timedelta(hours=25).total_seconds())
        again = run("deliveries", "redeliver", webhook_id)
        assert again.code == 1
        assert "failed again" in again.out
        dead = run("deliveries", "--json")
        assert dead.code == 1
        assert [d["webhook_id"] for d in json.loads(dead.out)["dead_letters"]] == [webhook_id]
        assert webhook_id in run("deliveries").out

        answers["status"] = 204
        sent = run("deliveries", "redeliver", webhook_id)
        assert sent.code == 0, sent.out + sent.err
        assert f"delivery {webhook_id} to flaky: delivered" in sent.out
        assert run("deliveries", "--json").code == 0
        assert run("deliveries", "redeliver", webhook_id).code == 1
        assert run("deliveries", "redeliver", "msg_nosuch").code == 1
    _no_secrets(sent)


def test_check_passes_on_a_working_setup(stack: Stack, run: RunCli) -> None:
    """``check`` reaches the vault, the CA profile and the journal, says so, and exits 0."""
    result = run("check")
    assert result.code == 0, result.out
    assert f"ok      vault {VAULT}: https://127.0.0.1:" in result.out
    assert "ca_profile corp (local)" in result.out
    assert "journal" in result.out
    assert result.out.rstrip().endswith("all checks passed")
    report = json.loads(run("check", "--json").out)
    assert report["ok"] is True
    assert {c["what"] for c in report["checks"]} == {"settings", "vault", "ca_profile", "journal"}
    _no_secrets(result)


def test_check_names_a_broken_setting_in_plain_words_and_exits_2(stack: Stack, run: RunCli) -> None:
    """A malformed setting is named with what is wrong with it, and nothing is reached (exit 2)."""
    stack.env.setenv("RENEWAL_WINDOW_FRACTION", "two thirds")  # type: ignore[union-attr]
    result = run("check")
    assert result.code == 2
    assert "PROBLEM settings RENEWAL_WINDOW_FRACTION: must be a number\n" in result.out
    elsewhere = run("status")
    assert elsewhere.code == 2
    assert "RENEWAL_WINDOW_FRACTION: must be a number" in elsewhere.err


def test_check_says_which_vault_cannot_be_reached_and_exits_1(stack: Stack, run: RunCli) -> None:
    """A vault nobody answers at is reported as unreachable, quickly; the reachable one still passes."""
    port = _closed_port()
    stack.env.setenv("RENEWAL_VAULTS", f"{os.environ['RENEWAL_VAULTS']},kv9=https://127.0.0.1:{port}")  # type: ignore[union-attr]
    result = run("check")
    assert result.code == 1
    assert f"PROBLEM vault kv9: https://127.0.0.1:{port} cannot be reached (connection failed" in result.out
    assert f"ok      vault {VAULT}" in result.out
    assert "1 problem(s)" in result.out


def test_check_reports_a_journal_it_cannot_reach(stack: Stack, run: RunCli) -> None:
    """A journal connection string pointing nowhere is a problem of the journal, in words."""
    connection = os.environ["RENEWAL_JOURNAL_CONNECTION"]
    port = _closed_port()
    broken = ";".join(
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1" if part.startswith("TableEndpoint=") else part
        for part in connection.split(";")
    )
    stack.env.setenv("RENEWAL_JOURNAL_CONNECTION", broken)  # type: ignore[union-attr]
    result = run("check")
    assert result.code == 1
    assert "PROBLEM journal" in result.out
    assert "AccountKey" not in result.out


def test_the_settings_come_from_a_local_settings_file(stack: Stack, run: RunCli, tmp_path: Path) -> None:
    """``--settings FILE`` reads ``Values`` as the Functions host does; without RENEWAL_VAULTS in the environment."""
    stack.seed("young-app", days_left=300, days_old=10)
    names = [k for k in os.environ if k.startswith("RENEWAL_") or k == "SINK_SECRET"]
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {k: os.environ[k] for k in names}}))
    bare = {"PATH": os.environ.get("PATH", "")}
    result = run("inventory", "--json", "--settings", str(settings), environ=bare)
    assert result.code == 0, result.err
    assert [r["certificate"] for r in json.loads(result.out)["certificates"]] == ["young-app"]
    before = run("--settings", str(settings), "inventory", "--json", environ=bare)
    assert before.code == 0, before.err
    assert before.out.count('"certificate": "young-app"') == 1
    missing = run("status", "--settings", str(tmp_path / "nope.json"), environ=bare)
    assert missing.code == 2
    assert "cannot read the settings file" in missing.err


def test_usage_errors_exit_2() -> None:
    """An unknown command or a missing argument is a usage error (exit 2); ``--help`` exits 0."""
    from renewal.cli import main

    quiet = io.StringIO()
    assert main(["frobnicate"], environ={}, stdout=quiet, stderr=quiet) == 2
    assert main(["renew", "kv1"], environ={}, stdout=quiet, stderr=quiet) == 2
    assert "the following arguments are required: name" in quiet.getvalue()
    assert main(["status"], environ={}, stdout=quiet, stderr=quiet) == 2  # RENEWAL_VAULTS missing


@pytest.mark.parametrize("args", [["--help"], ["inventory", "--help"]])
def test_python_dash_m_renewal_runs_the_cli(args: list[str]) -> None:
    """``python -m renewal`` is the CLI, as the ``renewal`` console script is."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "renewal", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage: renewal" in done.stdout


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as an operator's stderr is."""

    def isatty(self) -> bool:
        return True


def test_inventory_shows_progress_on_a_terminal_unless_quiet(stack: Stack) -> None:
    """On a terminal the inventory draws a progress bar on stderr (stdout keeps the export); ``--quiet`` draws none."""
    from renewal.cli import main

    stack.seed("due-app", days_left=25, days_old=300)
    for quiet, shown in ((False, True), (True, False)):
        out, err = io.StringIO(), _Terminal()
        argv = ["inventory", "--csv", *(["--quiet"] if quiet else [])]
        assert main(argv, environ=dict(os.environ), clock=stack.now, stdout=out, stderr=err) == 0
        assert ("reading certificates" in err.getvalue()) is shown
        assert out.getvalue().startswith(EXPECTED_INVENTORY_COLUMNS)


def test_the_hidden_now_option_sets_the_runtimes_clock(stack: Stack) -> None:
    """``--now`` is the moment the runtime's clock reports: the plan is what it would be then."""
    from renewal.cli import main

    stack.seed("young-app", days_left=300, days_old=10)
    later = (stack.now() + timedelta(days=280)).isoformat()
    out = io.StringIO()
    code = main(["plan", "--json", "--now", later], environ=dict(os.environ), stdout=out, stderr=io.StringIO())
    report = json.loads(out.getvalue())
    assert code == 0
    assert report["generated_at"] == later[:19] + "+00:00"
    assert [(r["certificate"], r["action"]) for r in report["renewals"]] == [("young-app", "due")]
    assert main(["plan", "--now", "yesterday"], environ=dict(os.environ), stdout=out, stderr=io.StringIO()) == 2


def test_check_says_a_vault_refusing_the_identity_needs_the_role(stack: Stack, run: RunCli) -> None:
    """A vault that answers 403 is reported as access denied, naming the role the identity needs."""
    stack.emulator.faults.script("list", 403, vault=VAULT)
    result = run("check")
    assert result.code == 1
    assert "access denied (HTTP 403): the app's identity needs the Key Vault Certificates Officer role" in result.out
