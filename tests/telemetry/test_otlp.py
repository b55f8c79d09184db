"""The metrics through the real OTLP/HTTP exporter, as a collector on loopback decodes them (opentelemetry-proto)."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime

import pytest

from renewal.outcome import Outcome, Reason
from tests.fakes.otlp_receiver import OtlpReceiver
from tests.telemetry.conftest import BuildMetrics

EXPIRES = datetime(2027, 3, 1, tzinfo=UTC)
WINDOW = datetime(2027, 1, 1, tzinfo=UTC)
NOT_BEFORE = datetime(2026, 9, 1, tzinfo=UTC)
CERTIFICATE = {"vault": "kv-web", "certificate": "shop", "ca_profile": "corp", "adapter": "vault_pki"}


def listed(metrics: object, **overrides: object) -> None:
    arguments: dict[str, object] = {
        **CERTIFICATE,
        "expires_on": EXPIRES,
        "not_before": NOT_BEFORE,
        "window_start": WINDOW,
        "ready": True,
        **overrides,
    }
    metrics.certificate_listed(**arguments)  # type: ignore[attr-defined]


def failed(reason: str, *, retryable: bool = False, certificate: str = "shop") -> Outcome:
    return Outcome(
        "failed",
        reason,
        "the CA said no",
        vault_name="kv-web",
        certificate_name=certificate,
        ca_profile="corp",
        trigger="sweep",
        retryable=retryable,
    )


def test_certificate_gauges_reach_the_collector_as_seconds_since_the_epoch(
    otlp: OtlpReceiver, build_metrics: BuildMetrics
) -> None:
    """Expiry, window start and not-before arrive as gauges in seconds, with vault, certificate, profile, adapter."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    listed(metrics)
    metrics.flush()
    for name, moment in (
        ("renewal_certificate_expiration_timestamp_seconds", EXPIRES),
        ("renewal_certificate_renewal_timestamp_seconds", WINDOW),
        ("renewal_certificate_not_before_timestamp_seconds", NOT_BEFORE),
    ):
        [point] = otlp.named(name)
        assert (point.kind, point.unit, point.value) == ("gauge", "s", moment.timestamp()), name
        assert point.attributes == CERTIFICATE, name
    assert otlp.resources[0]["service.name"] == "renewal"


def test_ready_status_is_one_series_per_condition_as_cert_manager_exports_it(
    otlp: OtlpReceiver, build_metrics: BuildMetrics
) -> None:
    """A ready certificate has condition=True at 1 and condition=False at 0; one at risk the other way round."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    listed(metrics)
    listed(metrics, certificate="api", ready=False)
    metrics.flush()
    status = {
        (point.attributes["certificate"], point.attributes["condition"]): point.value
        for point in otlp.named("renewal_certificate_ready_status")
    }
    assert status == {("shop", "True"): 1, ("shop", "False"): 0, ("api", "True"): 0, ("api", "False"): 1}


def test_a_timestamp_the_listing_did_not_know_is_left_out(otlp: OtlpReceiver, build_metrics: BuildMetrics) -> None:
    """A certificate without a window start (not managed) gets no renewal gauge, and no zero either."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    listed(metrics, window_start=None, ca_profile=None, adapter=None)
    metrics.flush()
    assert otlp.named("renewal_certificate_renewal_timestamp_seconds") == []
    [expiry] = otlp.named("renewal_certificate_expiration_timestamp_seconds")
    assert expiry.attributes == {**CERTIFICATE, "ca_profile": "", "adapter": ""}


def test_renewals_are_counted_by_status_and_closed_reason(otlp: OtlpReceiver, build_metrics: BuildMetrics) -> None:
    """Two failures with the same reason add up in one monotonic series that also names the certificate."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    for _ in range(2):
        metrics.renewal_finished(failed("ca_rejected"), duration_seconds=None, adapter="vault_pki")
    metrics.flush()
    [point] = otlp.named("renewal_renewals_total")
    assert (point.kind, point.monotonic, point.value, point.unit) == ("sum", True, 2, "{renewal}")
    assert point.attributes == {
        "vault": "kv-web",
        "certificate": "shop",
        "ca_profile": "corp",
        "adapter": "vault_pki",
        "status": "failed",
        "reason": "ca_rejected",
        "trigger": "sweep",
    }


def test_renewal_durations_fall_into_buckets_sized_for_seconds(otlp: OtlpReceiver, build_metrics: BuildMetrics) -> None:
    """A 0.3 s and a 40 s renewal land in different buckets of one histogram, in seconds; no duration, no record."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    renewed = Outcome("renewed", "renewed", "done", vault_name="kv-web", certificate_name="shop", ca_profile="corp")
    metrics.renewal_finished(renewed, duration_seconds=0.3, adapter="vault_pki")
    metrics.renewal_finished(renewed, duration_seconds=40.0, adapter="vault_pki")
    metrics.renewal_finished(renewed, duration_seconds=None, adapter="vault_pki")
    metrics.flush()
    [histogram] = otlp.named("renewal_renewal_duration_seconds")
    assert (histogram.unit, histogram.count) == ("s", 2)
    assert histogram.value == pytest.approx(40.3)
    assert histogram.bounds[:4] == (0.1, 0.25, 0.5, 1.0)
    assert histogram.bucket_counts[histogram.bounds.index(0.5)] == 1  # (0.25, 0.5]
    assert histogram.bucket_counts[histogram.bounds.index(60.0)] == 1  # (30, 60]
    assert histogram.attributes == {
        "vault": "kv-web",
        "ca_profile": "corp",
        "adapter": "vault_pki",
        "status": "renewed",
    }


def test_ca_requests_deliveries_and_dead_letters_are_counted(otlp: OtlpReceiver, build_metrics: BuildMetrics) -> None:
    """Each counter carries its own attributes: profile/adapter/result, endpoint/kind/result, endpoint/kind."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    metrics.ca_request(ca_profile="corp", adapter="vault_pki", result="issued")
    metrics.ca_request(ca_profile="corp", adapter="vault_pki", result="pending")
    metrics.ca_request(ca_profile="corp", adapter="vault_pki", result="pending")
    metrics.delivery(endpoint="deployer", kind="webhook", result="failed")
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    requests = {point.attributes["result"]: point.value for point in otlp.named("renewal_ca_requests_total")}
    assert requests == {"issued": 1, "pending": 2}
    assert {point.attributes["adapter"] for point in otlp.named("renewal_ca_requests_total")} == {"vault_pki"}
    [delivery] = otlp.named("renewal_deliveries_total")
    assert (delivery.attributes, delivery.value) == ({"endpoint": "deployer", "kind": "webhook", "result": "failed"}, 1)
    [dead] = otlp.named("renewal_dead_letters_total")
    assert (dead.attributes, dead.value, dead.monotonic) == ({"endpoint": "deployer", "kind": "webhook"}, 1, True)


def test_free_text_never_becomes_an_attribute_value(otlp: OtlpReceiver, build_metrics: BuildMetrics) -> None:
    """Reasons, CA results and delivery kinds stay in closed sets, whatever text reaches the metrics."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    for index, text in enumerate(("HTTP 502 from ca.internal at 10:42", "vault_sealed_7f3a", "acme_timeout")):
        metrics.renewal_finished(failed(text, retryable=index % 2 == 0), duration_seconds=1.0, adapter="acme")
        metrics.ca_request(ca_profile="corp", adapter="acme", result=text)
        metrics.delivery(endpoint="deployer", kind=f"webhook {text}", result=text)
        metrics.dead_letter(endpoint="deployer", kind=text)
    metrics.flush()
    reasons = {point.attributes["reason"] for point in otlp.named("renewal_renewals_total")}
    assert reasons == {"transient_error", "ca_rejected", "ca_unavailable"}
    assert reasons <= set(Reason)
    ca_results = {point.attributes["result"] for point in otlp.named("renewal_ca_requests_total")}
    # "acme_timeout" is a known family; the others cannot be placed without their retryability.
    assert ca_results == {"other", "ca_unavailable"}
    deliveries = otlp.named("renewal_deliveries_total") + otlp.named("renewal_dead_letters_total")
    assert {point.attributes["kind"] for point in deliveries} == {"other"}
    assert {point.attributes.get("result", "other") for point in deliveries} == {"other"}


def test_the_endpoint_headers_and_timeout_come_from_the_settings_given(
    otlp: OtlpReceiver, build_metrics: BuildMetrics
) -> None:
    """The metrics endpoint wins over the base endpoint, and the metrics headers (URL-decoded) are sent."""
    with OtlpReceiver() as other:
        metrics = build_metrics(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": other.endpoint,
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{otlp.endpoint}/v1/metrics",
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=s3cr%20et,X-Tenant=fleet",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
            }
        )
        metrics.dead_letter(endpoint="deployer", kind="webhook")
        metrics.flush()
        assert other.server.requests == []
    [request] = otlp.server.requests
    assert request.headers["api-key"] == "s3cr et"
    assert request.headers["x-tenant"] == "fleet"
    assert request.headers["content-type"] == "application/x-protobuf"


def test_gzip_compression_is_honoured(otlp: OtlpReceiver, build_metrics: BuildMetrics) -> None:
    """With OTEL_EXPORTER_OTLP_COMPRESSION=gzip the body is gzip'd and still decodes."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    [request] = otlp.server.requests
    assert request.headers["content-encoding"] == "gzip"
    assert [point.value for point in otlp.named("renewal_dead_letters_total")] == [1]


def test_a_collector_that_answers_503_once_gets_the_batch_on_the_exporters_retry(
    otlp: OtlpReceiver, build_metrics: BuildMetrics
) -> None:
    """503 is retryable (OTLP/HTTP spec): the same flush sends again and the point arrives once."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": "5"})
    otlp.fail_next(503, retry_after=0)
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    assert len(otlp.server.requests) == 2
    assert [point.value for point in otlp.named("renewal_dead_letters_total")] == [1]
    assert metrics.failed_exports == {"otlp": 0}  # type: ignore[attr-defined]


def test_a_refused_export_is_one_log_line_naming_the_exporter_and_flush_does_not_raise(
    otlp: OtlpReceiver, build_metrics: BuildMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 (not retryable) is dropped; the app's line names the exporter, not the endpoint or the headers."""
    metrics = build_metrics(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k3y-value-123"}
    )
    otlp.fail_next(400)
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    with caplog.at_level(logging.WARNING, logger="renewal"):
        metrics.flush()
    [line] = [record.getMessage() for record in caplog.records if record.name.startswith("renewal")]
    assert line == "metrics export failed exporter=otlp points=1 cause=the exporter reported a failure"
    assert all("k3y-value-123" not in record.getMessage() for record in caplog.records)
    assert metrics.failed_exports == {"otlp": 1}  # type: ignore[attr-defined]


def test_an_unreachable_collector_costs_the_flush_at_most_its_timeout(build_metrics: BuildMetrics) -> None:
    """Nothing listens on the port: flush returns within the configured timeout, without raising."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    metrics = build_metrics(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port}", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    )
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    started = time.monotonic()
    metrics.flush()
    assert time.monotonic() - started < 3
    assert metrics.failed_exports == {"otlp": 1}  # type: ignore[attr-defined]


def test_counters_are_cumulative_for_otlp_so_a_lost_export_loses_no_count(
    otlp: OtlpReceiver, build_metrics: BuildMetrics
) -> None:
    """After a refused export the next one carries the running total (the SDK's default temporality for OTLP)."""
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    otlp.fail_next(400)
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    metrics.dead_letter(endpoint="deployer", kind="webhook")
    metrics.flush()
    [point] = otlp.named("renewal_dead_letters_total")
    assert (point.value, point.temporality) == (2, 2)  # AGGREGATION_TEMPORALITY_CUMULATIVE
