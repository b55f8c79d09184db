"""Slack, through an incoming webhook, with Block Kit.

Slack's incoming webhooks answer 200 with the body ``ok``, and otherwise a status with a short code in the body
(Slack changelog 2016-05-17, "Improving error conditions for Incoming Webhooks"): 400 ``invalid_payload`` or
``invalid_blocks``, 403 ``action_prohibited``, 404 ``channel_not_found`` or ``no_service`` (the webhook was
revoked), 410 ``channel_is_archived``, 429 with ``Retry-After``, 500 ``rollup_error``. Every 4xx but 429 is
permanent: the same message to the same URL gets the same answer until a person acts.
"""

from __future__ import annotations

from renewal.errors import PermanentError, RetryableError
from renewal.notify._http import WebhookChannel, answer_code, answer_detail, is_retryable_status, retry_later
from renewal.notify._protocol import Notice

__all__ = ["SlackChannel", "block_kit"]

_WHAT = "the Slack webhook"
# Block Kit's limits: header text 150 characters, section text 3000, a field 2000, ten fields per section.
_HEADER_MAX = 150
_SECTION_MAX = 3000
_FIELD_MAX = 2000
_FIELDS_MAX = 10
_HINTS = {
    "invalid_payload": "Slack could not read the message",
    "invalid_blocks": "Slack refused the message's blocks",
    "action_prohibited": "the workspace does not let this webhook post here",
    "channel_not_found": "the channel no longer exists",
    "no_service": "the webhook was revoked or disabled; put a current webhook URL in the notifier's url_setting",
    "channel_is_archived": "the channel is archived; point the notifier at a webhook for a live channel",
}


def block_kit(notice: Notice) -> dict[str, object]:
    """The message for ``notice``: a fallback ``text`` and blocks (header, a section with the message and the
    facts as fields, a context line saying where it came from)."""
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{label}*\n{_escape(value)}", _FIELD_MAX)}
        for label, value in notice.facts()[:_FIELDS_MAX]
    ]
    origin = f"Key Vault certificate renewal · notifier {notice.notifier}"
    if notice.queued_at:
        origin += f" · queued {notice.queued_at}"
    if notice.certificate_id:
        origin += f" · {notice.certificate_id}"
    return {
        "text": _cut(f"{notice.title} ({notice.reason})" + (f": {notice.message}" if notice.message else ""), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(notice.title, _HEADER_MAX), "emoji": False}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(_escape(notice.message or notice.title), _SECTION_MAX)},
                "fields": fields,
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(_escape(origin), _SECTION_MAX)}]},
        ],
    }


class SlackChannel(WebhookChannel):
    """Posts notices to one Slack incoming webhook.

    Args:
        url: the webhook URL (a secret: its path is the credential).
        session: the HTTP session.
        clock: now, tz-aware (for ``Retry-After`` dates).
        timeout: seconds to connect and to read the answer.
    """

    def render(self, notice: Notice) -> dict[str, object]:
        """The request body (``block_kit``)."""
        return block_kit(notice)

    def send(self, notice: Notice) -> int:
        """POST the message once; 200 on success.

        Raises:
            RetryableError: 429 (with its ``Retry-After``), 408, 5xx, a 200 that is not ``ok``, or no answer.
            PermanentError: any other 4xx; a redirect; an untrusted server certificate.
        """
        response = self._post(self.render(notice), what=_WHAT)
        with response:
            status = response.status_code
            code = answer_code(response.text[:200])
            if status == 200:
                if code == "ok":
                    return status
                # Something in front of Slack (a proxy, a captive portal) answered instead.
                raise RetryableError(f"{_WHAT} answered HTTP 200 without 'ok'", reason="notify_unavailable")
            if is_retryable_status(status):
                raise retry_later(_WHAT, status, code, response, self._clock)
        detail = answer_detail(status, code)
        hint = _HINTS.get(code or "", "Slack refused the message")
        raise PermanentError(f"{_WHAT} answered {detail}: {hint}", reason="notify_refused")


def _escape(text: str) -> str:
    # Slack's mrkdwn: "&", "<" and ">" are control characters and must be escaped (&amp; &lt; &gt;), so that text
    # from elsewhere cannot ping a channel (<!channel>) or forge a link.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
