"""Application Insights' ingestion endpoint (Breeze) on loopback, keeping the metric envelopes it decoded.

- ``POST /v2.1/track`` (also as ``//v2.1/track``, which the exporter sends and the service takes; and the older
  ``/v2/track``) with a JSON array of envelopes, or one envelope per line, gzip'd when ``Content-Encoding: gzip``
  → 200 ``{"itemsReceived": n, "itemsAccepted": n, "errors": []}``, as the service answers a batch it took whole;
- ``reject_next(status)`` answers the next batch with 206: every item refused with ``status`` in ``errors[]``
  (``{"index", "statusCode", "message"}``), as the service answers a batch it took in part; 400 items are not
  retryable, 429/500/503 ones are;
- ``fail_next(status, times)`` answers the next batches with ``status`` as a whole (429 with ``Retry-After``,
  500, 503), then serves normally again;
- with ``token`` set (a resource with local authentication disabled, as ``infra/`` deploys it) a batch without
  ``Authorization: Bearer <token>`` gets 401, as the service answers;
- an envelope whose ``iKey`` is not the one the fake was made with is refused (400 for that item), as the
  service refuses an unknown instrumentation key.

Each ``Microsoft.ApplicationInsights.Metric`` envelope becomes a ``MetricItem``: its ``baseData.metrics[0]``
(name, value, count, min, max) and ``baseData.properties`` (the attributes, which land in ``customDimensions``).
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.loopback import LoopbackServer, Request, Response, json_response

__all__ = ["AppInsightsIngestion", "MetricItem"]

_METRIC = "Microsoft.ApplicationInsights.Metric"
_TRACK_PATHS = ("/v2.1/track", "/v2/track")


@dataclass(frozen=True, slots=True)
class MetricItem:
    """One metric envelope as the fake decoded it.

    Attributes:
        name: ``baseData.metrics[0].name`` (``customMetrics.name``).
        value: its value (a histogram's sum).
        count: its count (a histogram's count, 1 otherwise).
        min: its minimum, if sent.
        max: its maximum, if sent.
        properties: ``baseData.properties`` (``customMetrics.customDimensions``).
        ikey: the envelope's instrumentation key.
        time: the envelope's time, as sent.
    """

    name: str
    value: float
    count: int
    min: float | None
    max: float | None
    properties: Mapping[str, str]
    ikey: str
    time: str


@dataclass
class AppInsightsIngestion:
    """The fake's state: the instrumentation key it accepts, what it decoded, the failures it will answer."""

    instrumentation_key: str = field(default_factory=lambda: str(uuid.uuid4()))
    token: str | None = None
    tls: ssl.SSLContext | None = None
    metrics: list[MetricItem] = field(default_factory=list)
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0
    _failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    _rejections: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self.handle, tls=self.tls)

    def __enter__(self) -> AppInsightsIngestion:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def connection_string(self) -> str:
        """A connection string whose ``IngestionEndpoint`` is this fake."""
        return f"InstrumentationKey={self.instrumentation_key};IngestionEndpoint={self.server.url}/"

    def fail_next(self, status: int, times: int = 1, *, retry_after: int | None = None) -> None:
        """Answer the next ``times`` batches with ``status`` (and ``Retry-After`` when given)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._failures.extend([(status, headers)] * times)

    def reject_next(self, status: int) -> None:
        """Answer the next batch with 206, every item refused with ``status``."""
        with self._lock:
            self._rejections.append(status)

    def named(self, name: str) -> list[MetricItem]:
        """The items of metric ``name``, in the order received."""
        return [item for item in self.metrics if item.name == name]

    def handle(self, request: Request) -> Response:
        """Answer one request as the ingestion service does."""
        # The exporter joins the connection string's endpoint (with its trailing slash) and "/v2.1/track", and the
        # service takes the doubled slash: read the target as sent, not as a URL (where "//" starts a host).
        path = "/" + request.target.split("?")[0].lstrip("/")
        if request.method != "POST" or path not in _TRACK_PATHS:
            return Response(404)
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return json_response(401, {"itemsReceived": 0, "itemsAccepted": 0, "errors": []})
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            rejection = self._rejections.pop(0) if self._rejections and failure is None else None
        if failure is not None:
            status, headers = failure
            return json_response(status, {"itemsReceived": 0, "itemsAccepted": 0, "errors": []}, headers)
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            envelopes = _envelopes(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return json_response(400, {"itemsReceived": 0, "itemsAccepted": 0, "errors": []})
        errors: list[dict[str, object]] = []
        accepted: list[dict[str, Any]] = []
        for index, envelope in enumerate(envelopes):
            if rejection is not None:
                errors.append({"index": index, "statusCode": rejection, "message": "Rejected by the fake."})
            elif envelope.get("iKey") != self.instrumentation_key:
                errors.append({"index": index, "statusCode": 400, "message": "Invalid instrumentation key"})
            else:
                accepted.append(envelope)
        with self._lock:
            self.batches += 1
            self.envelopes.extend(accepted)
            self.metrics.extend(_metric(envelope) for envelope in accepted if envelope.get("name") == _METRIC)
        answer = {"itemsReceived": len(envelopes), "itemsAccepted": len(accepted), "errors": errors}
        return json_response(206 if errors else 200, answer)


def _envelopes(text: str) -> list[dict[str, Any]]:
    stripped = text.strip()
    if stripped.startswith("["):
        value = json.loads(stripped)
        if not isinstance(value, list):
            raise ValueError("not a list of envelopes")
        return [dict(item) for item in value]
    return [dict(json.loads(line)) for line in stripped.splitlines() if line.strip()]


def _metric(envelope: Mapping[str, Any]) -> MetricItem:
    base = envelope["data"]["baseData"]
    [point] = base["metrics"]
    return MetricItem(
        name=point["name"],
        value=float(point["value"]),
        count=int(point.get("count") or 1),
        min=point.get("min"),
        max=point.get("max"),
        properties={str(key): str(value) for key, value in (base.get("properties") or {}).items()},
        ikey=str(envelope.get("iKey")),
        time=str(envelope.get("time")),
    )
