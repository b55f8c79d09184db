"""``python -m renewal``: the operator CLI (``renewal.cli``)."""

from __future__ import annotations

from renewal.cli import main

raise SystemExit(main())
