"""The metrics through the real Azure Monitor exporter, as a fake of Application Insights' ingestion decodes them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from renewal.outcome import Outcome
from renewal.pure.redact import SecretScrubber
from renewal.shells.telemetry import telemetry_secrets
from tests.fakes.appinsights_ingestion import AppInsightsIngestion
from tests.fakes.est import LoopbackTls
from tests.fakes.loopback import LoopbackServer
from tests.telemetry.conftest import SIDE_CHANNELS, BuildMetrics

EXPIRES = datetime(2027, 3, 1, tzinfo=UTC)


def settings(ingestion: AppInsightsIngestion) -> dict[str, str]:
    return {"APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string}


def listed(metrics: object, certificate: str = "shop", *, ready: bool = True) -> None:
    metrics.certificate_listed(  # type: ignore[attr-defined]
        vault="kv-web",
        certificate=certificate,
        ca_profile="corp",
        adapter="vault_pki",
        expires_on=EXPIRES,
        not_before=None,
        window_start=None,
        ready=ready,
    )


@pytest.fixture
def restored_record_factory() -> Iterator[None]:
    """Tests that install the log scrubber put the previous record factory back."""
    previous = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(previous)


def test_metrics_arrive_as_custom_metrics_with_their_attributes_as_dimensions(
    ingestion: AppInsightsIngestion, build_metrics: BuildMetrics
) -> None:
    """Each point is one Metric envelope under the connection string's key; attributes become its properties."""
    metrics = build_metrics(settings(ingestion))
    listed(metrics)
    metrics.ca_request(ca_profile="corp", adapter="vault_pki", result="issued")
    metrics.flush()
    [expiry] = ingestion.named("renewal_certificate_expiration_timestamp_seconds")
    assert expiry.value == EXPIRES.timestamp()
    assert expiry.properties == {"vault": "kv-web", "certificate": "shop", "ca_profile": "corp", "adapter": "vault_pki"}
    assert expiry.ikey == ingestion.instrumentation_key
    [request] = ingestion.named("renewal_ca_requests_total")
    assert (request.value, request.properties) == (
        1,
        {"ca_profile": "corp", "adapter": "vault_pki", "result": "issued"},
    )
    ready = {item.properties["condition"]: item.value for item in ingestion.named("renewal_certificate_ready_status")}
    assert ready == {"True": 1, "False": 0}
    assert {envelope["tags"]["ai.cloud.role"] for envelope in ingestion.envelopes} == {"renewal"}


def test_counters_are_sent_as_deltas_and_gauges_only_when_the_sweep_sets_them(
    ingestion: AppInsightsIngestion, build_metrics: BuildMetrics
) -> None:
    """A second flush sends only the new count (1, not 2), and no gauge row the sweep did not refresh."""
    metrics = build_metrics(settings(ingestion))
    listed(metrics)
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    assert [item.value for item in ingestion.named("renewal_dead_letters_total")] == [1, 1]
    assert len(ingestion.named("renewal_certificate_expiration_timestamp_seconds")) == 1
    listed(metrics)
    metrics.flush()
    assert len(ingestion.named("renewal_certificate_expiration_timestamp_seconds")) == 2


def test_a_flush_with_nothing_new_sends_nothing(ingestion: AppInsightsIngestion, build_metrics: BuildMetrics) -> None:
    """No measurement since the last export: no request, so an idle invocation costs no ingestion."""
    metrics = build_metrics(settings(ingestion))
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    metrics.flush()
    assert ingestion.batches == 1


def test_the_duration_histogram_sends_sum_count_min_and_max(
    ingestion: AppInsightsIngestion, build_metrics: BuildMetrics
) -> None:
    """Application Insights keeps a histogram as one row: value is the sum, with count, min and max."""
    metrics = build_metrics(settings(ingestion))
    renewed = Outcome("renewed", "renewed", "done", vault_name="kv-web", certificate_name="shop", ca_profile="corp")
    for seconds in (0.5, 2.0, 4.5):
        metrics.renewal_finished(renewed, duration_seconds=seconds, adapter="vault_pki")
    metrics.flush()
    [duration] = ingestion.named("renewal_renewal_duration_seconds")
    assert (duration.value, duration.count, duration.min, duration.max) == (7.0, 3, 0.5, 4.5)
    [renewals] = ingestion.named("renewal_renewals_total")
    assert renewals.value == 3
    assert (renewals.properties["status"], renewals.properties["reason"]) == ("renewed", "renewed")


def test_items_the_service_refuses_are_logged_without_the_instrumentation_key(
    ingestion: AppInsightsIngestion,
    build_metrics: BuildMetrics,
    caplog: pytest.LogCaptureFixture,
    restored_record_factory: None,
) -> None:
    """A 206 refusing every item: the exporter logs each envelope, and the scrubber fed telemetry_secrets hides
    the key; the app adds one line naming the exporter; flush does not raise."""
    environ = settings(ingestion)
    SecretScrubber.install(telemetry_secrets(environ))
    metrics = build_metrics(environ)
    ingestion.reject_next(400)
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    with caplog.at_level(logging.INFO):
        metrics.flush()
    messages = [record.getMessage() for record in caplog.records]
    assert any("Data drop 400" in message for message in messages), messages
    assert all(ingestion.instrumentation_key not in message for message in messages)
    assert all(ingestion.connection_string not in message for message in messages)
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("renewal")]
    assert ours == [
        "metrics export failed exporter=application_insights points=1 cause=the exporter reported a failure"
    ]


def test_a_throttled_batch_is_dropped_with_one_line_and_the_next_flush_is_accepted(
    ingestion: AppInsightsIngestion, build_metrics: BuildMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    """429 with Retry-After: not waited for inside the invocation (no offline storage either), logged once, never
    raised; 500 likewise."""
    metrics = build_metrics(settings(ingestion))
    ingestion.fail_next(429, retry_after=30)
    ingestion.fail_next(500)
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="renewal"):
        metrics.flush()
        metrics.dead_letter(endpoint="deployer", kind="webhook")
        metrics.flush()
    assert time.monotonic() - started < 5
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    assert [item.value for item in ingestion.named("renewal_dead_letters_total")] == [1]
    assert metrics.failed_exports == {"application_insights": 2}  # type: ignore[attr-defined]
    ours = [record for record in caplog.records if record.name.startswith("renewal")]
    assert len(ours) == 2
    assert len(ingestion.server.requests) == 3


def test_identity_based_ingestion_sends_the_credentials_bearer_token_over_https(
    tmp_path: Path, build_metrics: BuildMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Authorization=AAD (as infra/ sets it) the exporter asks the credential for Azure Monitor's scope and
    presents the token; the resource refuses batches without it (local authentication is disabled)."""
    tls = LoopbackTls.create(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    credential = RecordingCredential("eyJhbGciOi.fake-monitor-token")
    with AppInsightsIngestion(token=credential.token, tls=tls.server_context(client_certificates="none")) as fake:
        metrics = build_metrics(
            {
                "APPLICATIONINSIGHTS_CONNECTION_STRING": fake.connection_string,
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD",
            },
            credential=credential,
        )
        metrics.dead_letter(endpoint="deployer", kind="webhook")
        metrics.flush()
        assert [item.value for item in fake.named("renewal_dead_letters_total")] == [1]
        assert credential.scopes == [("https://monitor.azure.com//.default",)]
        metrics.shutdown()  # type: ignore[attr-defined]


def test_the_exporters_calls_to_microsoft_are_off_and_nothing_but_ingestion_is_reached(
    ingestion: AppInsightsIngestion, build_metrics: BuildMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control plane, statsbeat and SDK stats default to disabled when the settings do not name them; any other
    HTTP(S) request than the ingestion fake's would go through the recording proxy, and none does."""
    for name in SIDE_CHANNELS:
        monkeypatch.delenv(name, raising=False)
    with LoopbackServer() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        metrics = build_metrics(settings(ingestion))
        assert {name: os.environ.get(name) for name in SIDE_CHANNELS} == dict.fromkeys(SIDE_CHANNELS, "true")
        metrics.dead_letter(endpoint="deployer", kind="webhook")
        metrics.flush()
        assert ingestion.batches == 1
        assert proxy.connections == 0


class RecordingCredential:
    """A TokenCredential that hands out one token and records the scopes asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> object:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(self.token, 4_102_444_800)
