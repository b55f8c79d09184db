"""A Functions worker in its own process that runs the queue function on one message, for the crash tests.

As ``tests.durability.worker``: the runtime is built from the environment, on the test's clock
(``TEST_CLOCK_FILE``), and ``CRASH_AT=<checkpoint>`` kills the process with SIGKILL there.

Usage: python -m tests.fleet.queue_worker MESSAGE_BODY_FILE
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    from renewal.flow.entry import handle_queue_message
    from renewal.flow.runtime import build_runtime
    from renewal.settings import Settings
    from tests.durability.worker import crash_at
    from tests.fakes.clock import FileClock

    crash = os.environ.get("CRASH_AT")
    runtime = build_runtime(
        Settings.from_environ(dict(os.environ)),
        clock=FileClock(Path(os.environ["TEST_CLOCK_FILE"])),
        checkpoint=crash_at(crash) if crash else None,
    )
    try:
        handle_queue_message(Path(sys.argv[1]).read_text(), runtime=runtime)
    except Exception as exc:  # the host would retry the message; the test reads the exit code
        print(f"function raised {type(exc).__name__} {getattr(exc, 'reason', '')}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
