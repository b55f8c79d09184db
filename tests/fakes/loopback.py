"""A loopback HTTP(S) server whose behaviour is one answer function, as httpx's ``MockTransport(handler)`` is.

A fake is then only its ``handler``: it receives each ``Request`` and returns a ``Response``. The server records
every request it received, so a test can assert what reached it (and what never did).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["LoopbackServer", "Request", "Response", "json_response"]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the server read it.

    Attributes:
        method: the HTTP method.
        path: the path without the query.
        query: the query's parameters (first value of each).
        headers: the headers, names lower-cased.
        body: the raw body.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body read as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True, slots=True)
class Response:
    """What to answer.

    Attributes:
        status: the HTTP status.
        body: the body bytes.
        headers: extra headers (``Content-Length`` is always set).
    """

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(status: int, value: object, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})


class LoopbackServer:
    """Serve ``handler`` on 127.0.0.1 (HTTPS when given a server ``tls`` context) until the ``with`` block ends."""

    def __init__(self, handler: Callable[[Request], Response], *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._tls = tls
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        assert self._server is not None, "the server is not running"
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LoopbackServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                server.requests.append(request)
                answer = server.handler(request)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``requests``."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
