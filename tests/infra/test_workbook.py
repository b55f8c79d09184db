"""The workbook and the metric alerts, read with pycep, checked against the metrics the app really emits.

Every metric name and dimension the KQL asks for must be one ``OpenTelemetryMetrics`` sends (driven here through
each ``Metrics`` call into an in-memory exporter), so a renamed metric or attribute cannot leave a dashboard or an
alert silently empty.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pycep  # checkov's own Bicep parser, pinned in requirements-dev.txt and requirements-worker.txt
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData

from renewal.outcome import Outcome
from renewal.shells.telemetry import OpenTelemetryMetrics

INFRA = Path(__file__).resolve().parents[2] / "infra"
_INTERPOLATION = re.compile(r"\$\{(\w+)\}")


@functools.cache
def template(relative: str) -> dict[str, Any]:
    return cast("dict[str, Any]", pycep.BicepParser().parse(file_path=INFRA / relative))


def variable(relative: str, name: str) -> Any:
    return template(relative)["variables"][name]["value"]


def kql(relative: str, name: str) -> str:
    """A query variable's text, with ``${other}`` interpolations of other variables resolved."""
    value = variable(relative, name)
    assert isinstance(value, str), f"{relative}: {name} is not a string"
    text = _INTERPOLATION.sub(lambda match: kql(relative, match.group(1)), value)
    return text.replace("\\n", "\n")


def workbook_items() -> dict[str, dict[str, Any]]:
    items = variable("app/workbook.bicep", "workbookContent")["items"]
    return {item["name"]: item for item in items}


def item_query(item: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A query item's own settings (the second argument of ``union(queryDefaults, {...})``) and its KQL."""
    function = item["content"]["function"]
    assert function["type"] == "union"
    assert function["parameters"]["arg_1"] == "queryDefaults"
    own = function["parameters"]["arg_2"]
    return own, kql("app/workbook.bicep", own["query"])


def alert_queries() -> dict[str, tuple[dict[str, Any], str]]:
    return {
        alert["kind"]: (alert, kql("app/alerts.bicep", alert["query"]))
        for alert in variable("app/alerts.bicep", "metricAlerts")
    }


class _Recorder(MetricExporter):
    """Keeps each exported metric's name and the attribute keys of its points."""

    def __init__(self) -> None:
        super().__init__()
        self.attributes: dict[str, set[str]] = {}

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    keys = self.attributes.setdefault(metric.name, set())
                    for point in metric.data.data_points:
                        keys.update(point.attributes or {})
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


@functools.cache
def emitted() -> dict[str, frozenset[str]]:
    """Every metric the app sends, with its attribute keys: each ``Metrics`` call made once."""
    recorder = _Recorder()
    metrics = OpenTelemetryMetrics({"memory": recorder}, export_interval_seconds=float("inf"))
    moment = datetime(2027, 1, 1, tzinfo=UTC)
    metrics.certificate_listed(
        vault="kv",
        certificate="c",
        ca_profile="p",
        adapter="a",
        expires_on=moment,
        not_before=moment,
        window_start=moment,
        ready=False,
    )
    outcome = Outcome("failed", "ca_rejected", "no", vault_name="kv", certificate_name="c", ca_profile="p")
    metrics.renewal_finished(outcome, duration_seconds=1.0, adapter="a")
    metrics.ca_request(ca_profile="p", adapter="a", result="issued")
    metrics.delivery(endpoint="e", kind="webhook", result="delivered")
    metrics.dead_letter(endpoint="e", kind="webhook")
    metrics.flush()
    metrics.shutdown()
    return {name: frozenset(keys) for name, keys in recorder.attributes.items()}


def queried_metrics(query: str) -> set[str]:
    return set(re.findall(r'"(renewal_[a-z_]+)"', query))


def queried_dimensions(query: str) -> set[str]:
    return set(re.findall(r"customDimensions\.(\w+)", query))


def assert_reads_what_the_app_emits(where: str, query: str) -> None:
    names = queried_metrics(query)
    assert names, f"{where} queries no renewal_ metric"
    assert "customMetrics" in query, where
    unknown = names - emitted().keys()
    assert not unknown, f"{where} queries metrics the app does not emit: {unknown}"
    offered = set().union(*(emitted()[name] for name in names))
    missing = queried_dimensions(query) - offered
    assert not missing, f"{where} reads dimensions none of {sorted(names)} has: {missing}"


def test_the_app_emits_the_metrics_docs_metrics_md_lists() -> None:
    """The inventory the other tests check against is complete: gauges, counters and the histogram."""
    assert set(emitted()) == {
        "renewal_certificate_expiration_timestamp_seconds",
        "renewal_certificate_renewal_timestamp_seconds",
        "renewal_certificate_not_before_timestamp_seconds",
        "renewal_certificate_ready_status",
        "renewal_renewals_total",
        "renewal_ca_requests_total",
        "renewal_deliveries_total",
        "renewal_dead_letters_total",
        "renewal_renewal_duration_seconds",
    }
    documented = (INFRA.parent / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in documented for name in emitted())


def test_the_workbook_is_a_shared_workbook_over_the_application_insights_component() -> None:
    """A GUID name stable per environment, the component as its source, its content serialized from one object."""
    resource = template("app/workbook.bicep")["resources"]["workbook"]
    assert resource["type"] == "Microsoft.Insights/workbooks"
    config = resource["config"]
    name = json.dumps(config["name"])
    assert config["name"]["function"]["type"] == "guid"
    assert "namePrefix" in name
    assert "applicationInsightsId" in name
    assert config["kind"] == "shared"
    properties = config["properties"]
    assert properties["sourceId"] == "applicationInsightsId"
    assert properties["category"] == "workbook"
    assert properties["serializedData"]["function"] == {
        "type": "string",
        "parameters": {"value_to_convert": "workbookContent"},
    }
    content = variable("app/workbook.bicep", "workbookContent")
    assert content["version"] == "Notebook/1.0"
    assert content["fallbackResourceIds"] == ["applicationInsightsId"]
    defaults = variable("app/workbook.bicep", "queryDefaults")
    assert defaults["resourceType"] == "microsoft.insights/components"
    assert defaults["timeContextFromParameter"] == "TimeRange"
    [parameters] = [item for item in workbook_items().values() if item["type"] == 9]
    assert [parameter["name"] for parameter in parameters["content"]["parameters"]] == ["TimeRange"]


def test_the_workbook_shows_the_expiry_timeline_outcomes_failures_by_reason_and_each_vault() -> None:
    """The four views the issue asks for, each over the metric and the split it names."""
    items = workbook_items()
    timeline, query = item_query(items["expiry-timeline"])
    assert timeline["visualization"] == "barchart"
    assert "renewal_certificate_expiration_timestamp_seconds" in queried_metrics(query)
    assert "by bin(expires_on, 7d), vault" in query
    outcomes, query = item_query(items["outcomes-over-time"])
    assert outcomes["visualization"] == "timechart"
    assert queried_metrics(query) == {"renewal_renewals_total"}
    assert "by status, bin(timestamp, {TimeRange:grain})" in query
    _, query = item_query(items["failures-by-reason"])
    assert 'tostring(customDimensions.status) == "failed"' in query
    assert "by reason" in query
    _, query = item_query(items["per-vault"])
    assert "by vault" in query
    assert {"renewal_renewals_total", "renewal_certificate_ready_status"} <= queried_metrics(query)


def test_every_workbook_query_reads_metrics_and_dimensions_the_app_emits() -> None:
    """No query of the workbook names a metric or a customDimensions key that the app does not send."""
    queries = [item for item in workbook_items().values() if item["type"] == 3]
    assert len(queries) >= 4
    for item in queries:
        _, query = item_query(item)
        assert_reads_what_the_app_emits(f"workbook item {item['name']}", query)


def test_the_alerts_read_the_metrics_split_by_their_dimensions() -> None:
    """Expiry at risk, failed renewals and dead letters: each a log alert over customMetrics with a measure and
    one alert per value of its dimensions."""
    alerts = alert_queries()
    assert set(alerts) == {"expiry-at-risk", "renewal-failed", "webhook-deadletter"}
    for kind, (alert, query) in alerts.items():
        assert_reads_what_the_app_emits(f"alert {kind}", query)
        assert re.search(rf"\b{alert['measure']} =", query), f"{kind}: the measure column is computed by the query"
        for dimension in alert["dimensions"]:
            assert dimension["values"] == ["*"], kind
            assert re.search(rf"\b{dimension['name']}\b", query.split("summarize")[-1]), f"{kind}: {dimension}"
    assert 'condition) == "False"' in alerts["expiry-at-risk"][1]
    assert "arg_max(timestamp, value)" in alerts["expiry-at-risk"][1]
    assert alerts["expiry-at-risk"][0]["autoMitigate"] is True
    [rule] = template("app/alerts.bicep")["resources"]["metricAlert"]["config"]["config"]["properties"]["criteria"][
        "allOf"
    ]
    assert rule["timeAggregation"] == "Total"
    assert (rule["operator"], rule["threshold"]) == ("GreaterThan", 0)


def test_the_expiry_alert_looks_back_over_two_sweeps() -> None:
    """The gauges are sent once per sweep: a window of one sweep could fall between two."""
    assert variable("app/alerts.bicep", "expiryWindow") == "PT${2 * sweepIntervalMinutes}M"
    parameters = template("app/alerts.bicep")["parameters"]
    assert parameters["sweepIntervalMinutes"]["default"] == 30
