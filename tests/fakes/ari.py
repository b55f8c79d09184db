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
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from tests.fakes.loopback import LoopbackServer, Request, Response, json_response

__all__ = ["AriFake"]


class AriFake:
    """The fake ARI endpoint; use as a context manager, then point ``directory_url`` at ``directory_url``."""

    def __init__(self, upstream_directory: Mapping[str, Any], *, record_new_orders: bool = False) -> None:
        self._upstream = dict(upstream_directory)
        self._record_new_orders = record_new_orders
        self.windows: dict[str, tuple[datetime, datetime]] = {}
        self.renewal_info_requests: list[tuple[str, str]] = []
        self.new_orders: list[dict[str, Any]] = []
        self._server = LoopbackServer(self.handle)

    @property
    def base_url(self) -> str:
        return self._server.url

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/directory"

    def __enter__(self) -> AriFake:
        self._server.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.stop()

    def handle(self, request: Request) -> Response:
        """The answer function: the directory, renewal information, and recorded (refused) orders."""
        match request.method, request.path:
            case "GET", "/directory":
                return json_response(200, self._directory())
            case "GET", path if path.startswith("/renewalInfo/"):
                certificate_id = path.removeprefix("/renewalInfo/")
                self.renewal_info_requests.append((certificate_id, request.headers.get("authorization", "")))
                window = self.windows.get(certificate_id)
                if window is None:
                    return _problem(404, "malformed", "unknown certificate")
                start, end = (moment.isoformat().replace("+00:00", "Z") for moment in window)
                # RFC 9773 §4.3: the server says when to ask again.
                return json_response(200, {"suggestedWindow": {"start": start, "end": end}}, {"Retry-After": "21600"})
            case "POST", "/new-order" if self._record_new_orders:
                payload = request.json()["payload"]
                self.new_orders.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
                return _problem(400, "malformed", "recorded by the ARI fake")
        return Response(404, json.dumps({"type": "about:blank"}).encode(), {"Content-Type": "application/problem+json"})

    def _directory(self) -> dict[str, Any]:
        directory = {**self._upstream, "renewalInfo": f"{self.base_url}/renewalInfo"}
        if self._record_new_orders:
            directory["newOrder"] = f"{self.base_url}/new-order"
        return directory


def _problem(status: int, kind: str, detail: str) -> Response:
    problem = {"type": f"urn:ietf:params:acme:error:{kind}", "detail": detail}
    return Response(status, json.dumps(problem).encode(), {"Content-Type": "application/problem+json"})
