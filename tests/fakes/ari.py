"""A loopback ACME directory that adds ARI (RFC 9773) to a real server's, for servers like Pebble 2.4 without it.

It serves ``GET /directory``: the upstream directory plus ``renewalInfo`` pointing here, and ``GET
/renewalInfo/<certificate id>`` answering the windows the test set (404 for others, as RFC 9773 §4.2 says for an
unknown certificate). Everything else in the directory still points at the upstream server. With
``record_new_orders`` the directory's ``newOrder`` points here too: the fake keeps the JWS payload of each order
(its ``identifiers`` and ``replaces``) and refuses it with a ``malformed`` problem, since it cannot create orders.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["AriFake"]


class AriFake:
    """The fake ARI endpoint; use as a context manager, then point ``directory_url`` at ``directory_url``."""

    def __init__(self, upstream_directory: Mapping[str, Any], *, record_new_orders: bool = False) -> None:
        self._upstream = dict(upstream_directory)
        self._record_new_orders = record_new_orders
        self.windows: dict[str, tuple[datetime, datetime]] = {}
        self.renewal_info_requests: list[tuple[str, str]] = []
        self.new_orders: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/directory"

    def __enter__(self) -> AriFake:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _directory(self) -> dict[str, Any]:
        directory = {**self._upstream, "renewalInfo": f"{self.base_url}/renewalInfo"}
        if self._record_new_orders:
            directory["newOrder"] = f"{self.base_url}/new-order"
        return directory

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: object, content_type: str = "application/json") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if status == 200 and self.path.startswith("/renewalInfo/"):
                    # RFC 9773 §4.3: the server says when to ask again.
                    self.send_header("Retry-After", "21600")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/directory":
                    self._send(200, fake._directory())
                    return
                if self.path.startswith("/renewalInfo/"):
                    certificate_id = self.path.removeprefix("/renewalInfo/")
                    fake.renewal_info_requests.append((certificate_id, self.headers.get("Authorization", "")))
                    window = fake.windows.get(certificate_id)
                    if window is None:
                        problem = {"type": "urn:ietf:params:acme:error:malformed", "detail": "unknown certificate"}
                        self._send(404, problem, "application/problem+json")
                        return
                    start, end = (moment.isoformat().replace("+00:00", "Z") for moment in window)
                    self._send(200, {"suggestedWindow": {"start": start, "end": end}})
                    return
                self._send(404, {"type": "about:blank"}, "application/problem+json")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if self.path == "/new-order" and fake._record_new_orders:
                    payload = body["payload"] + "=" * (-len(body["payload"]) % 4)
                    fake.new_orders.append(json.loads(base64.urlsafe_b64decode(payload)))
                    problem = {"type": "urn:ietf:params:acme:error:malformed", "detail": "recorded by the ARI fake"}
                    self._send(400, problem, "application/problem+json")
                    return
                self._send(404, {"type": "about:blank"}, "application/problem+json")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
