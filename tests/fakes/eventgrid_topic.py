"""A loopback fake of an Event Grid custom topic's publish endpoint (CloudEvents 1.0 schema), over HTTPS.

It accepts ``POST /api/events`` with ``Content-Type: application/cloudevents-batch+json`` and a JSON array of
CloudEvents, authenticated by ``Authorization: Bearer <token>`` (Entra ID, the managed identity's way) or the
``aeg-sas-key`` header (access key), checks each event's required attributes, and records what it accepted.
It answers 200, 401 without valid credentials, 400 for a schema violation, and 503 when told it is down.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from devstack.keyvault import ensure_tls_files
from tests.fakes.loopback import LoopbackServer, Request, Response

__all__ = ["FakeTopic"]

_REQUIRED = ("specversion", "id", "source", "type")


@dataclass
class FakeTopic:
    """Serve a topic on 127.0.0.1 with the devstack TLS CA; ``events`` holds every accepted CloudEvent."""

    state_dir: Path
    token: str | None = None
    key: str | None = None
    down: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    _server: LoopbackServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"{self._server.url}/api/events"

    def __enter__(self) -> FakeTopic:
        tls = ensure_tls_files(self.state_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert_path, tls.server_key_path)
        self._server = LoopbackServer(self.handle, tls=context).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.stop()

    def handle(self, request: Request) -> Response:
        """The answer function: the topic's status for ``request`` (it answers no body)."""
        if request.method != "POST":
            return Response(405)
        return Response(self._accept(request.path, dict(request.headers), request.body))

    def _accept(self, path: str, headers: dict[str, str], body: bytes) -> int:
        lowered = {k.lower(): v for k, v in headers.items()}
        if self.down:
            return 503
        if not path.startswith("/api/events"):
            return 404
        authorized = (self.token and lowered.get("authorization") == f"Bearer {self.token}") or (
            self.key and lowered.get("aeg-sas-key") == self.key
        )
        if not authorized:
            self.rejected.append("unauthorized")
            return 401
        if not lowered.get("content-type", "").startswith("application/cloudevents-batch+json"):
            self.rejected.append(f"content-type {lowered.get('content-type')}")
            return 400
        try:
            events = json.loads(body)
        except ValueError:
            self.rejected.append("not JSON")
            return 400
        if not isinstance(events, list) or not all(
            isinstance(e, dict) and all(e.get(k) for k in _REQUIRED) and e.get("specversion") == "1.0" for e in events
        ):
            self.rejected.append("not CloudEvents 1.0")
            return 400
        self.events.extend(events)
        return 200
