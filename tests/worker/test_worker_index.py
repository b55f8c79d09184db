"""function_app.py as the Azure Functions Python worker (azure-functions-runtime, Python 3.13) loads it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.worker.host_protos import start_worker

pytestmark = pytest.mark.worker

APP_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def indexed() -> dict[str, object]:
    """Run the worker's init (which indexes the app) and metadata requests, as the host does at startup."""
    if sys.version_info[:2] != (3, 13):
        pytest.fail("the worker check runs on Python 3.13 (make pytest-py313 builds that environment)")
    metadata = start_worker(str(APP_DIR))
    return {fn.name: fn for fn in metadata.function_metadata_results}


def test_worker_indexes_the_event_grid_function(indexed: dict[str, object]) -> None:
    """The worker finds the Key Vault event function with an eventGridTrigger binding named `event`."""
    function = indexed["keyvault_certificate_events"]
    bindings = [json.loads(raw) for raw in function.raw_bindings]  # type: ignore[attr-defined]
    assert bindings == [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}]
    assert function.script_file.endswith("function_app.py")  # type: ignore[attr-defined]


def test_worker_indexes_only_the_expected_functions(indexed: dict[str, object]) -> None:
    """Indexing yields exactly the functions the app declares, nothing stray."""
    assert set(indexed) == {
        "keyvault_certificate_events",
        "renewal_sweep",
        "manual_renew",
        "renewal_status",
        "renewal_status_page",
        "renewal_work",
        "renewal_work_poisoned",
    }


def _bindings(function: object) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in function.raw_bindings]  # type: ignore[attr-defined]


def test_worker_indexes_the_sweep_on_its_configurable_schedule(indexed: dict[str, object]) -> None:
    """The sweep is a timer trigger whose schedule comes from the RENEWAL_SWEEP_SCHEDULE app setting."""
    [binding] = _bindings(indexed["renewal_sweep"])
    assert binding["type"] == "timerTrigger"
    assert binding["direction"] == "IN"
    assert binding["schedule"] == "%RENEWAL_SWEEP_SCHEDULE%"
    assert binding["runOnStartup"] is False


@pytest.mark.parametrize(
    ("name", "queue"),
    [("renewal_work", "%RENEWAL_WORK_QUEUE%"), ("renewal_work_poisoned", "%RENEWAL_WORK_QUEUE%-poison")],
)
def test_worker_indexes_the_queue_triggers_on_the_work_queue_and_its_poison_queue(
    indexed: dict[str, object], name: str, queue: str
) -> None:
    """The work and poison functions are queueTrigger bindings on the RENEWAL_WORK_QUEUE app setting (and the
    host's "-poison" twin), connected through AzureWebJobsStorage as the journal is, with no output."""
    assert _bindings(indexed[name]) == [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "message",
            "queueName": queue,
            "connection": "AzureWebJobsStorage",
        }
    ]


@pytest.mark.parametrize(
    ("name", "route", "methods"),
    [
        ("manual_renew", "renew/{vault}/{name}", ["POST"]),
        ("renewal_status", "status", ["GET"]),
        ("renewal_status_page", "status/page", ["GET"]),
    ],
)
def test_worker_indexes_http_triggers_behind_function_keys(
    indexed: dict[str, object], name: str, route: str, methods: list[str]
) -> None:
    """Manual renewal and status are HTTP triggers with function-level keys and an HTTP output."""
    trigger, output = _bindings(indexed[name])
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == route
    assert trigger["methods"] == methods
    assert (output["type"], output["direction"]) == ("http", "OUT")
