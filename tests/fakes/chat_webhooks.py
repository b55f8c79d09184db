"""Loopback fakes of the two chat webhooks the notifiers post to: a Teams Workflows request trigger and a Slack
incoming webhook. Each is only its answer function on a ``LoopbackServer``, checking what the real service
checks and answering as it does, failures included:

- ``FakeTeamsWorkflow``: ``POST /workflows/{id}/triggers/manual/paths/invoke?api-version=1&sp=...&sv=1.0&sig=...``;
  a wrong ``sig`` gets 401 with a Logic Apps error body, another path 404, a body that is not a ``message`` with
  one Adaptive Card attachment 400; success is 202 Accepted with no body.
- ``FakeSlackWebhook``: ``POST /services/T.../B.../{secret}``; an unknown path gets 404 ``no_service``, a body
  that is not JSON 400 ``invalid_payload``, blocks that break Block Kit's limits 400 ``invalid_blocks``; success
  is 200 ``ok``.

``script(*answers)`` queues answers given before any check (``slack_error(410, "channel_is_archived")``), for
the failures a test wants; every request and the JSON of every accepted message are recorded.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from types import TracebackType
from typing import Any

from tests.fakes.loopback import LoopbackServer, Request, Response, json_response

__all__ = ["FakeSlackWebhook", "FakeTeamsWorkflow", "slack_error", "teams_error"]

_CARD_TYPE = "application/vnd.microsoft.card.adaptive"
_SLACK_BLOCKS = frozenset({"header", "section", "context", "divider"})


def slack_error(status: int, code: str, *, retry_after: str | None = None) -> Response:
    """An answer as Slack gives it: the status and a short code as plain text."""
    headers = {"Content-Type": "text/plain"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Response(status, code.encode(), headers)


def teams_error(status: int, code: str, message: str = "", *, retry_after: str | None = None) -> Response:
    """An answer as a Logic Apps request trigger gives it: ``{"error": {"code", "message"}}``."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return json_response(status, {"error": {"code": code, "message": message or code}}, headers)


class _Fake:
    def __init__(self) -> None:
        self.server = LoopbackServer(self.handle)
        self._script: deque[Response] = deque()

    def script(self, *answers: Response) -> None:
        """Answer the next requests with ``answers``, in order, before any check."""
        self._script.extend(answers)

    @property
    def requests(self) -> list[Request]:
        """Every request received."""
        return self.server.requests

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def _scripted(self) -> Response | None:
        return self._script.popleft() if self._script else None

    def __enter__(self) -> Any:
        self.server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.stop()


class FakeTeamsWorkflow(_Fake):
    """A Teams Workflows webhook ("Post to a channel when a webhook request is received").

    Attributes:
        signature: the ``sig`` the URL carries (the credential).
        cards: the Adaptive Cards of accepted messages, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.workflow_id = secrets.token_hex(16)
        self.signature = secrets.token_urlsafe(32)
        self.cards: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        """The workflow's URL, as Teams shows it once (with its signature)."""
        return (
            f"{self.server.url}/workflows/{self.workflow_id}/triggers/manual/paths/invoke"
            f"?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.signature}"
        )

    def handle(self, request: Request) -> Response:
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        if request.path != f"/workflows/{self.workflow_id}/triggers/manual/paths/invoke":
            return teams_error(404, "WorkflowNotFound", "The workflow was not found.")
        if request.query.get("sig") != self.signature:
            return teams_error(401, "DirectApiInvalidAuthorizationSignature", "The provided signature is invalid.")
        if request.method != "POST":
            return teams_error(405, "MethodNotAllowed")
        try:
            body = json.loads(request.body)
        except ValueError:
            return teams_error(400, "InvalidRequestContent", "The request content is not valid JSON.")
        card = _adaptive_card(body)
        if card is None:
            return teams_error(400, "InvalidRequestContent", "Expected a message with one Adaptive Card.")
        self.cards.append(card)
        return Response(202)


class FakeSlackWebhook(_Fake):
    """A Slack incoming webhook.

    Attributes:
        secret: the last path segment of the URL (the credential).
        messages: the JSON of accepted messages, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secret = secrets.token_urlsafe(24)
        self.messages: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        """The webhook URL, as Slack shows it."""
        return f"{self.server.url}/services/T0001/B0001/{self.secret}"

    def handle(self, request: Request) -> Response:
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        if request.path != f"/services/T0001/B0001/{self.secret}" or request.method != "POST":
            return slack_error(404, "no_service")
        try:
            body = json.loads(request.body)
        except ValueError:
            return slack_error(400, "invalid_payload")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return slack_error(400, "invalid_payload")
        if "blocks" in body and not _valid_blocks(body["blocks"]):
            return slack_error(400, "invalid_blocks")
        self.messages.append(body)
        return Response(200, b"ok", {"Content-Type": "text/plain"})


def _adaptive_card(body: object) -> dict[str, Any] | None:
    if not isinstance(body, dict) or body.get("type") != "message":
        return None
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return None
    attachment = attachments[0]
    if not isinstance(attachment, dict) or attachment.get("contentType") != _CARD_TYPE:
        return None
    card = attachment.get("content")
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard" or not isinstance(card.get("body"), list):
        return None
    version = str(card.get("version", ""))
    if not version.replace(".", "").isdigit() or tuple(int(p) for p in version.split(".")) < (1, 4):
        return None
    return card


def _valid_blocks(blocks: object) -> bool:
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return False
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in _SLACK_BLOCKS:
            return False
        if block["type"] == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text" or not 1 <= len(text["text"]) <= 150:
                return False
        if block["type"] == "section":
            fields = block.get("fields", [])
            text = block.get("text")
            if text is not None and not 1 <= len(text.get("text", "")) <= 3000:
                return False
            if len(fields) > 10 or any(not 1 <= len(f.get("text", "")) <= 2000 for f in fields):
                return False
            if text is None and not fields:
                return False
        if block["type"] == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                return False
    return True
