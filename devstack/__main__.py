"""Command line of the local stack: ``python -m devstack keyvault --port 8443 --state-dir .state/keyvault``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from devstack.keyvault import KeyVaultEmulator

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` until SIGTERM or SIGINT; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
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
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emulator:
        items = emulator.urls_items()
        for name, url in items:
            # One vault: exactly "ready https://127.0.0.1:PORT"; several: each line names its vault.
            print(f"ready {url}" if len(items) == 1 else f"ready {url} vault={name}", flush=True)
        print(f"trust {emulator.ca_pem_path}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
