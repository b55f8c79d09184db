"""Command line of the local stack.

``python -m devstack keyvault --port 8443 --state-dir .state/keyvault``: the Key Vault emulator.
``python -m devstack host``: ``function_app.py`` behind the Functions host stand-in, with ``local.settings.json``'s
values, for running the app without Core Tools (docs/local-run.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack", description="The local stack of the renewal app.")
    commands = parser.add_subparsers(dest="command", required=True)
    keyvault = commands.add_parser("keyvault", help="run the Key Vault emulator (HTTPS on 127.0.0.1)")
    keyvault.add_argument("--port", type=int, default=8443, help="port of the first vault; 0 picks a free one")
    keyvault.add_argument("--state-dir", required=True, help="folder for the TLS files and persisted vaults")
    keyvault.add_argument(
        "--vault",
        dest="vaults",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="vault name (repeatable); the first gets --port, the others free ports (default: kv1)",
    )
    keyvault.add_argument(
        "--event-subscriber",
        dest="subscribers",
        action="append",
        default=[],
        metavar="URL",
        help="URL that receives Event Grid events (repeatable)",
    )
    keyvault.add_argument("--event-schema", choices=["EventGrid", "CloudEvents"], default="EventGrid")
    keyvault.add_argument(
        "--event-retry-compression",
        type=float,
        default=1.0,
        help="divide Event Grid's retry schedule by this factor",
    )
    keyvault.add_argument("--require-token", metavar="TOKEN", help="accept only this bearer token")
    keyvault.add_argument("--latest-while-pending", choices=["placeholder", "previous"], default="placeholder")
    keyvault.add_argument("--persist", action="store_true", help="keep vaults in STATE_DIR/vaults/ across restarts")
    keyvault.add_argument("--log-level", default="INFO")

    host = commands.add_parser(
        "host",
        help="serve function_app.py like `func start` (Event Grid webhook, HTTP triggers, timer) on 127.0.0.1",
    )
    host.add_argument("--app-dir", default=".", help="folder holding function_app.py and host.json (default: .)")
    host.add_argument(
        "--settings",
        default="local.settings.json",
        help="settings file, relative to --app-dir; its Values become environment variables unless already set",
    )
    host.add_argument("--port", type=int, default=7071, help="port to listen on (default 7071, as func start); 0: free")
    host.add_argument(
        "--timer-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the timer-triggered functions every SECONDS; 0 (default): only on demand, POST /admin/functions/NAME",
    )
    host.add_argument("--log-level", default="INFO")
    return parser


def _wait_for_signal() -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        pass


def _run_keyvault(args: argparse.Namespace) -> int:
    from devstack.keyvault import KeyVaultEmulator

    emulator = KeyVaultEmulator(
        state_dir=args.state_dir,
        vaults=args.vaults or ["kv1"],
        port=args.port,
        event_subscribers=args.subscribers,
        event_schema=args.event_schema,
        event_retry_compression=args.event_retry_compression,
        require_token=args.require_token,
        latest_while_pending=args.latest_while_pending,
        persist=args.persist,
    )
    with emulator:
        items = emulator.urls_items()
        for name, url in items:
            # One vault: exactly "ready https://127.0.0.1:PORT"; several: each line names its vault.
            print(f"ready {url}" if len(items) == 1 else f"ready {url} vault={name}", flush=True)
        print(f"trust {emulator.ca_pem_path}", file=sys.stderr, flush=True)
        _wait_for_signal()
    return 0


def _run_host(args: argparse.Namespace) -> int:
    from devstack.functions_host import FunctionsHost, load_local_settings, route_prefix

    app_dir = Path(args.app_dir).resolve()
    if not (app_dir / "function_app.py").is_file():
        print(f"no function_app.py in {app_dir}", file=sys.stderr)
        return 2
    settings_path = app_dir / args.settings
    if not settings_path.is_file():
        print(
            f"no {settings_path}: copy local.settings.json.example to local.settings.json (docs/local-run.md)",
            file=sys.stderr,
        )
        return 2
    try:
        values = load_local_settings(settings_path)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    # As Core Tools does: the app runs from its folder, and a variable already in the environment wins.
    os.chdir(app_dir)
    sys.path.insert(0, str(app_dir))
    for name, value in values.items():
        if name in os.environ:
            print(
                f"settings: {name} is already in the environment; {settings_path.name} does not override it",
                file=sys.stderr,
            )
        else:
            os.environ[name] = value
    host = FunctionsHost(
        port=args.port,
        timer_interval=args.timer_interval,
        queue_interval=args.timer_interval,
        route_prefix=route_prefix("host.json"),
    )
    try:
        host.__enter__()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        urls = host.function_urls()
        print(f"ready {host.url}", flush=True)
        print("Functions:", file=sys.stderr)
        for name, url in sorted(urls.items()):
            print(f"  {name}: {url}", file=sys.stderr)
        if args.timer_interval > 0:
            print(f"timers run every {args.timer_interval:g} s", file=sys.stderr, flush=True)
        sys.stderr.flush()
        _wait_for_signal()
    finally:
        host.__exit__(None, None, None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` until SIGTERM or SIGINT; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.command == "host":
        return _run_host(args)
    return _run_keyvault(args)


if __name__ == "__main__":
    sys.exit(main())
