"""A stand-in for the Functions host's Event Grid webhook endpoint, on loopback.

The real host receives Event Grid deliveries at ``/runtime/webhooks/EventGrid?functionName=NAME``, builds a
``func.EventGridEvent`` from each event and calls the decorated function. This server does the same with the
decorated functions of ``function_app.py``, so the demo and the integration tests enter the app exactly where
Azure does: through the function the host calls, given a real ``func.EventGridEvent``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func

__all__ = ["FunctionsHost", "Invocation", "event_grid_event", "user_function"]

logger = logging.getLogger(__name__)

_MAX_BODY = 1024 * 1024


def user_function(name: str) -> Callable[..., Any]:
    """Return the user function that ``function_app.py`` registered under ``name``, as the host would call it.

    Raises:
        KeyError: no such function.
    """
    import function_app

    for builder_name in dir(function_app):
        builder = getattr(function_app, builder_name)
        if isinstance(builder, func.decorators.function_app.FunctionBuilder):
            function = builder.build()
            if function.get_function_name() == name:
                return function.get_user_function()
    raise KeyError(name)


def event_grid_event(event: Mapping[str, Any]) -> func.EventGridEvent:
    """Build the ``func.EventGridEvent`` the host builds for one Event Grid schema event."""
    event_time = event.get("eventTime")
    parsed_time = None
    if isinstance(event_time, str):
        try:
            parsed_time = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
        except ValueError:
            parsed_time = None
    return func.EventGridEvent(
        id=str(event.get("id", "")),
        data=event.get("data"),  # type: ignore[arg-type]
        topic=str(event.get("topic", "")),
        subject=str(event.get("subject", "")),
        event_type=str(event.get("eventType", "")),
        event_time=parsed_time,
        data_version=str(event.get("dataVersion", "")),
    )


@dataclass(frozen=True, slots=True)
class Invocation:
    """One function invocation the host made.

    Attributes:
        function_name: the function invoked.
        event_id: the event's id.
        event_type: the event's type.
        succeeded: False when the function raised.
        error: the exception's type and message when it raised.
    """

    function_name: str
    event_id: str
    event_type: str
    succeeded: bool
    error: str | None = None


@dataclass
class FunctionsHost:
    """Serve ``POST /runtime/webhooks/EventGrid?functionName=NAME`` on 127.0.0.1, like ``func start`` does.

    Answers 202 when the function succeeded and 500 when it raised (one of the behaviours reported for the
    real extension; DESIGN §2 says the app must not depend on which).
    """

    port: int = 0
    invocations: list[Invocation] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __enter__(self) -> FunctionsHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                status = host._handle(self.path, self.headers, self._body())
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(min(length, _MAX_BODY))

            def log_message(self, format: str, *args: Any) -> None:
                """Each invocation is logged by ``_handle``; the access line adds nothing."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="functions-host", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        """The host's base URL."""
        assert self._server is not None, "the host is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def event_grid_url(self, function_name: str) -> str:
        """The URL to subscribe for Event Grid deliveries to one function."""
        return f"{self.url}/runtime/webhooks/EventGrid?functionName={function_name}"

    def _handle(self, path: str, headers: Any, body: bytes) -> int:
        parts = urlsplit(path)
        if parts.path != "/runtime/webhooks/EventGrid":
            return 404
        names = parse_qs(parts.query).get("functionName", [])
        if len(names) != 1:
            return 400
        try:
            function = user_function(names[0])
        except KeyError:
            return 404
        if headers.get("aeg-event-type") != "Notification":
            return 400
        try:
            events = json.loads(body)
        except ValueError:
            return 400
        if isinstance(events, dict):
            events = [events]
        status = 202
        for event in events:
            if not isinstance(event, dict):
                return 400
            logger.info("Event Grid delivered %s id=%s; invoking %s", event.get("eventType"), event.get("id"), names[0])
            try:
                function(event_grid_event(event))
            except Exception as exc:  # the host reports any failure of the function the same way
                logger.warning("function %s failed: %s", names[0], type(exc).__name__)
                self._record(Invocation(names[0], str(event.get("id")), str(event.get("eventType")), False, repr(exc)))
                status = 500
            else:
                self._record(Invocation(names[0], str(event.get("id")), str(event.get("eventType")), True))
        return status

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)
