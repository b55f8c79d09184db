"""A real sweep over the Key Vault emulator with OpenTelemetry metrics: what it reports, and what it costs Key Vault.

The metrics are built by ``metrics_from_environ`` and injected into ``build_runtime`` as the runtime will do; the
sweep's own code (renewal/flow/sweep.py, renew.py, deliveries.py) calls them.
"""

from __future__ import annotations

import os

from renewal.flow.runtime import Runtime, build_runtime
from renewal.flow.sweep import sweep
from renewal.settings import Settings
from renewal.shells.metrics import Metrics, NoMetrics
from tests.fakes.otlp_receiver import OtlpReceiver
from tests.stack import VAULT, Stack, stack
from tests.telemetry.conftest import BuildMetrics

__all__ = ["stack"]  # the fixture, imported for this module's tests


def runtime_for(stack: Stack, metrics: Metrics) -> Runtime:
    return build_runtime(Settings.from_environ(os.environ), clock=stack.now, metrics=metrics)


def test_an_idle_sweep_reports_every_certificate_and_costs_key_vault_no_extra_request(
    stack: Stack, otlp: OtlpReceiver, build_metrics: BuildMetrics
) -> None:
    """The same sweep without and with metrics sends Key Vault the same requests (the goal: 0 extra), and the
    collector gets each listed certificate's expiry, not-before and window start from the listing."""
    young = stack.seed("young", days_old=10, days_left=200)
    stack.seed("unmanaged", days_old=10, days_left=200, tags={})
    sweep(runtime_for(stack, NoMetrics()))
    log = stack.emulator.request_log
    before = log.authenticated_requests(vault=VAULT)
    sweep(runtime_for(stack, NoMetrics()))
    without_metrics = log.authenticated_requests(vault=VAULT) - before

    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    before = log.authenticated_requests(vault=VAULT)
    sweep(runtime_for(stack, metrics))
    metrics.flush()
    with_metrics = log.authenticated_requests(vault=VAULT) - before

    assert with_metrics == without_metrics
    expiry = {
        point.attributes["certificate"]: point
        for point in otlp.named("renewal_certificate_expiration_timestamp_seconds")
    }
    assert set(expiry) == {"young", "unmanaged"}
    assert expiry["young"].value == young.not_valid_after_utc.timestamp()
    assert expiry["young"].attributes["ca_profile"] == "corp"
    assert expiry["unmanaged"].attributes["ca_profile"] == ""
    [not_before] = [
        point
        for point in otlp.named("renewal_certificate_not_before_timestamp_seconds")
        if point.attributes["certificate"] == "young"
    ]
    assert not_before.value == young.not_valid_before_utc.timestamp()
    window = {point.attributes["certificate"] for point in otlp.named("renewal_certificate_renewal_timestamp_seconds")}
    assert "young" in window
    ready = {
        point.attributes["certificate"]
        for point in otlp.named("renewal_certificate_ready_status")
        if point.attributes["condition"] == "True" and point.value == 1
    }
    assert ready == {"young", "unmanaged"}


def test_a_sweep_that_renews_counts_the_renewal_the_ca_request_and_the_webhook(
    stack: Stack, otlp: OtlpReceiver, build_metrics: BuildMetrics
) -> None:
    """A due certificate renewed by the sweep: renewed/renewed once, one CA request issued, the webhook delivered,
    and the renewal's duration in the histogram."""
    stack.seed("due", days_old=300, days_left=20)
    metrics = build_metrics({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint})
    report = sweep(runtime_for(stack, metrics))
    metrics.flush()
    assert [(outcome.certificate_name, outcome.status) for outcome in report.started] == [("due", "renewed")]
    [renewal] = otlp.named("renewal_renewals_total")
    assert (renewal.value, renewal.attributes["status"], renewal.attributes["reason"]) == (1, "renewed", "renewed")
    assert (renewal.attributes["certificate"], renewal.attributes["trigger"]) == ("due", "sweep")
    [request] = otlp.named("renewal_ca_requests_total")
    assert (request.value, request.attributes["result"], request.attributes["ca_profile"]) == (1, "issued", "corp")
    [delivery] = otlp.named("renewal_deliveries_total")
    assert (delivery.attributes["endpoint"], delivery.attributes["result"]) == ("sink", "delivered")
    [duration] = otlp.named("renewal_renewal_duration_seconds")
    assert duration.count == 1
    assert duration.value > 0
