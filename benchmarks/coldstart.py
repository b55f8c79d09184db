"""Cold start with and without metrics: what importing the app costs against ``import azure.functions``.

Each figure is the median wall time of a fresh interpreter (as ``benchmarks.renewal.cold_start`` measures), less
the bare interpreter's start, divided by the same for ``import azure.functions``: the floor every Python function
app pays. With metrics, the interpreter also builds the runtime's metrics as the first invocation does
(``metrics_from_environ``), with an exporter pointed at a receiver on loopback: OTLP/HTTP, then Application
Insights (its ingestion endpoint on loopback). Goal (issue 14): without metrics, at most 1.10x.

Run: ``.venv/bin/python -m benchmarks.coldstart [--runs N]`` (default 9 runs per figure, a few seconds each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.fakes.loopback import LoopbackServer, json_response

ROOT = Path(__file__).resolve().parents[1]
TELEMETRY_SETTINGS = (
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
# With deployment targets configured, the first invocation's runtime also loads the rollout flow and the target
# kinds; the first push then loads ARM's pipeline (azure-core, azure-mgmt-core).
# What every first invocation loads (the flow, the Key Vault SDK), and the same with the rollout's modules.
FIRST_INVOCATION = "import function_app, renewal.flow.entry, renewal.flow.renew, renewal.flow.sweep"
WITH_TARGETS = FIRST_INVOCATION + ", renewal.flow.rollout, renewal.flow.retire, renewal.targets"
WITH_TARGETS_PUSHED = WITH_TARGETS + ", azure.mgmt.core, azure.core.pipeline.policies"
WITH_METRICS = "import os, function_app\nfrom renewal.shells.telemetry import metrics_from_environ\n" + (
    "metrics_from_environ(os.environ)"
)


def _medians(variants: Mapping[str, tuple[str, Mapping[str, str]]], *, runs: int) -> dict[str, float]:
    """The median wall time of a fresh interpreter running each variant's statement in its environment.

    The variants take turns, round after round, so a load that comes and goes on the machine weighs on each alike.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, (statement, environ) in variants.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT, env=dict(environ))  # noqa: S603
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def cold_start(runs: int = 9) -> dict[str, float]:
    """The import costs and their ratios to ``import azure.functions``, without and with each exporter."""
    bare = {name: value for name, value in os.environ.items() if name not in TELEMETRY_SETTINGS}
    quiet = {
        **bare,
        "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    }
    accepted = {"itemsReceived": 0, "itemsAccepted": 0, "errors": []}
    with LoopbackServer() as otlp, LoopbackServer(lambda request: json_response(200, accepted)) as ingestion:
        connection_string = (
            f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={ingestion.url}/"
        )
        seconds = _medians(
            {
                "interpreter": ("pass", bare),
                "azure_functions": ("import azure.functions", bare),
                "function_app": ("import function_app", bare),
                "function_app_metrics_unset": (WITH_METRICS, bare),
                "function_app_otlp": (WITH_METRICS, {**quiet, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url}),
                "function_app_application_insights": (
                    WITH_METRICS,
                    {**quiet, "APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string},
                ),
                "first_invocation": (FIRST_INVOCATION, bare),
                "function_app_targets": (WITH_TARGETS, bare),
                "function_app_targets_pushed": (WITH_TARGETS_PUSHED, bare),
            },
            runs=runs,
        )
    baseline = seconds["interpreter"]
    floor = max(seconds["azure_functions"] - baseline, 1e-9)
    results = {f"{name}_s": value for name, value in seconds.items()}
    for name in (
        "function_app",
        "function_app_metrics_unset",
        "function_app_otlp",
        "function_app_application_insights",
        "first_invocation",
        "function_app_targets",
        "function_app_targets_pushed",
    ):
        results[f"ratio_{name}"] = (seconds[name] - baseline) / floor
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per figure (the median is kept)")
    args = parser.parse_args()
    results = cold_start(args.runs)
    print(f"import azure.functions: {1000 * (results['azure_functions_s'] - results['interpreter_s']):.0f} ms")
    for label, key in (
        ("without metrics", "ratio_function_app"),
        ("without metrics, factory called", "ratio_function_app_metrics_unset"),
        ("with OTLP/HTTP metrics built", "ratio_function_app_otlp"),
        ("with Application Insights metrics built", "ratio_function_app_application_insights"),
        ("first invocation's modules, no targets", "ratio_first_invocation"),
        ("first invocation's modules, deployment targets configured", "ratio_function_app_targets"),
        ("with deployment targets, after the first push (ARM pipeline loaded)", "ratio_function_app_targets_pushed"),
    ):
        print(f"function_app {label}: {results[key]:.2f}x import azure.functions")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
