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
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from tests.fakes.loopback import LoopbackServer, Request, Response

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
        self._server = LoopbackServer(self.handle)

    @property
    def url(self) -> str:
        return self._server.url

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
        self._server.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.stop()

    def handle(self, request: Request) -> Response:
        """The answer function: ARM's answer to ``request``."""
        api_version = request.query.get("api-version", "")
        body = request.json()
        authorization = request.headers.get("authorization", "")
        self.requests.append(ArmRequest(request.method, request.path, api_version, authorization, body))
        failure = next((f for f in self.failures if f[0] in (None, request.method)), None)
        if failure is not None:
            self.failures.remove(failure)
            return _json(failure[1], {"error": {"code": "Injected", "message": "injected failure"}}, failure[2])
        if authorization != f"Bearer {self.token}":
            return _error(401, "AuthenticationFailed", "Authentication failed.")
        match = _PATH.match(request.path)
        if match is None or request.method not in ("GET", "PUT", "DELETE"):
            return _error(404, "InvalidResourceType", "The resource type could not be found.")
        kind, zone, name = match["kind"], unquote(match["zone"]), unquote(match["name"])
        if api_version != API_VERSIONS[kind]:
            return _error(400, "InvalidApiVersionParameter", f"api-version {api_version!r} is not supported")
        if (kind, unquote(match["sub"]), unquote(match["rg"]), zone) not in self.zones:
            return _error(404, "ParentResourceNotFound", f"zone {zone} not found")
        with self._lock:
            return self._record_set(request, kind, zone, name, body)

    def _record_set(self, request: Request, kind: str, zone: str, name: str, body: Any) -> Response:
        key = (kind, zone, name)
        current = self.records.get(key)
        if request.method == "GET":
            if current is None:
                return _error(404, "NotFound", f"record set {name} not found")
            return _json(200, _resource(request.path, name, kind, current))
        if_match, if_none_match = request.headers.get("if-match"), request.headers.get("if-none-match")
        if (if_match is not None and (current is None or current.etag != if_match)) or (
            if_none_match == "*" and current is not None
        ):
            return _error(412, "PreconditionFailed", "The ETag does not match.")
        if request.method == "DELETE":
            if current is None:
                return _json(204)
            del self.records[key]
            return _json(200)
        properties = body.get("properties") if isinstance(body, dict) else None
        expected = "TXTRecords" if kind == "dnsZones" else "txtRecords"
        if not isinstance(properties, dict) or not isinstance(properties.get(expected), list):
            return _error(400, "BadRequest", f"properties.{expected} is required")
        record = _RecordSet(etag=secrets.token_hex(8), properties=properties)
        self.records[key] = record
        return _json(201 if current is None else 200, _resource(request.path, name, kind, record))


def _json(status: int, body: object | None = None, headers: dict[str, str] | None = None) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    content = {"Content-Type": "application/json; charset=utf-8"} if data else {}
    return Response(status, data, {**(headers or {}), **content})


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


def _resource(path: str, name: str, kind: str, record: _RecordSet) -> dict[str, Any]:
    return {
        "id": path,
        "name": name,
        "type": f"Microsoft.Network/{kind}/TXT",
        "etag": record.etag,
        "properties": record.properties,
    }
