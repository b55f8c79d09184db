"""A loopback HTTP(S) server whose behaviour is one answer function, as httpx's ``MockTransport(handler)`` is.

A fake is then only its ``handler``: it receives each ``Request`` and returns a ``Response``. The server records
every request it received and counts every connection it accepted, so a test can assert what reached it (and
that nothing at all did). It speaks HTTP/1.1 with keep-alive, so a handler that keeps per-connection state (NTLM
authenticates a connection) keys it by ``Request.peer``; over TLS the handshake runs in the connection's own
thread, and a client certificate the server context verified is on ``Request.client_certificate``.
"""

from __future__ import annotations

import json
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Handler", "LoopbackServer", "Request", "Response", "json_response"]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the server read it.

    Attributes:
        method: the HTTP method.
        path: the path without the query.
        query: the query's parameters (first value of each, blank values kept).
        headers: the headers, names lower-cased.
        body: the raw body.
        target: the request target as sent (path and query).
        peer: the client's address and port: one per connection.
        client_certificate: the TLS client certificate the server verified (``SSLSocket.getpeercert()``), if any.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    target: str = ""
    peer: tuple[str, int] = ("", 0)
    client_certificate: Mapping[str, Any] | None = None

    def json(self) -> Any:
        """The body read as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body else None

    @property
    def client_common_name(self) -> str | None:
        """The common name of the verified client certificate's subject, if there is one."""
        if not self.client_certificate:
            return None
        subject = dict(pair[0] for pair in self.client_certificate.get("subject", ()))
        return str(subject.get("commonName"))


@dataclass(frozen=True, slots=True)
class Response:
    """What to answer.

    Attributes:
        status: the HTTP status.
        body: the body bytes (not sent in answer to ``HEAD``).
        headers: extra headers (``Content-Length`` is always set).
    """

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


def json_response(status: int, value: object, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})


def _ok(request: Request) -> Response:
    return json_response(200, {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler_class: type[BaseHTTPRequestHandler]) -> None:
        self.connections = 0
        self._count_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), handler_class)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # Called once per accepted connection, before any byte (TLS or HTTP) is read from it.
        with self._count_lock:
            self.connections += 1
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that fails the TLS handshake (an untrusted client certificate) or hangs up is its own problem.
        if not isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """Serve ``handler`` on 127.0.0.1 (HTTPS when given a server ``tls`` context) until the ``with`` block ends.

    Without a ``handler`` it answers 200 ``{}`` to everything: a recorder.

    Attributes:
        handler: the answer function; a fake may swap it while serving.
        requests: every request, in order.
    """

    def __init__(self, handler: Handler = _ok, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._tls = tls
        # Bound at once, so its URL is known before it serves (a fake can hand it out, or point at itself).
        self._server = _Server(self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted (one that never completed a handshake or a request counts)."""
        return self._server.connections

    def start(self) -> LoopbackServer:
        """Start serving in a thread (``with`` does this)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port (``with`` does this)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Connection(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                tls = server._tls
                if tls is not None:
                    # The handshake runs here, in the connection's thread: a client that never completes it
                    # holds up no one else.
                    self.request.settimeout(30)
                    self.request = tls.wrap_socket(self.request, server_side=True)
                    self.request.settimeout(None)
                super().setup()

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                certificate = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    target=self.path,
                    peer=(str(self.client_address[0]), int(self.client_address[1])),
                    client_certificate=certificate or None,
                )
                server.requests.append(request)
                answer = server.handler(request)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read ``requests``."""

        return Connection
