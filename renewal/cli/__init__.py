"""The operator CLI: ``renewal inventory | plan | renew | status | pause | resume | deliveries | check``.

It reads the app's own settings (the environment, or ``local.settings.json``'s ``Values``), builds the runtime as
the Function App does, and shows what ``renewal.flow.report`` reports, as tables or as JSON/CSV. Exit codes:
``0`` all is well, ``1`` something is wrong (at risk, failed, unreachable; each command's help says what), ``2``
a usage or configuration error. docs/operating.md has every command with sample output.
"""

from __future__ import annotations

from renewal.cli._core import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, load_environ, main

__all__ = ["EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "load_environ", "main"]
