"""The status page (the status page HTTP trigger): the same data as the CLI, for a person in a browser."""

from __future__ import annotations

import html

from renewal.errors import RenewalError, RetryableError
from renewal.flow.entry import current_runtime
from renewal.flow.report import status_report

__all__ = ["status_page"]


def status_page() -> tuple[int, str]:
    """HTTP status and HTML of the status page."""
    try:
        report = status_report(current_runtime())
    except RenewalError as exc:
        code = 503 if isinstance(exc, RetryableError) else 500
        return code, f"<!doctype html><title>renewal status</title><p>{html.escape(exc.reason)}</p>"
    return 200, f"<!doctype html><title>renewal status</title><pre>{html.escape(str(report))}</pre>"
