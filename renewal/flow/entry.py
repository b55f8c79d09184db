"""Entry points that ``function_app.py`` wires to triggers; nothing here knows about bindings beyond their values."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from renewal.errors import RenewalError, RetryableError
from renewal.flow.renew import outcome_for_ignored, renew
from renewal.flow.report import status_report
from renewal.flow.runtime import Runtime, build_runtime
from renewal.flow.sweep import SweepReport, sweep
from renewal.outcome import Outcome, log_outcome
from renewal.pure.intake import OBJECT_NAME, Ignored, on_demand_request, parse_event
from renewal.settings import VAULT_NAME, Settings

__all__ = [
    "current_runtime",
    "event_grid_envelope",
    "handle_event",
    "handle_event_grid_event",
    "renew_now",
    "run_sweep",
    "status",
]

logger = logging.getLogger("renewal")

_runtime_lock = threading.Lock()
_runtime: Runtime | None = None


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
            _runtime = build_runtime(settings)
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


def handle_event_grid_event(event: Any) -> Outcome:
    """Handle one event from the Event Grid trigger: a ``func.EventGridEvent``, or the ``func.CloudEvent`` the
    worker builds for a subscription in the CloudEvents 1.0 schema."""
    return handle_event(event_grid_envelope(event))


def run_sweep() -> SweepReport | None:
    """Run the timer sweep with the current settings; a configuration problem is logged, not raised.

    Raises:
        RetryableError: the journal is unreachable (the next run tries again).
    """
    try:
        runtime = current_runtime()
    except RenewalError as exc:
        log_outcome(Outcome(status="failed", reason=exc.reason, message=exc.message, trigger="sweep"), logger)
        return None
    return sweep(runtime)


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
