"""A webhook receiver on loopback that verifies Standard Webhooks signatures and records what it receives.

For tests and the demo::

    with WebhookSink(secret) as sink:
        ...  # POST to sink.url
        assert sink.deliveries[0].verified

It answers 204 to a verified delivery of a structured CloudEvent (``Content-Type: application/cloudevents+json``,
CloudEvents HTTP binding §3.2.1), 415 to a verified one of any other media type, and 401 to one whose signature
does not verify. It can be told to answer a given status to the next requests (``fail_next``) or to drop every
connection without answering (``down``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = ["STRUCTURED_CLOUDEVENT", "SinkDelivery", "WebhookSink"]

# The media type of a structured-mode CloudEvent in the JSON format (CloudEvents HTTP binding §3.2.1).
STRUCTURED_CLOUDEVENT = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class SinkDelivery:
    """One request the sink received.

    Attributes:
        path: the request path.
        headers: the request headers, names lower-cased.
        body: the raw body.
        verified: whether the Standard Webhooks signature verified with the sink's secret.
        status: the status the sink answered.
        received_at: when it arrived, UTC.
    """

    path: str
    headers: Mapping[str, str]
    body: bytes
    verified: bool
    status: int
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def json(self) -> object:
        """The body parsed as JSON."""
        return json.loads(self.body)


class WebhookSink:
    """A loopback HTTP server (``127.0.0.1``, a free port) that records webhook deliveries; a context manager."""

    def __init__(self, secret: str, *, journal: Path | None = None) -> None:
        """``secret`` is the Standard Webhooks secret (``whsec_...``); ``journal`` is an optional JSONL file."""
        self._verifier = Webhook(secret)
        self._journal = journal
        self._lock = threading.Lock()
        self._deliveries: list[SinkDelivery] = []
        self._scripted: list[tuple[int, dict[str, str]]] = []
        self.down = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The sink's base URL, ``http://127.0.0.1:<port>/``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def deliveries(self) -> tuple[SinkDelivery, ...]:
        """Every request received so far, oldest first (including those answered with a scripted failure)."""
        with self._lock:
            return tuple(self._deliveries)

    def fail_next(self, count: int, *, status: int = 503, headers: Mapping[str, str] | None = None) -> None:
        """Answer ``status`` (with ``headers``, e.g. a ``Location``) to the next ``count`` requests."""
        with self._lock:
            self._scripted.extend([(status, dict(headers or {}))] * count)

    def start(self) -> WebhookSink:
        """Start serving in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-sink", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        try:
            self._verifier.verify(body, headers, json_parse=False)
            verified = True
        except (WebhookVerificationError, ValueError):
            verified = False
        # Media types ignore case and may carry parameters (RFC 9110 §8.3.1), such as "; charset=utf-8".
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        answer = 401 if not verified else 204 if media_type == STRUCTURED_CLOUDEVENT else 415
        with self._lock:
            status, extra = self._scripted.pop(0) if self._scripted else (answer, {})
            delivery = SinkDelivery(path=path, headers=headers, body=body, verified=verified, status=status)
            self._deliveries.append(delivery)
            if self._journal is not None:
                record = {
                    "received_at": delivery.received_at.isoformat(),
                    "path": path,
                    "status": status,
                    "verified": verified,
                    "headers": headers,
                    "body": body.decode("utf-8", errors="replace"),
                }
                with self._journal.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
        return status, extra

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if sink.down:
                    # "Down": drop the connection unanswered, as a crashed receiver would.
                    self.close_connection = True
                    self.connection.close()
                    return
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, extra = sink._receive(self.path, headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Silenced: the sink's record is ``deliveries``."""

        return Handler
