"""The CLI's commands: parse, build the runtime as the app does, call ``renewal.flow.report``, show the result."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from renewal.errors import ConfigurationError, RenewalError
from renewal.flow.runtime import Clock, Runtime
from renewal.settings import VAULTS, Settings, VaultConfig

__all__ = ["EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "load_environ", "main"]

EXIT_OK = 0
# Something needs a person: a certificate at risk, a failed renewal, a dead letter, an unreachable vault or CA.
EXIT_PROBLEM = 1
# The command line or the settings are wrong: nothing was asked of anyone.
EXIT_USAGE = 2

LOCAL_SETTINGS = "local.settings.json"
_PAUSED_VALUE = "true"
_PROSE_COLUMNS = frozenset({"why", "error", "last error"})


class _UsageError(Exception):
    """A mistake on the command line or in the settings, said in plain words (exit code 2)."""


@dataclass
class _Io:
    """Where the command writes: tables and exports to ``out``, progress and problems to ``err``."""

    out: IO[str]
    err: IO[str]
    quiet: bool = False

    def console(self, stream: IO[str] | None = None) -> Any:
        from rich.console import Console

        stream = stream or self.out
        terminal = stream.isatty()
        # Piped into a file or another program, a table keeps a fixed width (COLUMNS, else 160) rather than 80.
        columns = os.environ.get("COLUMNS", "")
        width = None if terminal else int(columns) if columns.isdigit() else 160
        return Console(file=stream, width=width, no_color=not terminal, highlight=False)


def load_environ(settings_file: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The settings to use: ``environ``, overlaid with ``settings_file``'s ``Values`` when one is given, or with
    ``./local.settings.json``'s when that file exists and ``environ`` has no ``RENEWAL_VAULTS``.

    Raises:
        _UsageError: the file cannot be read, or is not a ``local.settings.json`` (``{"Values": {...}}``).
    """
    if settings_file is None:
        if environ.get(VAULTS, "").strip() or not Path(LOCAL_SETTINGS).is_file():
            return dict(environ)
        settings_file = LOCAL_SETTINGS
    try:
        document = json.loads(Path(settings_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _UsageError(f"cannot read the settings file {settings_file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise _UsageError(f"the settings file {settings_file} is not JSON") from exc
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise _UsageError(f'the settings file {settings_file} has no "Values" object (local.settings.json\'s shape)')
    return {**environ, **{str(key): "" if value is None else str(value) for key, value in values.items()}}


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run one CLI command and return its exit code (``EXIT_OK``, ``EXIT_PROBLEM`` or ``EXIT_USAGE``).

    ``environ`` defaults to the process environment and ``clock`` to the runtime's (the wall clock, or the hidden
    ``--now`` option's moment); tests pass both.
    """
    io_ = _Io(out=stdout or sys.stdout, err=stderr or sys.stderr)
    parser = _parser()
    try:
        with contextlib.redirect_stdout(io_.out), contextlib.redirect_stderr(io_.err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the help or the usage error
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    io_.quiet = bool(getattr(args, "quiet", False))
    _quiet_logging(io_.err)
    try:
        now = getattr(args, "now", None)
        if now is not None and clock is None:
            clock = _fixed_clock(now)
        environment = load_environ(getattr(args, "settings", None), os.environ if environ is None else environ)
        if args.command is _check:
            return int(_check(args, environment, io_, clock))
        command: Callable[[argparse.Namespace, Runtime, _Io], int] = args.command
        return command(args, _runtime(environment, clock), io_)
    except _UsageError as exc:
        print(f"renewal: {exc}", file=io_.err)
        return EXIT_USAGE
    except ConfigurationError as exc:
        print(f"renewal: configuration: {exc.message}", file=io_.err)
        return EXIT_USAGE
    except RenewalError as exc:
        print(f"renewal: {exc.reason}: {_scrub_free(exc.message)}", file=io_.err)
        return EXIT_PROBLEM


def _scrub_free(text: str) -> str:
    from renewal.pure.redact import scrub

    return scrub(text, frozenset())


def _fixed_clock(value: str) -> Clock:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _UsageError(f"--now {value!r} is not an ISO 8601 time") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return lambda: moment


def _quiet_logging(err: IO[str]) -> None:
    """The app's own log lines at WARNING and above go to stderr; the Azure SDK's request logging stays off."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
    logging.getLogger("azure").setLevel(logging.WARNING)


def _runtime(environ: Mapping[str, str], clock: Clock | None) -> Runtime:
    from renewal.flow.runtime import build_runtime

    return build_runtime(Settings.from_environ(environ), clock=clock)


def _parser() -> argparse.ArgumentParser:
    # Accepted before or after the command; SUPPRESS keeps a subcommand's absent option from overwriting the
    # value given before it.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument(
        "--settings",
        metavar="FILE",
        help=f"a local.settings.json whose Values to use (default: ./{LOCAL_SETTINGS} when the environment has "
        f"no {VAULTS})",
    )
    common.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    # For tests and what-if runs: the moment the runtime's clock reports.
    common.add_argument("--now", help=argparse.SUPPRESS)
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    parser = argparse.ArgumentParser(
        prog="renewal",
        description="Operate the Key Vault private-CA renewal app with its own settings.",
        epilog="Exit codes: 0 all is well; 1 something needs a person (see each command); 2 usage or settings error.",
        parents=[common],
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    inventory = commands.add_parser(
        "inventory",
        parents=[common, listing],
        help="every certificate in every allowed vault",
        description="Every certificate in every allowed vault: managed or not and why, CA profile, issuer, subject "
        "and SANs, expiry, window start, next renewal, journal state and last outcome. Reads each certificate. "
        "Exit 1 when a vault could not be listed or a certificate could not be read.",
    )
    inventory.add_argument("--csv", action="store_true", help="print CSV (the same columns as --json)")
    inventory.add_argument("--workers", type=int, default=8, help="certificates read at a time (default 8)")
    inventory.set_defaults(command=_inventory)

    plan = commands.add_parser(
        "plan",
        parents=[common, listing],
        help="what renews when, and what is at risk",
        description="What renews when over the next DAYS days, and what is at risk; costs only the vault listings. "
        "Exit 1 when anything is at risk or a vault could not be listed.",
    )
    plan.add_argument("--days", type=float, default=30.0, help="the horizon in days (default 30)")
    plan.set_defaults(command=_plan)

    renew = commands.add_parser(
        "renew",
        parents=[common, listing],
        help="renew one certificate now",
        description="Renew one certificate now, by the manual trigger's path. Exit 1 when the renewal failed.",
    )
    renew.add_argument("vault")
    renew.add_argument("name")
    renew.add_argument("--force", action="store_true", help="renew even when paused or just renewed")
    renew.set_defaults(command=_renew)

    status = commands.add_parser(
        "status",
        parents=[common, listing],
        help="the status report",
        description="The status report (the status endpoint's JSON with --json). Exit 1 when a renewal is failing, "
        "a certificate is at risk, a delivery is dead-lettered or a vault could not be listed.",
    )
    status.set_defaults(command=_status)

    for name, verb in (("pause", "stop"), ("resume", "allow again")):
        tagger = commands.add_parser(
            name,
            parents=[common],
            help=f"{verb} renewals of one certificate (the renewal-paused tag)",
            description=f"{verb.capitalize()} renewals of one certificate by setting or removing its renewal-paused "
            "tag; other tags are kept. Exit 1 when Key Vault refused.",
        )
        tagger.add_argument("vault")
        tagger.add_argument("name")
        tagger.set_defaults(command=_pause if name == "pause" else _resume)

    deliveries = commands.add_parser(
        "deliveries",
        parents=[common, listing],
        help="pending and dead-lettered deliveries",
        description="Pending and dead-lettered outbox rows. Exit 1 when any delivery is dead-lettered.",
    )
    deliveries.set_defaults(command=_deliveries)
    actions = deliveries.add_subparsers(title="actions", metavar="ACTION")
    redeliver = actions.add_parser(
        "redeliver",
        parents=[common, listing],
        help="send one delivery again now",
        description="Put a dead-lettered (or pending) delivery back to pending and send it now. Exit 1 when it "
        "is unknown, already delivered, or failed again.",
    )
    redeliver.add_argument("webhook_id")
    redeliver.set_defaults(command=_redeliver)

    consumers = commands.add_parser(
        "consumers",
        parents=[common, listing],
        help="the Azure resources that use a vault's certificates",
        description="The Azure resources that reference the certificates of VAULT (or of every allowed vault; only "
        "NAME's with NAME), found through Azure Resource Graph: Application Gateway listeners, API Management "
        "hostnames and certificates, App Service certificates, Container Apps environment certificates. Flags a "
        "reference pinned to one version (it never rotates) and one no deployment target covers. Exit 1 when any "
        "is pinned or not covered.",
    )
    consumers.add_argument("vault", nargs="?")
    consumers.add_argument("name", nargs="?")
    consumers.add_argument(
        "--subscription",
        action="append",
        default=[],
        help="a subscription to search (repeat it; default: every one the identity can read)",
    )
    consumers.set_defaults(command=_consumers)

    check = commands.add_parser(
        "check",
        parents=[common, listing],
        help="validate the settings and reach each vault, CA profile and the journal",
        description="Validate the settings, then reach each vault (one listing page), each CA profile (a "
        "harmless call where the adapter has one) and the journal. Exit 1 when anything cannot be reached, 2 when "
        "the settings are wrong.",
    )
    check.set_defaults(command=_check)
    return parser


def _consumers(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    from renewal.shells.resource_graph import ResourceGraph, list_consumers
    from renewal.targets import arm_client_from_environ, parse_targets

    environ = runtime.settings.environ
    configured = parse_targets(environ)
    vaults = [_vault(runtime, args.vault)] if args.vault else list(runtime.settings.vaults.values())
    graph = ResourceGraph(arm_client_from_environ(environ), subscriptions=tuple(args.subscription))
    rows = []
    for vault in vaults:
        for consumer in list_consumers(graph, vault_name=vault.name, certificate_name=args.name, configured=configured):
            rows.append(
                {
                    "vault": vault.name,
                    "certificate": consumer.certificate_name,
                    "kind": consumer.kind,
                    "resource_id": consumer.resource_id,
                    "where": consumer.where,
                    "pinned_version": consumer.pinned_version,
                    "target": consumer.configured_target,
                }
            )
    if args.json:
        _print_json(io_, {"consumers": rows})
    else:
        table = _table("consumers", ("vault", "certificate", "kind", "resource", "where", "pinned", "target"))
        for row in rows:
            table.add_row(
                row["vault"],
                row["certificate"],
                row["kind"],
                _resource_label(str(row["resource_id"])),
                row["where"] or "-",
                row["pinned_version"] or "-",
                row["target"] or "not configured",
            )
        io_.console().print(table)
    trouble = any(row["pinned_version"] or not row["target"] for row in rows)
    return EXIT_PROBLEM if trouble else EXIT_OK


def _resource_label(resource_id: str) -> str:
    """``group/name`` of an ARM id, short enough for a table (``--json`` has the whole id)."""
    parts = resource_id.strip("/").split("/")
    lowered = [part.lower() for part in parts]
    group = parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered[:-1] else "?"
    return f"{group}/{parts[-1]}"


def _vault(runtime: Runtime, name: str) -> VaultConfig:
    vault = runtime.settings.vaults.get(name.lower())
    if vault is None:
        known = ", ".join(v.name for v in runtime.settings.vaults.values())
        raise _UsageError(f"vault {name[:40]!r} is not in {VAULTS} (allowed: {known})")
    return vault


def _print_json(io_: _Io, value: object, *, sort_keys: bool = False) -> None:
    """JSON with keys in the documented column order (sorted only where the status endpoint sorts them)."""
    print(json.dumps(value, indent=2, sort_keys=sort_keys, default=str), file=io_.out)


def _short(moment: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` (UTC), or ``-``."""
    return moment[:16].replace("T", " ") if moment else "-"


def _table(title: str, columns: Sequence[str]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        # Free text wraps; names, times and reasons stay on one line (shortened with an ellipsis if they must).
        prose = column in _PROSE_COLUMNS
        table.add_column(column, overflow="fold" if prose else "ellipsis", no_wrap=not prose)
    return table


def _list_errors(io_: _Io, errors: Sequence[str]) -> None:
    for error in errors:
        print(f"renewal: could not list vault {error}", file=io_.err)


# ---- inventory ------------------------------------------------------------------------------------------------


def _inventory(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    from renewal.flow.report import INVENTORY_COLUMNS, inventory

    # The progress goes to stderr, so it may run beside an export on stdout.
    if not io_.quiet and io_.err.isatty():
        report = _with_progress(io_, lambda progress: inventory(runtime, workers=args.workers, progress=progress))
    else:
        report = inventory(runtime, workers=args.workers)
    rows: list[dict[str, Any]] = report["certificates"]
    if args.json:
        _print_json(io_, report)
    elif args.csv:
        io_.out.write(_csv(rows, INVENTORY_COLUMNS))
    else:
        table = _table(
            f"{len(rows)} certificates",
            (
                "vault",
                "certificate",
                "managed",
                "CA profile",
                "SANs",
                "expires",
                "next renewal",
                "journal",
                "last outcome",
                "at risk",
            ),
        )
        for row in rows:
            sans = row["sans"] or []
            table.add_row(
                row["vault"],
                row["certificate"],
                _managed_label(row),
                row["ca_profile"] or "-",
                (sans[0] + (f" (+{len(sans) - 1})" if len(sans) > 1 else "")) if sans else "-",
                _short(row["expires_on"]),
                _short(row["next_renewal"]),
                row["journal_step"] or "-",
                " ".join(v for v in (row["last_outcome"], row["last_reason"]) if v) or "-",
                row["at_risk"] or "",
            )
        console = io_.console()
        console.print(table)
        for row in rows:
            if _managed_label(row) != "yes":
                console.print(f"{row['vault']}/{row['certificate']}: {_managed_label(row)}: {row['why']}")
        for row in rows:
            if row["error"]:
                print(f"renewal: could not read {row['vault']}/{row['certificate']}: {row['error']}", file=io_.err)
    _list_errors(io_, report["list_errors"])
    return EXIT_PROBLEM if report["list_errors"] or any(r["error"] for r in rows) else EXIT_OK


def _managed_label(row: Mapping[str, Any]) -> str:
    """``yes``, ``no``, ``paused``, or ``tag problem`` (managed by its tag, which names no usable profile)."""
    if not row["managed"]:
        return "no"
    if row["ca_profile"] is None:
        return "tag problem"
    return "paused" if "paused" in row["why"] else "yes"


def _with_progress(io_: _Io, run: Callable[[Callable[[int, int], None]], dict[str, Any]]) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("reading certificates"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=io_.console(io_.err),
        transient=True,
    ) as progress:
        task = progress.add_task("inventory", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return run(advance)


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV with ``columns`` in order: lists joined by spaces, booleans ``true``/``false``, none empty."""

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | tuple):
            return " ".join(str(v) for v in value)
        return str(value)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(column)) for column in columns])
    return buffer.getvalue()


# ---- plan, status, renew ----------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    from renewal.flow.report import plan

    if not 0 <= args.days <= 3650:
        raise _UsageError("--days must be between 0 and 3650")
    report = plan(runtime, days=args.days)
    if args.json:
        _print_json(io_, report)
    else:
        table = _table(
            f"the next {args.days:g} days: {len(report['renewals'])} certificates, {report['at_risk']} at risk",
            ("when", "vault", "certificate", "action", "CA profile", "expires", "window opens", "at risk"),
        )
        for row in report["renewals"]:
            table.add_row(
                _short(row["when"]),
                row["vault"],
                row["certificate"],
                row["action"],
                row["ca_profile"] or "-",
                _short(row["expires_on"]),
                _short(row["window_start"]),
                row["at_risk"] or "",
            )
        io_.console().print(table)
    _list_errors(io_, report["list_errors"])
    return EXIT_PROBLEM if report["at_risk"] or report["list_errors"] else EXIT_OK


def _status(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    from renewal.flow.report import status_report

    report = status_report(runtime)
    summary = report["summary"]
    if args.json:
        _print_json(io_, report, sort_keys=True)
    else:
        console = io_.console()
        counts = _table(f"fleet at {_short(report['generated_at'])} UTC", ("", "count"))
        for key in ("certificates", "managed", "not_managed", "renewing", "failing", "at_risk", "paused"):
            counts.add_row(key.replace("_", " "), str(summary[key]))
        counts.add_row("pending deliveries", str(summary["pending_deliveries"]))
        counts.add_row("dead letters", str(summary["dead_letters"]))
        console.print(counts)
        if report["at_risk"]:
            risky = _table("at risk", ("vault", "certificate", "expires", "reason", "why"))
            for row in report["at_risk"]:
                risky.add_row(
                    row["vault"], row["certificate"], _short(row["expires_on"]), row["reason"], row["message"]
                )
            console.print(risky)
        if report["failures"]:
            failing = _table(
                "failures", ("vault", "certificate", "step", "attempts", "next attempt", "reason", "error")
            )
            for row in report["failures"]:
                failing.add_row(
                    row["vault"],
                    row["certificate"],
                    str(row["step"]),
                    str(row["attempts"]),
                    _short(row["next_attempt_at"]),
                    row["last_reason"] or "-",
                    row["last_error"] or "-",
                )
            console.print(failing)
        if report["dead_letters"]:
            console.print(_deliveries_table("dead letters", report["dead_letters"]))
        if report["rollouts"]:
            rolled = _table("rollouts", ("vault", "certificate", "target", "version", "state", "deadline", "probe"))
            for row in report["rollouts"]:
                rolled.add_row(
                    row["vault"],
                    row["certificate"],
                    row["target"],
                    row["version"],
                    row["state"],
                    _short(row["deadline"]),
                    row["probe"] or "-",
                )
            console.print(rolled)
        upcoming = _table("next renewals", ("renews from", "vault", "certificate", "expires"))
        for row in report["next_renewals"][:10]:
            upcoming.add_row(_short(row["renews_from"]), row["vault"], row["certificate"], _short(row["expires_on"]))
        console.print(upcoming)
    _list_errors(io_, report["list_errors"])
    trouble = (
        summary["failing"]
        or summary["at_risk"]
        or summary["dead_letters"]
        or summary["rollouts_stalled"]
        or report["list_errors"]
    )
    return EXIT_PROBLEM if trouble else EXIT_OK


def _renew(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    from renewal.flow.renew import renew
    from renewal.outcome import to_dict
    from renewal.pure.intake import OBJECT_NAME, on_demand_request

    vault = _vault(runtime, args.vault)
    if not OBJECT_NAME.fullmatch(args.name):
        raise _UsageError(f"{args.name[:60]!r} is not a Key Vault certificate name")
    outcome = renew(on_demand_request(vault, args.name, trigger="manual", force=args.force), runtime)
    if args.json:
        _print_json(io_, to_dict(outcome))
    else:
        print(f"{vault.name}/{args.name}: {outcome.status} ({outcome.reason})", file=io_.out)
        print(f"  {runtime.scrub(outcome.message)}", file=io_.out)
        if outcome.new_version:
            print(f"  new version: {outcome.new_version}", file=io_.out)
        for delivery in outcome.deliveries:
            result = "delivered" if delivery.delivered else f"not delivered yet ({delivery.error})"
            print(f"  delivery {delivery.webhook_id} to {delivery.endpoint}: {result}", file=io_.out)
    return EXIT_PROBLEM if outcome.status == "failed" else EXIT_OK


# ---- pause, resume ------------------------------------------------------------------------------------------------


def _pause(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    return _set_paused(args, runtime, io_, paused=True)


def _resume(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    return _set_paused(args, runtime, io_, paused=False)


def _set_paused(args: argparse.Namespace, runtime: Runtime, io_: _Io, *, paused: bool) -> int:
    """Set or remove the ``renewal-paused`` tag through the SDK (one read, and one update when it changes)."""
    from renewal.pure.tags import PAUSED_TAG, is_paused

    vault = _vault(runtime, args.vault)
    where = f"{vault.name}/{args.name}"
    try:
        client = runtime.keyvault.client_for(vault.url)
        current = client.get_certificate(args.name)
        tags = dict((current.properties.tags if current.properties else None) or {})
        if is_paused(tags) == paused:
            print(f"{where}: already {'paused' if paused else 'not paused'}; nothing changed", file=io_.out)
            return EXIT_OK
        # Tags are matched whole and case-insensitively (renewal.pure.tags): every spelling of ours goes.
        ours = [key for key in tags if key.strip().lower() == PAUSED_TAG]
        for key in ours:
            del tags[key]
        if paused:
            tags[ours[0] if ours else PAUSED_TAG] = _PAUSED_VALUE
        client.update_certificate_properties(args.name, tags=tags)
    except RenewalError as exc:
        print(f"renewal: {where}: {exc.reason}: {runtime.scrub(exc.message)}", file=io_.err)
        return EXIT_PROBLEM
    except Exception as exc:
        problem = _azure_problem(exc, runtime)
        if problem is None:
            raise
        print(f"renewal: {where}: {problem}", file=io_.err)
        return EXIT_PROBLEM
    if paused:
        print(f"{where}: paused ({PAUSED_TAG}={_PAUSED_VALUE}); the app will not renew it until resumed", file=io_.out)
    else:
        print(f"{where}: resumed ({PAUSED_TAG} removed)", file=io_.out)
    return EXIT_OK


def _azure_problem(exc: BaseException, runtime: Runtime | None) -> str | None:
    """An Azure SDK error in plain words, or ``None`` when ``exc`` is not one."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    def shown(text: str) -> str:
        text = runtime.scrub(text) if runtime is not None else _scrub_free(text)
        return text.splitlines()[0][:200] if text else ""

    if isinstance(exc, ServiceRequestError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return "its TLS certificate is not trusted (RENEWAL_KEYVAULT_CA_BUNDLE is for the local emulator only)"
        return "cannot be reached (connection failed: is the URL right and the network open?)"
    if isinstance(exc, ServiceResponseError):
        return "did not answer in time"
    # azure-identity raises ClientAuthenticationError (an HttpResponseError without a response) when no
    # credential of the chain could give a token; the vault itself answers 401/403 with a status.
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        return f"no token could be had for it: {shown(str(exc))}"
    if isinstance(exc, ResourceNotFoundError):
        return "not found (no such certificate, or no vault at this URL)"
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        if status in (401, 403):
            return (
                f"access denied (HTTP {status}): the app's identity needs the Key Vault Certificates Officer role "
                "on this vault"
            )
        return f"answered HTTP {status}: {shown(getattr(exc, 'message', '') or '')}"
    return None


# ---- deliveries -----------------------------------------------------------------------------------------------------


def _deliveries_table(title: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    table = _table(
        title,
        (
            "webhook id",
            "endpoint",
            "vault",
            "certificate",
            "version",
            "attempts",
            "queued",
            "next attempt",
            "last error",
        ),
    )
    for row in rows:
        table.add_row(
            row["webhook_id"],
            row["endpoint"],
            row["vault"],
            row["certificate"],
            (row["version"] or "-")[:12],
            str(row["attempts"]),
            _short(row["created_at"]),
            _short(row["next_attempt_at"]),
            row["last_error"] or "-",
        )
    return table


def _deliveries(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    from renewal.flow.report import deliveries_report

    report = deliveries_report(runtime)
    if args.json:
        _print_json(io_, report)
    else:
        console = io_.console()
        for title, rows in (("pending", report["pending"]), ("dead-lettered", report["dead_letters"])):
            if rows:
                console.print(_deliveries_table(f"{len(rows)} {title}", rows))
            else:
                console.print(f"no {title} deliveries")
    return EXIT_PROBLEM if report["dead_letters"] else EXIT_OK


def _redeliver(args: argparse.Namespace, runtime: Runtime, io_: _Io) -> int:
    vault_names = [v.name for v in runtime.settings.vaults.values()]
    item = next((i for i in runtime.journal.outbox(vault_names) if i.webhook_id == args.webhook_id), None)
    if item is None:
        print(f"renewal: no delivery {args.webhook_id[:80]!r} in the outbox", file=io_.err)
        return EXIT_PROBLEM
    if item.status == "delivered":
        print(f"renewal: delivery {item.webhook_id} was delivered already; nothing sent", file=io_.err)
        return EXIT_PROBLEM
    revived = runtime.journal.save_outbox(replace(item, status="pending", next_attempt_at=runtime.clock().timestamp()))
    if revived is None:
        print(f"renewal: delivery {item.webhook_id} changed meanwhile; look again", file=io_.err)
        return EXIT_PROBLEM
    sent = runtime.deliverer().send([revived])
    delivered = bool(sent) and sent[0].delivered
    if args.json:
        _print_json(
            io_,
            {
                "webhook_id": item.webhook_id,
                "endpoint": item.endpoint,
                "delivered": delivered,
                "error": runtime.scrub(sent[0].error) if sent and sent[0].error else None,
            },
        )
    elif delivered:
        print(f"delivery {item.webhook_id} to {item.endpoint}: delivered", file=io_.out)
    else:
        error = runtime.scrub(sent[0].error or "") if sent else "not sent"
        print(f"delivery {item.webhook_id} to {item.endpoint}: failed again ({error})", file=io_.out)
    return EXIT_OK if delivered else EXIT_PROBLEM


# ---- check --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Finding:
    what: str
    name: str
    ok: bool
    detail: str


def _check(args: argparse.Namespace, environ: Mapping[str, str], io_: _Io, clock: Clock | None) -> int:
    findings: list[_Finding] = []
    try:
        runtime = _runtime(environ, clock)
    except ConfigurationError as exc:
        problem = exc.message.removeprefix(f"setting {exc.setting}: ")
        findings.append(_Finding("settings", exc.setting, False, problem))
        _report_findings(args, io_, findings)
        return EXIT_USAGE
    settings = runtime.settings
    profiles = ", ".join(sorted(settings.ca_profiles)) or "none"
    findings.append(
        _Finding(
            "settings",
            "app settings",
            True,
            f"{len(settings.vaults)} vault(s), CA profiles: {profiles}, default profile: "
            f"{settings.default_ca_profile or 'none (only tagged certificates are managed)'}",
        )
    )
    findings.extend(_check_vault(runtime, vault) for vault in settings.vaults.values())
    findings.extend(_check_profile(runtime, name) for name in sorted(settings.ca_profiles))
    findings.append(_check_journal(runtime))
    _report_findings(args, io_, findings)
    return EXIT_OK if all(f.ok for f in findings) else EXIT_PROBLEM


def _check_vault(runtime: Runtime, vault: VaultConfig) -> _Finding:
    """One listing page of one certificate, without the SDK's retries: a cheap, quick answer."""
    try:
        client = runtime.keyvault.client_for(vault.url)
        pages = client.list_properties_of_certificates(max_page_size=1, retry_total=0).by_page()
        first = next(pages, None)
        listed = len(list(first)) if first is not None else 0
    except RenewalError as exc:
        return _Finding("vault", vault.name, False, f"{vault.url}: {runtime.scrub(exc.message)}")
    except Exception as exc:
        problem = _azure_problem(exc, runtime)
        if problem is None:
            raise
        return _Finding("vault", vault.name, False, f"{vault.url} {problem}")
    return _Finding("vault", vault.name, True, f"{vault.url} answers ({'has' if listed else 'no'} certificates)")


def _check_profile(runtime: Runtime, name: str) -> _Finding:
    profile = runtime.settings.ca_profiles[name]
    label = f"{name} ({profile.adapter})"
    try:
        adapter = runtime.adapter(profile)
    except RenewalError as exc:
        return _Finding("ca_profile", label, False, f"its options are not usable: {runtime.scrub(exc.message)}")
    harmless = getattr(adapter, "check", None)
    if not callable(harmless):
        return _Finding("ca_profile", label, True, "options valid; no harmless call for this adapter")
    try:
        description = str(harmless())
    except RenewalError as exc:
        return _Finding(
            "ca_profile",
            label,
            False,
            f"the CA refused or cannot be reached: {exc.reason}: {runtime.scrub(exc.message)}",
        )
    return _Finding("ca_profile", label, True, runtime.scrub(description))


def _check_journal(runtime: Runtime) -> _Finding:
    table = runtime.settings.journal_table
    first = next(iter(runtime.settings.vaults.values()))
    try:
        runtime.journal.get(first.name, "renewal-check")
    except RenewalError as exc:
        return _Finding("journal", table, False, f"the journal's storage cannot be used: {runtime.scrub(exc.message)}")
    return _Finding("journal", table, True, "the journal's table answers")


def _report_findings(args: argparse.Namespace, io_: _Io, findings: Sequence[_Finding]) -> None:
    if args.json:
        _print_json(
            io_,
            {
                "ok": all(f.ok for f in findings),
                "checks": [{"what": f.what, "name": f.name, "ok": f.ok, "detail": f.detail} for f in findings],
            },
        )
        return
    for finding in findings:
        mark = "ok     " if finding.ok else "PROBLEM"
        print(f"{mark} {finding.what} {finding.name}: {finding.detail}", file=io_.out)
    problems = sum(1 for f in findings if not f.ok)
    print(f"{problems} problem(s)" if problems else "all checks passed", file=io_.out)
