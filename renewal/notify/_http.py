"""What the Teams and Slack kinds share: one JSON POST that never follows a redirect, and the few words of an
answer that may be repeated (a status, a short machine code; never the body, which may echo what was sent)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

import requests

from renewal._shared.http import parse_retry_after, send
from renewal.errors import RetryableError

__all__ = ["answer_code", "post_json", "retry_later"]

_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}", re.ASCII)


def post_json(session: requests.Session, url: str, body: object, *, what: str, timeout: float) -> requests.Response:
    """POST ``body`` as JSON to ``url`` once (``renewal._shared.http.send``: no redirect followed, TLS verified).

    Raises:
        PermanentError: a redirect, or a server certificate that does not verify (names the host only).
        RetryableError: the connection failed or timed out.
    """
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8"}
    return send(session, "POST", url, what=what, data=data, headers=headers, timeout=timeout)


def answer_code(text: str) -> str | None:
    """A short machine code from an answer (``channel_is_archived``), or ``None`` when it is anything else."""
    text = text.strip()
    return text if _CODE.fullmatch(text) else None


def retry_later(
    what: str, status: int, code: str | None, response: requests.Response, clock: Callable[[], datetime]
) -> RetryableError:
    """The ``RetryableError`` for a 408, 429 or 5xx answer, carrying its ``Retry-After`` if it has one."""
    detail = f"HTTP {status}" + (f" {code}" if code else "")
    throttled = status == 429
    return RetryableError(
        f"{what} answered {detail}; " + ("it is throttling, " if throttled else "") + "trying again later",
        reason="notify_throttled" if throttled else "notify_unavailable",
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now=clock()),
    )
