"""The app's metrics, from its own OpenTelemetry meters, exported to Application Insights and/or OTLP/HTTP.

``metrics_from_environ(environ)`` is the one entry point: it reads the exporters' standard settings and returns
``NoMetrics`` (importing no OpenTelemetry module, so cold start pays nothing) when none is set, otherwise an
``OpenTelemetryMetrics`` with a reader per configured exporter:

- ``APPLICATIONINSIGHTS_CONNECTION_STRING``: Application Insights through ``azure-monitor-opentelemetry``'s
  exporter; with ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` saying ``Authorization=AAD`` (as ``infra/`` sets
  it) the exporter authenticates with the managed identity its ``ClientId`` names, or ``DefaultAzureCredential``;
- ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``: OTLP/HTTP (protobuf), with the
  matching ``OTEL_EXPORTER_OTLP_*_HEADERS``, ``_TIMEOUT``, ``_COMPRESSION`` and ``_CERTIFICATE``.

Metric names follow cert-manager's (docs/metrics.md). ``telemetry_secrets(environ)`` names the values the log
scrubber must hide (the instrumentation key, the connection string, OTLP header values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from renewal.shells.metrics import Metrics, NoMetrics

if TYPE_CHECKING:
    from renewal.shells.telemetry._otel import OpenTelemetryMetrics

__all__ = ["OpenTelemetryMetrics", "configured_exporters", "metrics_from_environ", "telemetry_secrets"]

APPLICATION_INSIGHTS = "application_insights"
OTLP = "otlp"

_CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_OTLP_HEADERS = ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")


def configured_exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The exporters ``environ`` configures: ``application_insights``, ``otlp``, both or none."""
    found = []
    if environ.get(_CONNECTION_STRING, "").strip():
        found.append(APPLICATION_INSIGHTS)
    if any(environ.get(name, "").strip() for name in _OTLP_ENDPOINTS):
        found.append(OTLP)
    return tuple(found)


def metrics_from_environ(environ: Mapping[str, str], *, credential: Any = None) -> Metrics:
    """The metrics ``environ`` configures: ``NoMetrics`` when no exporter is set, without importing OpenTelemetry.

    ``credential`` (an ``azure.core.credentials.TokenCredential``) replaces the one the authentication string
    would build for Application Insights.

    Raises:
        ConfigurationError: a setting of an exporter is malformed (it names the setting, never its value).
    """
    exporters = configured_exporters(environ)
    if not exporters:
        return NoMetrics()
    from renewal.shells.telemetry._otel import build_metrics

    return build_metrics(environ, exporters, credential=credential)


def telemetry_secrets(environ: Mapping[str, str]) -> frozenset[str]:
    """The values in ``environ`` that no log line may show: the connection string and its instrumentation key,
    and the values of the OTLP headers (they usually carry an API key)."""
    found: set[str] = set()
    connection_string = environ.get(_CONNECTION_STRING, "").strip()
    if connection_string:
        found.add(connection_string)
        for pair in connection_string.split(";"):
            key, _, value = pair.partition("=")
            if key.strip().lower() == "instrumentationkey" and value.strip():
                found.add(value.strip())
    for name in _OTLP_HEADERS:
        for pair in environ.get(name, "").split(","):
            _, _, value = pair.partition("=")
            # As set (URL-encoded, the OTLP spec's format) and as sent.
            found.update(text for text in (value.strip(), unquote(value.strip())) if len(text) >= 4)
    return frozenset(found)


def __getattr__(name: str) -> Any:
    # The class is public, but importing it imports OpenTelemetry: only when asked for.
    if name == "OpenTelemetryMetrics":
        from renewal.shells.telemetry._otel import OpenTelemetryMetrics

        return OpenTelemetryMetrics
    raise AttributeError(name)
