"""Entry points that ``function_app.py`` wires to triggers; nothing here knows about bindings beyond their values."""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from renewal.errors import PermanentError, RenewalError, RetryableError
from renewal.flow.deliveries import queue_failure
from renewal.flow.fanout import FanoutOptions, KeyVaultEvents, PlanReport, VaultWork, plan_sweep, read_message
from renewal.flow.renew import outcome_for_ignored, renew
from renewal.flow.report import status_report
from renewal.flow.runtime import Runtime, build_runtime
from renewal.flow.sweep import SweepReport, sweep, sweep_vault
from renewal.outcome import Outcome, Reason, log_outcome
from renewal.pure.intake import OBJECT_NAME, Ignored, on_demand_request, parse_event
from renewal.settings import VAULT_NAME, Settings
from renewal.shells.queue import MessageQueue, StorageQueue, queue_client_from_environ

# The app settings a work queue client depends on; the client is rebuilt only when one of them changes.
_QUEUE_SETTINGS = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__clientId",
)

__all__ = [
    "current_runtime",
    "event_grid_envelope",
    "handle_event",
    "handle_event_grid_event",
    "handle_poisoned_queue_message",
    "handle_queue_message",
    "renew_now",
    "run_sweep",
    "status",
    "work_queue",
]

logger = logging.getLogger("renewal")

_runtime_lock = threading.Lock()
_runtime: Runtime | None = None
_queues: dict[tuple[str, ...], MessageQueue] = {}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _flushed(entry: Callable[_P, _R]) -> Callable[_P, _R]:
    """Export the invocation's measurements before it returns: Functions instances are short-lived, and what a
    periodic reader would export later may never be exported."""

    @functools.wraps(entry)
    def invoked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return entry(*args, **kwargs)
        finally:
            runtime = kwargs.get("runtime") or _runtime
            if isinstance(runtime, Runtime):
                runtime.metrics.flush()

    return invoked


def current_runtime(environ: Mapping[str, str] | None = None) -> Runtime:
    """Return the runtime for the current app settings, building it once and again only when they change.

    Raises:
        ConfigurationError: a setting is missing or malformed (the message names it).
    """
    global _runtime
    # Reading the settings is cheap; building the runtime is not (one SDK client per vault, adapters, sessions).
    # A host that reloads its app settings (Core Tools, a local host) gets a new runtime when, and only when,
    # something the app reads has changed: settings compare equal exactly then.
    settings = Settings.from_environ(dict(os.environ if environ is None else environ))
    with _runtime_lock:
        if _runtime is None or _runtime.settings != settings:
            previous, _runtime = _runtime, build_runtime(settings)
            shutdown = getattr(previous.metrics, "shutdown", None) if previous is not None else None
            if callable(shutdown):
                shutdown()
        return _runtime


def event_grid_envelope(event: Any) -> dict[str, object]:
    """Turn the event the Event Grid trigger hands the function into the dict form ``parse_event`` reads.

    The worker's converter (azure-functions 1.x and 2.x) gives a ``func.CloudEvent`` when the delivered body carries
    ``specversion`` (a subscription in the CloudEvents 1.0 schema) and a ``func.EventGridEvent`` otherwise; each
    becomes its own schema's dict (``specversion``/``type``/``source``/``time``, or
    ``eventType``/``topic``/``eventTime``).
    """
    try:
        data = event.get_json()
    except (ValueError, TypeError, RecursionError):
        # Unreadable data is intake's to report, as a malformed event.
        data = None

    def timestamp(value: object) -> object:
        return value.isoformat() if hasattr(value, "isoformat") else value

    specversion = getattr(event, "specversion", None)
    if specversion is not None:
        return {
            "specversion": specversion,
            "id": getattr(event, "id", None),
            "source": getattr(event, "source", None),
            "subject": getattr(event, "subject", None),
            "type": getattr(event, "type", None),
            "time": timestamp(getattr(event, "time", None)),
            "data": data,
        }
    return {
        "id": getattr(event, "id", None),
        "topic": getattr(event, "topic", None),
        "subject": getattr(event, "subject", None),
        "eventType": getattr(event, "event_type", None),
        "eventTime": timestamp(getattr(event, "event_time", None)),
        "dataVersion": getattr(event, "data_version", None),
        "data": data,
    }


def handle_event(envelope: Mapping[str, object], runtime: Runtime | None = None) -> Outcome:
    """Run the renewal an Event Grid or CloudEvents event asks for, and return its outcome.

    Raises:
        RetryableError: a transient failure, after its outcome is recorded (a redelivery may help).
    """
    try:
        runtime = runtime or current_runtime()
        parsed = parse_event(envelope, vaults=runtime.settings.vaults)
    except RenewalError as exc:
        outcome = Outcome(status="failed", reason=exc.reason, message=exc.message, event_id=_event_id(envelope))
        log_outcome(outcome, logger)
        return outcome
    if isinstance(parsed, Ignored):
        return outcome_for_ignored(parsed)
    return renew(parsed, runtime)


@_flushed
def handle_event_grid_event(event: Any) -> Outcome:
    """Handle one event from the Event Grid trigger: a ``func.EventGridEvent``, or the ``func.CloudEvent`` the
    worker builds for a subscription in the CloudEvents 1.0 schema."""
    return handle_event(event_grid_envelope(event))


@_flushed
def run_sweep(
    environ: Mapping[str, str] | None = None,
    *,
    runtime: Runtime | None = None,
    queue: MessageQueue | None = None,
) -> SweepReport | PlanReport | None:
    """Run the timer sweep with the current settings: every vault here, or, with ``RENEWAL_SWEEP_FANOUT=queue``,
    one unit of work per vault onto the work queue. A configuration problem is logged, not raised.

    Raises:
        RetryableError: the journal is unreachable (the next run tries again).
    """
    settings = dict(os.environ if environ is None else environ)
    try:
        runtime = runtime or current_runtime(settings)
        options = FanoutOptions.from_environ(settings)
        if options.enabled:
            queue = queue or work_queue(settings, options)
    except RenewalError as exc:
        log_outcome(Outcome(status="failed", reason=exc.reason, message=exc.message, trigger="sweep"), logger)
        return None
    if queue is not None and options.enabled:
        return plan_sweep(runtime, queue)
    return sweep(runtime)


def work_queue(environ: Mapping[str, str], options: FanoutOptions) -> MessageQueue:
    """The work queue the planner sends to, built once per storage configuration.

    Raises:
        ConfigurationError: no storage is configured, or its connection string is malformed.
    """
    key = (options.queue_name, *(environ.get(name, "") for name in _QUEUE_SETTINGS))
    with _runtime_lock:
        queue = _queues.get(key)
        if queue is None:
            queue = _queues[key] = StorageQueue(queue_client_from_environ(environ, options.queue_name))
        return queue


@_flushed
def handle_queue_message(message: Any, *, runtime: Runtime | None = None) -> SweepReport | list[Outcome]:
    """Do what one work-queue message asks (a ``func.QueueMessage``, or its body): sweep a vault, or renew on the
    Key Vault events Event Grid wrote. A message that cannot be read, or names a vault off the allow-list, ends as
    one failed outcome and is not retried.

    Raises:
        RetryableError: a transient failure (after its outcome is recorded): the host makes the message visible
            again after ``visibilityTimeout``, and moves it to the poison queue after ``maxDequeueCount``.
    """
    body, message_id = _queue_message_parts(message)
    try:
        runtime = runtime or current_runtime()
        parsed = read_message(body)
    except RenewalError as exc:
        outcome = Outcome(
            status="failed", reason=exc.reason, message=_with_id(exc.message, message_id), event_id=message_id
        )
        log_outcome(outcome, logger)
        return [outcome]
    if isinstance(parsed, KeyVaultEvents):
        return [handle_event(envelope, runtime) for envelope in parsed.envelopes]
    try:
        return sweep_vault(runtime, parsed.vault_name)
    except PermanentError as exc:
        outcome = Outcome(
            status="failed",
            reason=exc.reason,
            message=_with_id(exc.message, message_id),
            vault_name=parsed.vault_name,
            trigger="sweep",
        )
        log_outcome(outcome, logger)
        return [outcome]


@_flushed
def handle_poisoned_queue_message(
    message: Any, *, runtime: Runtime | None = None, environ: Mapping[str, str] | None = None
) -> Outcome:
    """Announce a message the host gave up on (moved to ``<queue>-poison`` after ``maxDequeueCount`` failed
    attempts): one failed outcome, logged once, and queued for the outcome topic when it names a certificate.
    Never raises: a poison message is not retried again."""
    body, message_id = _queue_message_parts(message)
    settings = dict(os.environ if environ is None else environ)
    try:
        queue_name = FanoutOptions.from_environ(settings).poison_queue_name
    except RenewalError:
        queue_name = "the poison queue"
    try:
        runtime = runtime or current_runtime(settings)
    except RenewalError:
        runtime = None
    vault_name, certificate_name, event_id, what = _poisoned(body, runtime)
    # The host copies a poison message to a new one: its dequeue count is the poison queue's, not the attempts.
    outcome = Outcome(
        status="failed",
        reason=Reason.QUEUE_MESSAGE_POISONED,
        message=_with_id(
            f"{what} kept failing (host.json's maxDequeueCount attempts) and the Functions host moved it to "
            f"{queue_name}; it will not be retried",
            message_id,
        ),
        vault_name=vault_name,
        certificate_name=certificate_name,
        event_id=event_id,
        trigger="event_grid" if certificate_name else "sweep",
    )
    log_outcome(outcome, logger)
    if runtime is not None and vault_name and certificate_name and vault_name.lower() in runtime.settings.vaults:
        try:
            runtime.journal.add_outbox(
                queue_failure(runtime.settings, outcome, now=runtime.clock(), occurrence=message_id or "poison")
            )
        except RenewalError as exc:
            logger.warning("could not queue the poison announcement reason=%s", exc.reason)
    return outcome


def _poisoned(body: bytes | str, runtime: Runtime | None) -> tuple[str | None, str | None, str | None, str]:
    """The vault, certificate and event id a poison message names, as far as it can be read, and what it was."""
    try:
        parsed = read_message(body)
    except RenewalError:
        return None, None, None, "an unreadable queue message"
    if isinstance(parsed, VaultWork):
        return parsed.vault_name, None, None, f"the sweep of vault {parsed.vault_name}"
    envelope = parsed.envelopes[0]
    event_id = _event_id(envelope)
    if runtime is None:
        return None, None, event_id, "a Key Vault event"
    try:
        request = parse_event(envelope, vaults=runtime.settings.vaults)
    except RenewalError:
        return None, None, event_id, "an unreadable Key Vault event"
    if isinstance(request, Ignored):
        return request.vault_name, request.certificate_name, event_id, "an ignored Key Vault event"
    return (
        request.vault_name,
        request.certificate_name,
        event_id,
        f"the Key Vault event about {request.certificate_name}",
    )


def _queue_message_parts(message: Any) -> tuple[bytes | str, str | None]:
    """The body and id of a ``func.QueueMessage`` (or a bare body)."""
    if isinstance(message, (bytes, str)):
        return message, None
    message_id = getattr(message, "id", None)
    return message.get_body(), message_id if isinstance(message_id, str) else None


def _with_id(message: str, message_id: str | None) -> str:
    return f"{message} (queue message {message_id[:64]})" if message_id else message


@_flushed
def renew_now(vault_name: str, certificate_name: str, *, force: bool = False) -> tuple[int, str]:
    """Renew one certificate now (the manual HTTP trigger): the same path as an event; HTTP status and JSON body.

    ``force`` renews a paused certificate, or one whose current version is inside the manual cooldown.
    200 renewed or skipped, 202 pending at the CA, 404 vault not allowed or certificate unknown, 422 failed for
    good, 503 failed for now (retrying later may help).
    """
    try:
        runtime = current_runtime()
    except RenewalError as exc:
        outcome = Outcome(status="failed", reason=exc.reason, message=exc.message, trigger="manual")
        log_outcome(outcome, logger)
        return 500, outcome_json(outcome)
    vault = runtime.settings.vaults.get(vault_name.lower()) if VAULT_NAME.fullmatch(vault_name) else None
    if vault is None or not OBJECT_NAME.fullmatch(certificate_name):
        outcome = outcome_for_ignored(
            Ignored(
                "vault_not_allowed" if vault is None else "invalid_name",
                f"vault {vault_name[:40]!r} is not in RENEWAL_VAULTS (names are matched whole, in ASCII)"
                if vault is None
                else f"{certificate_name[:60]!r} is not a Key Vault certificate name",
                vault_name=vault_name[:40],
                certificate_name=certificate_name[:60],
            )
        )
        return 404, outcome_json(outcome)
    outcome = renew(on_demand_request(vault, certificate_name, trigger="manual", force=force), runtime)
    if outcome.status == "pending":
        code = 202
    elif outcome.status != "failed":
        code = 200
    elif outcome.reason == "certificate_not_found":
        code = 404
    else:
        code = 503 if outcome.retryable else 422
    return code, outcome_json(outcome)


def status() -> tuple[int, str]:
    """The journal as JSON (the status HTTP trigger): renewals under way, failures, dead letters, next renewals."""
    try:
        runtime = current_runtime()
        report = status_report(runtime)
    except RenewalError as exc:
        return 503 if isinstance(exc, RetryableError) else 500, json.dumps(
            {"error": exc.reason, "message": exc.message}
        )
    return 200, json.dumps(report, indent=2, sort_keys=True, default=str)


def _event_id(envelope: Mapping[str, object]) -> str | None:
    value = envelope.get("id") if isinstance(envelope, Mapping) else None
    return value if isinstance(value, str) else None


def outcome_json(outcome: Outcome) -> str:
    """Serialise an outcome for an HTTP answer or a file."""
    from renewal.outcome import to_dict

    return json.dumps(to_dict(outcome), indent=2, sort_keys=True)
