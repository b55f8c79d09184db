"""A loopback fake of ARM's DNS record-set API, public (``dnsZones``) and private (``privateDnsZones``) zones.

It speaks the documented wire protocol for TXT record sets: ``GET``/``PUT``/``DELETE
/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/{dnsZones|privateDnsZones}/{zone}/TXT/{name}
?api-version=...`` with a bearer token. Public zones take ``2018-05-01`` and the ``TTL``/``TXTRecords`` property
names; private zones take ``2020-06-01`` and ``ttl``/``txtRecords``. It checks the token and the api-version,
answers ARM's error envelope ``{"error": {"code", "message"}}``, keeps ETags and honours ``If-Match`` and
``If-None-Match: *`` with 412. ``fail_next`` queues answers such as 429 with ``Retry-After`` for the next requests.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["API_VERSIONS", "ArmDnsFake", "ArmRequest"]

API_VERSIONS = {"dnsZones": "2018-05-01", "privateDnsZones": "2020-06-01"}
_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network/"
    r"(?P<kind>dnsZones|privateDnsZones)/(?P<zone>[^/]+)/TXT/(?P<name>[^/]+)$"
)


@dataclass(frozen=True, slots=True)
class ArmRequest:
    """One request the fake received.

    Attributes:
        method: the HTTP method.
        path: the URL path.
        api_version: the ``api-version`` query parameter.
        authorization: the ``Authorization`` header.
        body: the JSON body, if any.
    """

    method: str
    path: str
    api_version: str
    authorization: str
    body: Any = None


@dataclass
class _RecordSet:
    etag: str
    properties: dict[str, Any] = field(default_factory=dict)


class ArmDnsFake:
    """The fake ARM endpoint; zones are ``(kind, subscription, resource group, zone)`` and the valid token is fixed."""

    def __init__(self, *, token: str, zones: set[tuple[str, str, str, str]]) -> None:
        self.token = token
        self.zones = zones
        self.records: dict[tuple[str, str, str], _RecordSet] = {}
        self.requests: list[ArmRequest] = []
        self.failures: list[tuple[str | None, int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, status: int, headers: dict[str, str] | None = None, *, method: str | None = None) -> None:
        """Answer the next request (of ``method``, if given) with ``status`` and ``headers`` instead of serving it."""
        self.failures.append((method, status, headers or {}))

    def txt_values(self, kind: str, zone: str, name: str) -> list[str]:
        """The values of a TXT record set, as stored."""
        record = self.records.get((kind, zone, name))
        if record is None:
            return []
        key = "TXTRecords" if kind == "dnsZones" else "txtRecords"
        return ["".join(entry["value"]) for entry in record.properties.get(key, [])]

    def __enter__(self) -> ArmDnsFake:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: object | None = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._send(status, {"error": {"code": code, "message": message}})

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                api_version = parse_qs(parts.query).get("api-version", [""])[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append(
                    ArmRequest(self.command, parts.path, api_version, self.headers.get("Authorization", ""), body)
                )
                failure = next((f for f in fake.failures if f[0] in (None, self.command)), None)
                if failure is not None:
                    fake.failures.remove(failure)
                    self._send(failure[1], {"error": {"code": "Injected", "message": "injected failure"}}, failure[2])
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._error(401, "AuthenticationFailed", "Authentication failed.")
                    return
                match = _PATH.match(parts.path)
                if match is None:
                    self._error(404, "InvalidResourceType", "The resource type could not be found.")
                    return
                kind, zone, name = match["kind"], unquote(match["zone"]), unquote(match["name"])
                if api_version != API_VERSIONS[kind]:
                    self._error(400, "InvalidApiVersionParameter", f"api-version {api_version!r} is not supported")
                    return
                if (kind, unquote(match["sub"]), unquote(match["rg"]), zone) not in fake.zones:
                    self._error(404, "ParentResourceNotFound", f"zone {zone} not found")
                    return
                with fake._lock:
                    self._record_set(kind, zone, name, body, parts.path)

            def _record_set(self, kind: str, zone: str, name: str, body: Any, path: str) -> None:
                key = (kind, zone, name)
                current = fake.records.get(key)
                if_match, if_none_match = self.headers.get("If-Match"), self.headers.get("If-None-Match")
                if self.command == "GET":
                    if current is None:
                        self._error(404, "NotFound", f"record set {name} not found")
                    else:
                        self._send(200, self._resource(path, name, kind, current))
                    return
                if (if_match is not None and (current is None or current.etag != if_match)) or (
                    if_none_match == "*" and current is not None
                ):
                    self._error(412, "PreconditionFailed", "The ETag does not match.")
                    return
                if self.command == "DELETE":
                    if current is None:
                        self._send(204)
                    else:
                        del fake.records[key]
                        self._send(200)
                    return
                properties = body.get("properties") if isinstance(body, dict) else None
                expected = "TXTRecords" if kind == "dnsZones" else "txtRecords"
                if not isinstance(properties, dict) or not isinstance(properties.get(expected), list):
                    self._error(400, "BadRequest", f"properties.{expected} is required")
                    return
                record = _RecordSet(etag=secrets.token_hex(8), properties=properties)
                fake.records[key] = record
                self._send(201 if current is None else 200, self._resource(path, name, kind, record))

            @staticmethod
            def _resource(path: str, name: str, kind: str, record: _RecordSet) -> dict[str, Any]:
                return {
                    "id": path,
                    "name": name,
                    "type": f"Microsoft.Network/{kind}/TXT",
                    "etag": record.etag,
                    "properties": record.properties,
                }

            do_GET = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
