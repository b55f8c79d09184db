"""An OTLP/HTTP metrics receiver on loopback that decodes what it gets with ``opentelemetry-proto``.

- ``POST /v1/metrics`` with ``Content-Type: application/x-protobuf`` (gzip'd when ``Content-Encoding: gzip``) and
  an ``ExportMetricsServiceRequest`` body → 200 with an empty ``ExportMetricsServiceResponse``, as a collector
  answers (OTLP spec, "OTLP/HTTP Response");
- anything else on that path → 400 (an unreadable body) or 415 (another content type); other paths → 404;
- ``fail_next(status, times)`` answers the next requests with ``status`` (503 and 429 are the retryable ones the
  spec names, with ``Retry-After`` when given), then serves normally again.

Each decoded data point is kept as a ``Point``: the metric's name, unit and kind, the point's attributes and its
value (a histogram's sum, count and bucket counts), so a test asserts what reached the wire.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from tests.fakes.loopback import LoopbackServer, Request, Response

__all__ = ["OtlpReceiver", "Point"]

_PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True, slots=True)
class Point:
    """One data point as the receiver decoded it.

    Attributes:
        name: the metric's name.
        unit: the metric's unit.
        kind: ``gauge``, ``sum`` or ``histogram`` (the protobuf's ``data`` oneof).
        attributes: the point's attributes, values as strings.
        value: the number (a histogram's sum).
        count: a histogram's count (1 otherwise).
        bucket_counts: a histogram's bucket counts.
        bounds: a histogram's explicit bounds.
        monotonic: a sum's monotonicity.
        temporality: a sum's or histogram's aggregation temporality (1 delta, 2 cumulative).
    """

    name: str
    unit: str
    kind: str
    attributes: Mapping[str, str]
    value: float
    count: int = 1
    bucket_counts: tuple[int, ...] = ()
    bounds: tuple[float, ...] = ()
    monotonic: bool = False
    temporality: int = 0


@dataclass
class OtlpReceiver:
    """The receiver's state: what it decoded, in order, and the failures it was told to answer with."""

    points: list[Point] = field(default_factory=list)
    resources: list[dict[str, str]] = field(default_factory=list)
    exports: int = 0
    _failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = LoopbackServer(self.handle)

    def __enter__(self) -> OtlpReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends ``/v1/metrics``)."""
        return self.server.url

    def fail_next(self, status: int, times: int = 1, *, retry_after: int | None = None) -> None:
        """Answer the next ``times`` exports with ``status`` (and ``Retry-After`` when given)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            self._failures.extend([(status, headers)] * times)

    def named(self, name: str) -> list[Point]:
        """The points of metric ``name``, in the order received."""
        return [point for point in self.points if point.name == name]

    def handle(self, request: Request) -> Response:
        """Answer one request as an OTLP/HTTP collector does."""
        if request.method != "POST" or request.path != "/v1/metrics":
            return Response(404)
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return Response(failure[0], b"", failure[1])
        if request.headers.get("content-type", "").split(";")[0].strip() != _PROTOBUF:
            return Response(415)
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportMetricsServiceRequest()
        try:
            message.ParseFromString(body)
        except DecodeError:
            return Response(400)
        with self._lock:
            self.exports += 1
            for resource_metrics in message.resource_metrics:
                self.resources.append(_attributes(resource_metrics.resource.attributes))
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        self.points.extend(_points(metric))
        return Response(200, ExportMetricsServiceResponse().SerializeToString(), {"Content-Type": _PROTOBUF})


def _points(metric: Metric) -> list[Point]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return []
    name, unit = metric.name, metric.unit
    data = getattr(metric, kind)
    if kind == "histogram":
        return [
            Point(
                name,
                unit,
                kind,
                _attributes(point.attributes),
                point.sum,
                point.count,
                tuple(point.bucket_counts),
                tuple(point.explicit_bounds),
                temporality=data.aggregation_temporality,
            )
            for point in data.data_points
        ]
    points = []
    for point in data.data_points:
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        points.append(
            Point(
                name,
                unit,
                kind,
                _attributes(point.attributes),
                value,
                monotonic=getattr(data, "is_monotonic", False),
                temporality=getattr(data, "aggregation_temporality", 0),
            )
        )
    return points


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, str]:
    return {pair.key: _text(pair.value) for pair in pairs}


def _text(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    return str(getattr(value, which)) if which else ""
