"""Microsoft Teams, through a Workflows incoming webhook (the "Post to a channel when a webhook request is
received" template), with an Adaptive Card.

Workflows replaced the Office 365 connectors' incoming webhooks and accept only Adaptive Cards, wrapped in a
``message`` whose ``attachments`` hold the card. The workflow's request trigger answers 202 Accepted when it took
the request (200 when the flow answers itself); 400 when the body does not fit the trigger, 401/403 when the
URL's signature is no longer valid, 404 when the workflow is gone or off; 429 (with ``Retry-After``) and 5xx
for throttling and outages.
"""

from __future__ import annotations

import json

import requests

from renewal.errors import PermanentError
from renewal.notify._http import WebhookChannel, answer_code, answer_detail, is_retryable_status, retry_later
from renewal.notify._protocol import Notice

__all__ = ["TeamsChannel", "adaptive_card"]

_COLOURS = {"good": "Good", "attention": "Attention", "warning": "Warning", "default": "Default"}
_WHAT = "the Teams workflow"


def adaptive_card(notice: Notice) -> dict[str, object]:
    """The Adaptive Card (version 1.4) for ``notice``: a title, the facts, the message and where it came from."""
    body: list[dict[str, object]] = [
        {
            "type": "TextBlock",
            "text": notice.title,
            "weight": "Bolder",
            "size": "Medium",
            "style": "heading",
            "color": _COLOURS[notice.severity],
            "wrap": True,
        },
        {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in notice.facts()]},
    ]
    if notice.message:
        body.append({"type": "TextBlock", "text": notice.message, "wrap": True})
    body.append({"type": "TextBlock", "text": _origin(notice), "isSubtle": True, "size": "Small", "wrap": True})
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }


class TeamsChannel(WebhookChannel):
    """Posts notices to one Teams workflow.

    Args:
        url: the workflow's URL (a secret: its ``sig`` parameter is the credential).
        session: the HTTP session.
        clock: now, tz-aware (for ``Retry-After`` dates).
        timeout: seconds to connect and to read the answer.
    """

    def render(self, notice: Notice) -> dict[str, object]:
        """The request body: a ``message`` with the Adaptive Card as its one attachment."""
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": adaptive_card(notice),
                }
            ],
        }

    def send(self, notice: Notice) -> int:
        """POST the card once; the HTTP status on success (200 or 202).

        Raises:
            RetryableError: 408, 429 (with its ``Retry-After``), 5xx, or no answer.
            PermanentError: any other answer; a redirect; an untrusted server certificate.
        """
        response = self._post(self.render(notice), what=_WHAT)
        with response:
            status = response.status_code
            if 200 <= status < 300:
                return status
            code = _error_code(response)
            if is_retryable_status(status):
                raise retry_later(_WHAT, status, code, response, self._clock)
        detail = answer_detail(status, code)
        if status in (401, 403):
            problem = "refused the URL's signature: the workflow's URL was regenerated or it was deleted; put its "
            problem += "current URL in the notifier's url_setting"
        elif status == 404:
            problem = "does not exist or is turned off; check the workflow in Teams"
        elif status in (400, 413):
            problem = "refused the card; check that the workflow posts the Adaptive Card it is sent"
        else:
            problem = "refused the request"
        raise PermanentError(f"{_WHAT} answered {detail}: it {problem}", reason="notify_refused")


def _error_code(response: requests.Response) -> str | None:
    # A Logic Apps error body: {"error": {"code": "...", "message": "..."}}; only the code is repeated.
    try:
        body = json.loads(response.content[:4096] or b"null")
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return answer_code(code) if isinstance(code, str) else None


def _origin(notice: Notice) -> str:
    parts = [f"Key Vault certificate renewal · notifier {notice.notifier}"]
    if notice.queued_at:
        parts.append(f"queued {notice.queued_at}")
    if notice.certificate_id:
        parts.append(notice.certificate_id)
    return " · ".join(parts)
