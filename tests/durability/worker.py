"""A Functions worker in its own process, for the crash and concurrency tests.

It delivers one Event Grid event to ``function_app``'s Event Grid function, as the host does, with the
environment the test prepared. With ``CRASH_AT=<step>[:<n>]`` it kills itself with SIGKILL at the n-th time the
renewal reaches that step (the runtime's checkpoint hook), leaving whatever a real crash would leave.
With ``START_AT=<unix seconds>`` it waits until then after importing, so that many workers start together.

Usage: python -m tests.durability.worker EVENT_JSON_FILE
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _crash_at(spec: str) -> Callable[[str], None]:
    step, _, nth = spec.partition(":")
    wanted = int(nth or 1)
    seen = 0

    def checkpoint(reached: str) -> None:
        nonlocal seen
        if reached == step:
            seen += 1
            if seen == wanted:
                os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


def main() -> int:
    from devstack.functions_host import event_grid_event, user_function
    from renewal.app import current_runtime
    from tests.fakes.counting_ca import register

    register()
    envelope = json.loads(Path(sys.argv[1]).read_text())
    runtime = current_runtime()
    crash = os.environ.get("CRASH_AT")
    if crash:
        runtime.checkpoint = _crash_at(crash)
    start_at = float(os.environ.get("START_AT") or 0)
    if start_at:
        time.sleep(max(0.0, start_at - time.time()))
    function = user_function("keyvault_certificate_events")
    try:
        function(event_grid_event(envelope))
    except Exception as exc:  # the host would answer 500; the test reads the exit code
        print(f"function raised {type(exc).__name__}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
