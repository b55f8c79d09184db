"""Fixtures for the metrics tests: the exporters' side channels off, and every OpenTelemetry provider shut down
while its receiver still listens (a provider left running exports once more at interpreter exit)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest

from renewal.shells.metrics import Metrics
from renewal.shells.telemetry import metrics_from_environ
from tests.fakes.appinsights_ingestion import AppInsightsIngestion
from tests.fakes.otlp_receiver import OtlpReceiver

SIDE_CHANNELS = (
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
)

BuildMetrics = Callable[..., Metrics]


@pytest.fixture(autouse=True)
def side_channels_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Azure Monitor exporter reads these from the process environment only; no test reaches Microsoft."""
    for name in SIDE_CHANNELS:
        monkeypatch.setenv(name, "true")


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP collector on loopback."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture
def ingestion() -> Iterator[AppInsightsIngestion]:
    """Application Insights' ingestion endpoint on loopback."""
    with AppInsightsIngestion() as fake:
        yield fake


@pytest.fixture
def build_metrics(otlp: OtlpReceiver, ingestion: AppInsightsIngestion) -> Iterator[BuildMetrics]:
    """``metrics_from_environ``, with every ``OpenTelemetryMetrics`` it built shut down at the test's end, while
    both receivers still listen."""
    built: list[Metrics] = []

    def build(environ: Mapping[str, str], **kwargs: object) -> Metrics:
        metrics = metrics_from_environ(environ, **kwargs)
        built.append(metrics)
        return metrics

    yield build
    for metrics in built:
        shutdown = getattr(metrics, "shutdown", None)
        if shutdown is not None:
            shutdown()
