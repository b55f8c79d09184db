"""A Functions worker in its own process, for the crash and concurrency tests.

It builds the runtime as the app does, from the environment the test prepared, with two parts of the test's own:

- the clock: ``TEST_CLOCK_FILE`` names a ``tests.fakes.clock.FileClock``, the wall clock plus the offset the test
  keeps in that file, so a claim this worker takes lapses when the test advances the clock, not after a sleep;
- the checkpoint: with ``CRASH_AT=<checkpoint>`` (``begin``, ``submit``, ``poll``, ``merge``, ``deliver:sent``,
  ``deliver``) it kills itself with SIGKILL the first time the renewal passes that checkpoint, leaving whatever a
  real crash would leave.

Then it hands one Event Grid event to the entry point the Event Grid trigger calls (converted through the
``func.EventGridEvent`` the host builds), or runs the timer sweep. With ``WAIT_FOR_GO=1`` it writes one byte to
stdout once it is ready and waits for its stdin to close, so that many workers start together.

Usage: python -m tests.durability.worker EVENT_JSON_FILE | --sweep
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path


def crash_at(checkpoint: str) -> Callable[[str], None]:
    """A checkpoint hook that kills this process with SIGKILL when the renewal passes ``checkpoint``."""

    def reached(step: str) -> None:
        if step == checkpoint:
            os.kill(os.getpid(), signal.SIGKILL)

    return reached


def main() -> int:
    from devstack.functions_host import event_grid_event
    from renewal.flow.entry import event_grid_envelope, handle_event
    from renewal.flow.runtime import build_runtime
    from renewal.flow.sweep import sweep
    from renewal.settings import Settings
    from tests.fakes.clock import FileClock

    target = sys.argv[1]
    crash = os.environ.get("CRASH_AT")
    runtime = build_runtime(
        Settings.from_environ(dict(os.environ)),
        clock=FileClock(Path(os.environ["TEST_CLOCK_FILE"])),
        checkpoint=crash_at(crash) if crash else None,
    )
    if os.environ.get("WAIT_FOR_GO") == "1":
        sys.stdout.buffer.write(b"r")
        sys.stdout.buffer.flush()
        sys.stdin.buffer.read()
    try:
        if target == "--sweep":
            sweep(runtime)
        else:
            handle_event(event_grid_envelope(event_grid_event(json.loads(Path(target).read_text()))), runtime)
    except Exception as exc:  # the host would answer 500; the test reads the exit code
        print(f"function raised {type(exc).__name__} {getattr(exc, 'reason', '')}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
