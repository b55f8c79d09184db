"""What the Teams and Slack kinds share: the channel's state and its one JSON POST that never follows a redirect,
which answers are worth retrying, and the few words of an answer that may be repeated (a status, a short machine
code; never the body, which may echo what was sent)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

import requests

from renewal._shared.http import parse_retry_after, send
from renewal.errors import RetryableError

__all__ = ["WebhookChannel", "answer_code", "answer_detail", "is_retryable_status", "post_json", "retry_later"]

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


class WebhookChannel:
    """What posting to one chat webhook holds; each kind adds ``render`` and ``send``.

    Args:
        url: the webhook's URL (a secret: it carries the credential).
        session: the HTTP session.
        clock: now, tz-aware (for ``Retry-After`` dates).
        timeout: seconds to connect and to read the answer.
    """

    def __init__(
        self, url: str, *, session: requests.Session, clock: Callable[[], datetime], timeout: float = 15.0
    ) -> None:
        self._url = url
        self._session = session
        self._clock = clock
        self._timeout = timeout

    def _post(self, body: object, *, what: str) -> requests.Response:
        """``post_json`` of ``body`` to the webhook (raises as ``post_json``)."""
        return post_json(self._session, self._url, body, what=what, timeout=self._timeout)


def is_retryable_status(status: int) -> bool:
    """Whether an answer with ``status`` may go through later: 408, 429 and 5xx."""
    return status in (408, 429) or status >= 500


def answer_detail(status: int, code: str | None) -> str:
    """How an error names an answer: ``HTTP 410 channel_is_archived``."""
    return f"HTTP {status}" + (f" {code}" if code else "")


def answer_code(text: str) -> str | None:
    """A short machine code from an answer (``channel_is_archived``), or ``None`` when it is anything else."""
    text = text.strip()
    return text if _CODE.fullmatch(text) else None


def retry_later(
    what: str, status: int, code: str | None, response: requests.Response, clock: Callable[[], datetime]
) -> RetryableError:
    """The ``RetryableError`` for a 408, 429 or 5xx answer, carrying its ``Retry-After`` if it has one."""
    detail = answer_detail(status, code)
    throttled = status == 429
    return RetryableError(
        f"{what} answered {detail}; " + ("it is throttling, " if throttled else "") + "trying again later",
        reason="notify_throttled" if throttled else "notify_unavailable",
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now=clock()),
    )
