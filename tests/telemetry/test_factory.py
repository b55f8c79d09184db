"""Which metrics the settings make: none (and no OpenTelemetry import), Application Insights, OTLP or both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from renewal.errors import ConfigurationError
from renewal.shells.metrics import NoMetrics
from renewal.shells.telemetry import OpenTelemetryMetrics, configured_exporters, telemetry_secrets
from renewal.shells.telemetry._otel import credential_from_authentication_string
from tests.fakes.appinsights_ingestion import AppInsightsIngestion
from tests.fakes.otlp_receiver import OtlpReceiver
from tests.telemetry.conftest import BuildMetrics

ROOT = Path(__file__).resolve().parents[2]
IKEY = "0f4c1e2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
TELEMETRY_SETTINGS = (
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)

_CLEAN_IMPORT = """
import json, sys
import function_app
from renewal.shells.telemetry import metrics_from_environ
import os
metrics = metrics_from_environ(os.environ)
print(json.dumps({
    "metrics": type(metrics).__name__,
    "loaded": sorted(m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor", "google.protobuf"))),
}))
"""


def test_without_an_exporter_setting_nothing_is_measured_and_no_opentelemetry_module_is_imported() -> None:
    """In a fresh interpreter with neither setting, function_app and the factory load no OpenTelemetry module."""
    environ = {name: value for name, value in os.environ.items() if name not in TELEMETRY_SETTINGS}
    answer = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _CLEAN_IMPORT], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    assert result == {"metrics": "NoMetrics", "loaded": []}


def test_the_clean_import_check_sees_opentelemetry_when_it_is_configured(otlp: OtlpReceiver) -> None:
    """The same check with an OTLP endpoint set finds the SDK loaded (so the test above can fail)."""
    environ = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
    answer = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _CLEAN_IMPORT], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    assert result["metrics"] == "OpenTelemetryMetrics"
    assert "opentelemetry.sdk.metrics" in result["loaded"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ()),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}, ()),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={IKEY}"}, ("application_insights",)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, ("otlp",)),
        (
            {"APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={IKEY}", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"},
            ("application_insights", "otlp"),
        ),
    ],
)
def test_each_setting_selects_its_exporter(environ: dict[str, str], expected: tuple[str, ...]) -> None:
    """A blank setting selects nothing; the OTLP metrics endpoint alone is enough."""
    assert configured_exporters(environ) == expected


def test_no_setting_gives_no_metrics(build_metrics: BuildMetrics) -> None:
    """The default: NoMetrics, which accepts every call and measures nothing."""
    metrics = build_metrics({})
    assert isinstance(metrics, NoMetrics)
    metrics.flush()


def test_both_exporters_receive_the_same_measurements(
    otlp: OtlpReceiver, ingestion: AppInsightsIngestion, build_metrics: BuildMetrics
) -> None:
    """With both settings one flush reaches the collector and Application Insights."""
    metrics = build_metrics(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        }
    )
    assert isinstance(metrics, OpenTelemetryMetrics)
    metrics.dead_letter(endpoint="deployer", kind="topic")
    metrics.flush()
    assert [point.value for point in otlp.named("renewal_dead_letters_total")] == [1]
    assert [item.value for item in ingestion.named("renewal_dead_letters_total")] == [1]


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector.internal:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://collector.internal"}, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_HEADERS": "api-key"},
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_METRIC_EXPORT_INTERVAL": "-5"},
            "OTEL_METRIC_EXPORT_INTERVAL",
        ),
        (
            {"APPLICATIONINSIGHTS_CONNECTION_STRING": "IngestionEndpoint=https://x/"},
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
        ),
        (
            {
                "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={IKEY}",
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Basic",
            },
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        ),
    ],
)
def test_a_malformed_setting_is_a_configuration_error_that_names_it_and_not_its_value(
    environ: dict[str, str], setting: str, build_metrics: BuildMetrics
) -> None:
    """The error names the setting at fault; no value of any setting is in its message."""
    with pytest.raises(ConfigurationError) as raised:
        build_metrics(environ)
    assert raised.value.setting == setting
    assert all(value not in str(raised.value) for value in environ.values())


def test_the_authentication_string_picks_the_managed_identity_it_names() -> None:
    """ClientId=... (as infra/ sets it) is that user-assigned identity; Authorization=AAD alone is
    DefaultAzureCredential; no string is no credential (the connection string's key is used)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = "00000000-0000-0000-0000-000000000001"
    named = credential_from_authentication_string(
        {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={client_id};Authorization=AAD"}
    )
    assert isinstance(named, ManagedIdentityCredential)
    alone = credential_from_authentication_string({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD"})
    assert isinstance(alone, DefaultAzureCredential)
    assert credential_from_authentication_string({}) is None


def test_telemetry_secrets_name_the_key_the_connection_string_and_header_values() -> None:
    """What the log scrubber must hide: the instrumentation key, the whole connection string, OTLP header values."""
    connection_string = (
        f"InstrumentationKey={IKEY};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
    )
    secrets = telemetry_secrets(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string,
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr%20et-value,x-tenant=fleet-a",
        }
    )
    assert {IKEY, connection_string, "s3cr%20et-value", "s3cr et-value", "fleet-a"} <= secrets
    assert telemetry_secrets({}) == frozenset()
