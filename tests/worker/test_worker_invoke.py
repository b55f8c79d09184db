"""function_app.py indexed, loaded and invoked as the host drives the Python worker (azure-functions-runtime).

Indexing is the check the host performs at startup; the invocation sends a sample Key Vault event the way the
host does (a ``TypedData`` with the event as JSON text), so the worker's own converter builds the
``func.EventGridEvent`` and the app runs on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker.host_protos import HostProtos, request, start_worker, typed_json

pytestmark = pytest.mark.worker

APP_DIR = Path(__file__).resolve().parents[2]
EVENTS_DIR = APP_DIR / "tests" / "events"
EVENT_FUNCTION = "keyvault_certificate_events"

# The trigger of each function the app declares or plans (issue 6 / docs/architecture.md §3). A function that
# exists must match its entry; the exact bindings of the Event Grid one are pinned below.
TRIGGERS: dict[str, dict[str, object]] = {
    EVENT_FUNCTION: {"type": "eventGridTrigger", "name": "event"},
    "renewal_sweep": {"type": "timerTrigger", "schedule": "%RENEWAL_SWEEP_SCHEDULE%"},
    "manual_renew": {
        "type": "httpTrigger",
        "authLevel": "FUNCTION",
        "route": "renew/{vault}/{name}",
        "methods": ["POST"],
    },
    "renewal_status": {"type": "httpTrigger", "authLevel": "FUNCTION", "route": "status", "methods": ["GET"]},
    "renewal_status_page": {"type": "httpTrigger", "authLevel": "FUNCTION", "route": "status/page", "methods": ["GET"]},
    "renewal_work": {"type": "queueTrigger", "queueName": "%RENEWAL_WORK_QUEUE%", "connection": "AzureWebJobsStorage"},
    "renewal_work_poisoned": {
        "type": "queueTrigger",
        "queueName": "%RENEWAL_WORK_QUEUE%-poison",
        "connection": "AzureWebJobsStorage",
    },
}


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    """Worker init (which indexes the app) and the metadata request, as the host sends them at startup."""
    if sys.version_info[:2] != (3, 13):
        pytest.fail("the worker check runs on Python 3.13 (make pytest-py313 builds that environment)")
    metadata = start_worker(str(APP_DIR))
    return {fn.name: fn for fn in metadata.function_metadata_results}


def _bindings(function: Any) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in function.raw_bindings]


@pytest.fixture
def outcomes() -> Iterator[list[dict[str, Any]]]:
    """The ``renewal_outcome`` of every record logged on the ``renewal`` logger meanwhile."""
    captured: list[dict[str, Any]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            outcome = getattr(record, "renewal_outcome", None)
            if isinstance(outcome, dict):
                captured.append(outcome)

    handler = Capture(level=logging.DEBUG)
    logger = logging.getLogger("renewal")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def test_every_function_has_one_trigger_and_known_expectations(functions: dict[str, Any]) -> None:
    """Each indexed function is one the app plans, with exactly one trigger that matches its expectations."""
    assert EVENT_FUNCTION in functions
    assert set(functions) <= set(TRIGGERS), f"unexpected functions: {sorted(set(functions) - set(TRIGGERS))}"
    for name, function in functions.items():
        bindings = _bindings(function)
        triggers = [b for b in bindings if b["type"].endswith("Trigger")]
        assert len(triggers) == 1, (name, bindings)
        assert triggers[0]["direction"] == "IN", name
        for key, expected in TRIGGERS[name].items():
            assert triggers[0].get(key) == expected, (name, key, triggers[0])
        assert all(b["direction"] in {"IN", "OUT", "INOUT"} for b in bindings), (name, bindings)
        assert function.script_file.endswith("function_app.py"), name


def test_http_functions_return_their_response(functions: dict[str, Any]) -> None:
    """An HTTP-triggered function, where declared, answers through the `$return` http output binding."""
    for name, function in functions.items():
        bindings = _bindings(function)
        if any(b["type"] == "httpTrigger" for b in bindings):
            assert {"direction": "OUT", "type": "http", "name": "$return"} in bindings, (name, bindings)


def test_event_grid_function_bindings_are_exact(functions: dict[str, Any]) -> None:
    """The Key Vault event function has exactly one binding: the eventGridTrigger named `event` (no return)."""
    assert _bindings(functions[EVENT_FUNCTION]) == [{"direction": "IN", "type": "eventGridTrigger", "name": "event"}]


def test_event_grid_invocation_builds_the_event_and_runs_the_app(
    functions: dict[str, Any], outcomes: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A near-expiry event for a vault outside RENEWAL_VAULTS goes through load and invoke and is skipped."""
    # Event Grid posts an array; the host invokes the function once per element, with that element as JSON text.
    (event,) = json.loads((EVENTS_DIR / "near-expiry.eventgrid.json").read_text())
    response = _invoke_event_function(functions, monkeypatch, event, "3b8e1c2a-0000-4000-8000-000000000001")

    assert response.result.status == HostProtos.StatusResult.Success, response.result.exception
    assert response.output_data == []
    assert response.return_value is None
    assert [(o["status"], o["reason"], o["vault_name"]) for o in outcomes] == [
        ("skipped", "vault_not_allowed", "sample-kv")
    ]


def _invoke_event_function(
    functions: dict[str, Any], monkeypatch: pytest.MonkeyPatch, event: dict[str, Any], invocation_id: str
) -> Any:
    """Load the Key Vault event function in the worker and invoke it with ``event``, as the host would, for a vault
    outside RENEWAL_VAULTS (a skipped event never reaches the journal: nothing listens at its storage)."""
    import azure_functions_runtime as worker

    for setting in ("RENEWAL_CA_PROFILES", "RENEWAL_DEFAULT_CA_PROFILE", "RENEWAL_WEBHOOKS"):
        monkeypatch.delenv(setting, raising=False)
    monkeypatch.setenv("RENEWAL_VAULTS", "other-kv=https://other-kv.vault.azure.net")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    function_id = functions[EVENT_FUNCTION].function_id
    loaded = asyncio.run(
        worker.function_load_request(
            request(request=request(function_load_request=request(function_id=function_id, metadata=None)))
        )
    )
    assert loaded.result.status == HostProtos.StatusResult.Success
    invocation = request(
        invocation_id=invocation_id,
        function_id=function_id,
        input_data=[HostProtos.ParameterBinding(name="event", data=typed_json(event))],
        trigger_metadata={
            "data": typed_json(event["data"]),
            "sys": typed_json({"MethodName": EVENT_FUNCTION, "UtcNow": "2026-01-01T00:00:00Z"}),
        },
        trace_context=HostProtos.RpcTraceContext(trace_parent="", trace_state="", attributes={}),
        retry_context=HostProtos.RetryContext(retry_count=0, max_retry_count=0, exception=None),
    )
    return asyncio.run(worker.invocation_request(request(request=request(invocation_request=invocation))))


def _event_bodies() -> list[tuple[str, dict[str, Any]]]:
    bodies = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        body = json.loads(path.read_text())
        # Event Grid schema deliveries are arrays; the host invokes once per element. CloudEvents arrive one by one.
        for event in body if isinstance(body, list) else [body]:
            bodies.append((path.name, event))
    return bodies


@pytest.mark.parametrize(("sample", "event"), _event_bodies(), ids=[name for name, _ in _event_bodies()])
def test_event_grid_invocation_reads_both_schemas_through_the_worker_converter(
    functions: dict[str, Any],
    outcomes: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    sample: str,
    event: dict[str, Any],
) -> None:
    """Each sample (Event Grid schema and CloudEvents 1.0) goes through the worker's real Event Grid converter, and
    the app reads its vault and certificate: for a vault outside RENEWAL_VAULTS it ends as vault_not_allowed."""
    from azure.functions import meta

    # The object the worker's converter builds from this body: a func.CloudEvent when it carries specversion.
    converter = meta.get_binding_registry().get("eventGridTrigger")
    built = converter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
    assert type(built).__name__ == ("CloudEvent" if "specversion" in event else "EventGridEvent"), sample

    response = _invoke_event_function(functions, monkeypatch, event, "3b8e1c2a-0000-4000-8000-000000000002")

    assert response.result.status == HostProtos.StatusResult.Success, response.result.exception
    assert [(o["status"], o["reason"], o["vault_name"], o["certificate_name"]) for o in outcomes] == [
        ("skipped", "vault_not_allowed", "sample-kv", "newcert")
    ], sample


def _invoke_queue_function(functions: dict[str, Any], name: str, body: str, *, dequeue_count: int) -> Any:
    """Load ``name`` and invoke it with ``body`` as the host passes a queue message (``messageEncoding: none``:
    the text as written), with the trigger metadata the Storage extension sends."""
    import azure_functions_runtime as worker

    function_id = functions[name].function_id
    loaded = asyncio.run(
        worker.function_load_request(
            request(request=request(function_load_request=request(function_id=function_id, metadata=None)))
        )
    )
    assert loaded.result.status == HostProtos.StatusResult.Success
    invocation = request(
        invocation_id="3b8e1c2a-0000-4000-8000-000000000003",
        function_id=function_id,
        input_data=[HostProtos.ParameterBinding(name="message", data=HostProtos.TypedData(string=body))],
        trigger_metadata={
            "Id": HostProtos.TypedData(string="9d5f0c4e-1111-4222-8333-444455556666"),
            "DequeueCount": typed_json(dequeue_count),
            "InsertionTime": typed_json("2026-01-01T00:00:00+00:00"),
            "ExpirationTime": typed_json("2026-01-01T01:00:00+00:00"),
            "NextVisibleTime": typed_json("2026-01-01T00:00:30+00:00"),
            "PopReceipt": HostProtos.TypedData(string="AgAAAAMAAAAAAAAA"),
            "sys": typed_json({"MethodName": name, "UtcNow": "2026-01-01T00:00:00Z"}),
        },
        trace_context=HostProtos.RpcTraceContext(trace_parent="", trace_state="", attributes={}),
        retry_context=HostProtos.RetryContext(retry_count=0, max_retry_count=0, exception=None),
    )
    return asyncio.run(worker.invocation_request(request(request=request(invocation_request=invocation))))


def _outside_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in ("RENEWAL_CA_PROFILES", "RENEWAL_DEFAULT_CA_PROFILE", "RENEWAL_WEBHOOKS", "RENEWAL_SWEEP_FANOUT"):
        monkeypatch.delenv(setting, raising=False)
    monkeypatch.setenv("RENEWAL_VAULTS", "other-kv=https://other-kv.vault.azure.net")
    monkeypatch.setenv("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    monkeypatch.setenv("RENEWAL_WORK_QUEUE", "renewal-work")


def test_queue_invocation_reads_a_unit_of_work_through_the_worker_converter(
    functions: dict[str, Any], outcomes: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit of the sweep goes through the worker's queue converter into the app, which refuses the vault
    (not on the allow-list) before asking anything of anyone, and the invocation succeeds (no retry)."""
    _outside_vault(monkeypatch)
    body = json.dumps(
        {"kind": "renewal.sweep-vault", "version": 1, "vault": "sample-kv", "planned_at": "2026-01-01T00:00:00+00:00"}
    )
    response = _invoke_queue_function(functions, "renewal_work", body, dequeue_count=1)

    assert response.result.status == HostProtos.StatusResult.Success, response.result.exception
    assert response.return_value is None
    assert [(o["status"], o["reason"], o["vault_name"]) for o in outcomes] == [
        ("failed", "vault_not_allowed", "sample-kv")
    ]


def test_queue_invocation_reads_a_key_vault_event_event_grid_wrote(
    functions: dict[str, Any], outcomes: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Key Vault event as Event Grid's Storage-queue handler writes it (base64 of its JSON) reaches the same
    intake as the Event Grid trigger: for a vault outside RENEWAL_VAULTS, vault_not_allowed."""
    import base64

    _outside_vault(monkeypatch)
    (event,) = json.loads((EVENTS_DIR / "near-expiry.eventgrid.json").read_text())
    body = base64.b64encode(json.dumps(event).encode()).decode("ascii")
    response = _invoke_queue_function(functions, "renewal_work", body, dequeue_count=1)

    assert response.result.status == HostProtos.StatusResult.Success, response.result.exception
    assert [(o["status"], o["reason"], o["vault_name"]) for o in outcomes] == [
        ("skipped", "vault_not_allowed", "sample-kv")
    ]


def test_poison_invocation_announces_the_message_once(
    functions: dict[str, Any], outcomes: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message on the poison queue is announced as one failed outcome naming the vault, the poison queue and the
    message, and the invocation succeeds (a poison message is not retried again)."""
    _outside_vault(monkeypatch)
    body = json.dumps(
        {"kind": "renewal.sweep-vault", "version": 1, "vault": "sample-kv", "planned_at": "2026-01-01T00:00:00+00:00"}
    )
    response = _invoke_queue_function(functions, "renewal_work_poisoned", body, dequeue_count=1)

    assert response.result.status == HostProtos.StatusResult.Success, response.result.exception
    [outcome] = outcomes
    assert (outcome["status"], outcome["reason"], outcome["vault_name"]) == (
        "failed",
        "queue_message_poisoned",
        "sample-kv",
    )
    assert "renewal-work-poison" in outcome["message"]
    assert "9d5f0c4e" in outcome["message"]
