"""``OpenTelemetryMetrics``: the ``Metrics`` protocol on a MeterProvider of its own, and the exporters it reads.

Importing this module imports the OpenTelemetry SDK; ``renewal.shells.telemetry.metrics_from_environ`` does so
only when an exporter is configured. The provider is not the global one, so a process (or a test) may hold
several, and nothing else in the process exports through it.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from opentelemetry.sdk.metrics import MeterProvider, _Gauge
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource

from renewal.errors import ConfigurationError
from renewal.outcome import Outcome, Reason, metric_labels

__all__ = ["OpenTelemetryMetrics", "build_metrics", "credential_from_authentication_string"]

logger = logging.getLogger(__name__)

METER_NAME = "renewal"

# Renewal durations run from a fraction of a second (a local CA) to minutes (a CA that needs approval is polled,
# so a single attempt stays under functionTimeout): OpenTelemetry's default bounds (0 to 10,000) suit milliseconds.
DURATION_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

_CA_RESULTS = frozenset({"issued", "pending"}) | frozenset(Reason)
_DELIVERY_KINDS = frozenset({"webhook", "topic", "notify", "target", "revoke"})
_DELIVERY_RESULTS = frozenset({"delivered", "failed"})
_OTHER = "other"

# Points per export request. A sweep of a large vault sets five gauges per certificate, all exported at its
# flush: in one request, 20,000 certificates made 12 MB of OTLP (collectors refuse bodies over 20 MiB by default)
# and 100,000 Azure Monitor envelopes, of which the exporter's own rate limit (10,000 a second) dropped 90,000.
MAX_POINTS_PER_EXPORT = 5000

# Application Insights stores every point it is sent as a row of customMetrics, so a certificate's gauges are sent
# when the sweep sets them, not again at every export (cumulative would re-send the whole fleet each flush). OTLP
# keeps the SDK's cumulative gauges: a Prometheus scrape behind a collector then always sees the last value.
_DELTA_GAUGES: Mapping[type, AggregationTemporality] = {_Gauge: AggregationTemporality.DELTA}

# The Azure Monitor exporter reaches Microsoft's endpoints of its own accord (the OneSettings control plane, which
# may toggle its behaviour remotely, and statsbeat), and sends "customer SDK stats" into our own resource. None is
# an option of the exporter, only these settings; each stays as the app settings say when they name it.
_AZURE_MONITOR_SIDE_CHANNELS = (
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
)


class OpenTelemetryMetrics:
    """The ``Metrics`` protocol on OpenTelemetry instruments named after cert-manager's (docs/metrics.md).

    Each exporter gets its own periodic reader (every ``export_interval_seconds``; ``math.inf`` exports only on
    ``flush``) and at most ``max_points_per_export`` points per request; the one named ``application_insights``
    gets delta gauges (``_DELTA_GAUGES``). ``flush`` collects and exports now and never raises: a failed export is
    logged as one line naming the exporter, never its endpoint, key or connection string.
    """

    def __init__(
        self,
        exporters: Mapping[str, MetricExporter],
        *,
        export_interval_seconds: float = 60.0,
        flush_timeout_seconds: float = 10.0,
        resource: Resource | None = None,
        max_points_per_export: int = MAX_POINTS_PER_EXPORT,
    ) -> None:
        self._watched = [
            _WatchedExporter(
                name, exporter, _DELTA_GAUGES if name == "application_insights" else None, max_points_per_export
            )
            for name, exporter in exporters.items()
        ]
        interval = export_interval_seconds * 1000 if math.isfinite(export_interval_seconds) else math.inf
        readers = [
            PeriodicExportingMetricReader(
                watched, export_interval_millis=interval, export_timeout_millis=flush_timeout_seconds * 1000
            )
            for watched in self._watched
        ]
        self._flush_timeout_millis = flush_timeout_seconds * 1000
        self._provider = MeterProvider(
            metric_readers=readers, resource=resource or Resource.create({"service.name": "renewal"})
        )
        meter = self._provider.get_meter(METER_NAME)
        self._expiration = meter.create_gauge(
            "renewal_certificate_expiration_timestamp_seconds",
            unit="s",
            description="The current version's expiry (notAfter), as seconds since the epoch.",
        )
        self._renewal = meter.create_gauge(
            "renewal_certificate_renewal_timestamp_seconds",
            unit="s",
            description="When the current version's renewal window opens, as seconds since the epoch.",
        )
        self._not_before = meter.create_gauge(
            "renewal_certificate_not_before_timestamp_seconds",
            unit="s",
            description="The current version's notBefore, as seconds since the epoch.",
        )
        self._ready = meter.create_gauge(
            "renewal_certificate_ready_status",
            unit="1",
            description="1 for the certificate's condition (True: valid and not at risk; False: at risk), "
            "0 for the other, as cert-manager's ready status.",
        )
        self._renewals = meter.create_counter(
            "renewal_renewals_total", unit="{renewal}", description="Renewal attempts that ended, by outcome."
        )
        self._ca_requests = meter.create_counter(
            "renewal_ca_requests_total", unit="{request}", description="Requests to a CA (submit or poll)."
        )
        self._deliveries = meter.create_counter(
            "renewal_deliveries_total", unit="{delivery}", description="Delivery attempts from the outbox."
        )
        self._dead_letters = meter.create_counter(
            "renewal_dead_letters_total", unit="{delivery}", description="Deliveries given up past their maximum age."
        )
        self._duration = meter.create_histogram(
            "renewal_renewal_duration_seconds",
            unit="s",
            description="How long a renewal attempt took, from its start to its outcome.",
            explicit_bucket_boundaries_advisory=DURATION_BOUNDS,
        )

    def certificate_listed(
        self,
        *,
        vault: str,
        certificate: str,
        ca_profile: str | None,
        adapter: str | None,
        expires_on: datetime | None,
        not_before: datetime | None,
        window_start: datetime | None,
        ready: bool,
    ) -> None:
        """Set the certificate's gauges (a timestamp not known is left out)."""
        attributes = _certificate_attributes(vault, certificate, ca_profile, adapter)
        for gauge, moment in (
            (self._expiration, expires_on),
            (self._renewal, window_start),
            (self._not_before, not_before),
        ):
            if moment is not None:
                gauge.set(moment.timestamp(), attributes)
        self._ready.set(1 if ready else 0, {**attributes, "condition": "True"})
        self._ready.set(0 if ready else 1, {**attributes, "condition": "False"})

    def renewal_finished(self, outcome: Outcome, *, duration_seconds: float | None, adapter: str | None) -> None:
        """Count the outcome by status and closed reason, and record its duration when it has one."""
        labels = metric_labels(outcome)
        # The outcome closes its reason when built; closing it again keeps the label set bounded whatever built it.
        labels["reason"] = str(Reason.of(labels["reason"], retryable=outcome.retryable)[0])
        attributes = {**labels, "certificate": outcome.certificate_name or "", "adapter": adapter or ""}
        self._renewals.add(1, attributes)
        if duration_seconds is not None:
            self._duration.record(
                max(duration_seconds, 0.0),
                {
                    "vault": labels["vault"],
                    "ca_profile": labels["ca_profile"],
                    "adapter": adapter or "",
                    "status": labels["status"],
                },
            )

    def ca_request(self, *, ca_profile: str, adapter: str, result: str) -> None:
        """Count one CA request by ``issued``, ``pending`` or a closed reason."""
        self._ca_requests.add(1, {"ca_profile": ca_profile, "adapter": adapter, "result": _ca_result(result)})

    def delivery(self, *, endpoint: str, kind: str, result: str) -> None:
        """Count one delivery attempt by endpoint, kind and ``delivered`` / ``failed``."""
        self._deliveries.add(
            1,
            {
                "endpoint": endpoint,
                "kind": _bounded(kind, _DELIVERY_KINDS),
                "result": _bounded(result, _DELIVERY_RESULTS),
            },
        )

    def dead_letter(self, *, endpoint: str, kind: str) -> None:
        """Count one delivery given up."""
        self._dead_letters.add(1, {"endpoint": endpoint, "kind": _bounded(kind, _DELIVERY_KINDS)})

    def flush(self) -> None:
        """Collect and export what was measured, now; never raises (a failure is logged once per exporter)."""
        try:
            self._provider.force_flush(timeout_millis=self._flush_timeout_millis)
        except Exception as exc:  # metrics must never fail the invocation that measured them
            # The SDK's message names reader classes and the timeout, no endpoint or key.
            logger.warning("metrics flush did not finish: %s", type(exc).__name__)

    def shutdown(self) -> None:
        """Export what is left and stop the readers (for a runtime that is replaced, and for tests)."""
        try:
            self._provider.shutdown(timeout_millis=self._flush_timeout_millis)
        except Exception as exc:  # as flush
            logger.warning("metrics shutdown did not finish: %s", type(exc).__name__)

    @property
    def failed_exports(self) -> Mapping[str, int]:
        """How many exports failed, by exporter name (``application_insights``, ``otlp``)."""
        return {watched.name: watched.failures for watched in self._watched}


class _WatchedExporter(MetricExporter):
    """An exporter that logs one line when an export fails: the readers drop the result, and the exporters' own
    lines may carry the payload (the Azure Monitor exporter logs refused envelopes, instrumentation key included)."""

    def __init__(
        self,
        name: str,
        exporter: MetricExporter,
        temporality: Mapping[type, AggregationTemporality] | None = None,
        max_points_per_export: int = MAX_POINTS_PER_EXPORT,
    ) -> None:
        # The wrapped exporter's temporality (delta counters for Application Insights) must reach the reader; the
        # SDK keeps it on these attributes only.
        super().__init__(
            preferred_temporality={**(exporter._preferred_temporality or {}), **(temporality or {})},
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self.name = name
        self.failures = 0
        self._exporter = exporter
        self._max_points = max_points_per_export
        self._lock = threading.Lock()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        failed_points, cause = 0, ""
        for batch in _batches(metrics_data, self._max_points):
            try:
                result = self._exporter.export(batch, timeout_millis=timeout_millis, **kwargs)
            except Exception as exc:  # an exporter that raises is a failed export like any other
                result, cause = MetricExportResult.FAILURE, type(exc).__name__
            else:
                cause = cause or "the exporter reported a failure"
            if result is not MetricExportResult.SUCCESS:
                failed_points += _point_count(batch)
        if not failed_points:
            return MetricExportResult.SUCCESS
        with self._lock:
            self.failures += 1
        logger.warning("metrics export failed exporter=%s points=%d cause=%s", self.name, failed_points, cause)
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return bool(self._exporter.force_flush(timeout_millis=timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._exporter.shutdown(timeout_millis=timeout_millis, **kwargs)


def build_metrics(
    environ: Mapping[str, str], exporters: Sequence[str], *, credential: Any = None
) -> OpenTelemetryMetrics:
    """``OpenTelemetryMetrics`` with the ``exporters`` ``environ`` configures (see the package docstring).

    Raises:
        ConfigurationError: a setting of an exporter is malformed.
    """
    built: dict[str, MetricExporter] = {}
    if "application_insights" in exporters:
        built["application_insights"] = _application_insights(environ, credential)
    if "otlp" in exporters:
        built["otlp"] = _otlp(environ)
    interval = _seconds(environ, "OTEL_METRIC_EXPORT_INTERVAL", default=60.0, per=1000)
    name = environ.get("OTEL_SERVICE_NAME") or environ.get("WEBSITE_SITE_NAME") or "renewal"
    return OpenTelemetryMetrics(
        built, export_interval_seconds=interval, resource=Resource.create({"service.name": name})
    )


def _application_insights(environ: Mapping[str, str], credential: Any) -> MetricExporter:
    from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter

    for setting in _AZURE_MONITOR_SIDE_CHANNELS:
        if setting not in environ:
            os.environ.setdefault(setting, "true")
    connection_string = environ["APPLICATIONINSIGHTS_CONNECTION_STRING"].strip()
    if not any(pair.strip().lower().startswith("instrumentationkey=") for pair in connection_string.split(";")):
        raise ConfigurationError("APPLICATIONINSIGHTS_CONNECTION_STRING", "names no InstrumentationKey")
    if credential is None:
        credential = credential_from_authentication_string(environ)
    return AzureMonitorMetricExporter(
        connection_string=connection_string,
        # Passed always, even None: the exporter would otherwise build one from the process environment itself.
        credential=credential,
        # Offline storage would re-send failed batches from files in later exports; a Functions instance is
        # short-lived and its disk is not ours to fill, so a failed export is logged and dropped.
        disable_offline_storage=True,
        # azure-core's retry policy sleeps for whatever Retry-After the service sends (a throttled flush held the
        # invocation 30 s in a test): flush must stay short, so the first answer is final.
        retry_total=0,
        # Its rate limit drops what exceeds 10,000 envelopes a second; a sweep's flush is one burst per sweep,
        # already cut into requests of MAX_POINTS_PER_EXPORT, so the limit would only lose certificates' gauges.
        max_envelopes_per_second=0,
    )


def credential_from_authentication_string(environ: Mapping[str, str]) -> Any:
    """The credential ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` asks for (``Authorization=AAD``), or None."""
    setting = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
    text = environ.get(setting, "").strip()
    if not text:
        return None
    pairs: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue
        key, separator, value = pair.partition("=")
        if not separator:
            raise ConfigurationError(setting, "is not a list of key=value pairs separated by ';'")
        pairs[key.strip().lower()] = value.strip()
    authorization = pairs.get("authorization", "")
    if authorization.upper() != "AAD":
        raise ConfigurationError(setting, "supports only Authorization=AAD")
    client_id = pairs.get("clientid") or environ.get("AZURE_CLIENT_ID")
    if client_id:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _otlp(environ: Mapping[str, str]) -> MetricExporter:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    setting = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    endpoint = environ.get(setting, "").strip()
    if not endpoint:
        # The generic endpoint is a base URL; the signal's path is appended (OTLP exporter specification).
        setting = "OTEL_EXPORTER_OTLP_ENDPOINT"
        endpoint = environ[setting].strip().rstrip("/") + "/v1/metrics"
    if not endpoint.startswith(("https://", "http://")):
        raise ConfigurationError(setting, "is not an http(s) URL")
    headers = _headers(environ)
    compression_name = _first(environ, "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
    try:
        compression = Compression((compression_name or "none").lower())
    except ValueError:
        raise ConfigurationError("OTEL_EXPORTER_OTLP_COMPRESSION", "is not one of gzip, deflate, none") from None
    timeout = _seconds(environ, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", default=0.0) or _seconds(
        environ, "OTEL_EXPORTER_OTLP_TIMEOUT", default=10.0
    )
    certificate = _first(environ, "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
    # Every option is passed, so the exporter reads nothing from the process environment that ``environ`` did
    # not say; its transport never follows a redirect (the headers may carry an API key).
    return OTLPMetricExporter(
        endpoint=endpoint,
        headers=headers,
        timeout=timeout,
        compression=compression,
        certificate_file=certificate or None,
    )


def _headers(environ: Mapping[str, str]) -> dict[str, str]:
    setting = "OTEL_EXPORTER_OTLP_METRICS_HEADERS"
    text = environ.get(setting, "").strip()
    if not text:
        setting, text = "OTEL_EXPORTER_OTLP_HEADERS", environ.get("OTEL_EXPORTER_OTLP_HEADERS", "").strip()
    headers: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise ConfigurationError(setting, "is not a list of key=value pairs separated by ','")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def _first(environ: Mapping[str, str], *names: str) -> str:
    for name in names:
        if value := environ.get(name, "").strip():
            return value
    return ""


def _seconds(environ: Mapping[str, str], setting: str, *, default: float, per: float = 1.0) -> float:
    text = environ.get(setting, "").strip()
    if not text:
        return default
    try:
        value = float(text) / per
    except ValueError:
        raise ConfigurationError(setting, "is not a number") from None
    if not value > 0:
        raise ConfigurationError(setting, "must be positive")
    return value


def _certificate_attributes(
    vault: str, certificate: str, ca_profile: str | None, adapter: str | None
) -> dict[str, str]:
    return {"vault": vault, "certificate": certificate, "ca_profile": ca_profile or "", "adapter": adapter or ""}


def _ca_result(result: str) -> str:
    if result in _CA_RESULTS:
        return result
    # An adapter's own reason: its family when the closed set knows it whatever its retryability, else "other".
    retryable, _ = Reason.of(result, retryable=True)
    permanent, _ = Reason.of(result, retryable=False)
    return str(retryable) if retryable is permanent else _OTHER


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else _OTHER


def _batches(metrics_data: MetricsData, size: int) -> Iterator[MetricsData]:
    """``metrics_data`` split into batches of at most ``size`` points, each point in exactly one batch."""
    resources: list[ResourceMetrics] = []
    room = size
    for resource in metrics_data.resource_metrics:
        scopes: list[ScopeMetrics] = []
        for scope in resource.scope_metrics:
            metrics = []
            for metric in scope.metrics:
                # Gauge, Sum and Histogram all keep their points in data_points; mypy cannot replace() a union.
                data: Any = metric.data
                points = list(data.data_points)
                while points:
                    taken, points = points[:room], points[room:]
                    metrics.append(replace(metric, data=replace(data, data_points=taken)))
                    room -= len(taken)
                    if room == 0:
                        scopes.append(replace(scope, metrics=metrics))
                        resources.append(replace(resource, scope_metrics=scopes))
                        yield MetricsData(resource_metrics=resources)
                        resources, scopes, metrics, room = [], [], [], size
            if metrics:
                scopes.append(replace(scope, metrics=metrics))
        if scopes:
            resources.append(replace(resource, scope_metrics=scopes))
    if resources:
        yield MetricsData(resource_metrics=resources)


def _point_count(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource in metrics_data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )
