"""Flush: large sweeps go out in bounded requests, and nothing an exporter does makes flush raise or leak."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from renewal.shells.telemetry import OpenTelemetryMetrics, metrics_from_environ
from tests.fakes.appinsights_ingestion import AppInsightsIngestion
from tests.fakes.otlp_receiver import OtlpReceiver

EXPIRES = datetime(2027, 3, 1, tzinfo=UTC)


def list_fleet(metrics: Any, certificates: int) -> None:
    for index in range(certificates):
        metrics.certificate_listed(
            vault=f"kv{index % 3}",
            certificate=f"cert-{index}",
            ca_profile="corp",
            adapter="vault_pki",
            expires_on=EXPIRES,
            not_before=EXPIRES,
            window_start=EXPIRES,
            ready=True,
        )


class RaisingExporter(MetricExporter):
    """An exporter whose export raises, with a secret in the exception's text."""

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        raise RuntimeError("POST https://collector.internal/?api-key=hunter2-secret failed")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


@pytest.fixture
def built() -> Iterator[list[OpenTelemetryMetrics]]:
    """Metrics a test builds by hand, shut down at its end."""
    made: list[OpenTelemetryMetrics] = []
    yield made
    for metrics in made:
        metrics.shutdown()


def test_a_large_sweep_is_sent_in_requests_of_bounded_size_and_every_point_arrives(
    otlp: OtlpReceiver, built: list[OpenTelemetryMetrics]
) -> None:
    """40 certificates (200 points) at 30 points per request: 7 requests, and each certificate's gauges once."""
    metrics = OpenTelemetryMetrics(
        {"otlp": OTLPMetricExporter(endpoint=f"{otlp.endpoint}/v1/metrics")},
        export_interval_seconds=float("inf"),
        max_points_per_export=30,
    )
    built.append(metrics)
    list_fleet(metrics, 40)
    metrics.flush()
    assert len(otlp.server.requests) == 7
    assert len(otlp.points) == 200
    expiries = otlp.named("renewal_certificate_expiration_timestamp_seconds")
    assert sorted(point.attributes["certificate"] for point in expiries) == sorted(f"cert-{i}" for i in range(40))


def test_application_insights_gets_a_large_sweep_whole_in_requests_of_5000_points(
    ingestion: AppInsightsIngestion,
) -> None:
    """1,100 certificates (5,500 points) reach ingestion in two requests, every envelope accepted."""
    metrics = metrics_from_environ({"APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string})
    assert isinstance(metrics, OpenTelemetryMetrics)
    try:
        list_fleet(metrics, 1100)
        metrics.flush()
    finally:
        metrics.shutdown()
    assert ingestion.batches == 2  # 5,500 points, at most 5,000 a request
    assert len(ingestion.metrics) == 5500


def test_an_exporter_that_raises_is_one_line_with_the_errors_type_only(
    built: list[OpenTelemetryMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    """Flush does not raise; the line names the exporter and the exception's type, never its text."""
    metrics = OpenTelemetryMetrics({"otlp": RaisingExporter()}, export_interval_seconds=float("inf"))
    built.append(metrics)
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    with caplog.at_level(logging.WARNING):
        metrics.flush()
    assert [record.getMessage() for record in caplog.records] == [
        "metrics export failed exporter=otlp points=1 cause=RuntimeError"
    ]
    assert metrics.failed_exports == {"otlp": 1}


def test_flush_after_shutdown_does_not_raise(built: list[OpenTelemetryMetrics]) -> None:
    """A runtime replaced while an invocation still holds the old metrics: its flush is a no-op, not an error."""
    metrics = OpenTelemetryMetrics({"otlp": RaisingExporter()}, export_interval_seconds=float("inf"))
    metrics.shutdown()
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
