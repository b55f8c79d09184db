"""The renewal app: renews Azure Key Vault certificates issued by private CAs.

The public surface is small: the entry points ``function_app.py`` wires to triggers. Everything else may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from renewal.outcome import Outcome

__all__ = [
    "handle_event",
    "handle_event_grid_event",
    "handle_poisoned_queue_message",
    "handle_queue_message",
    "renew_now",
    "run_sweep",
    "status",
    "status_page",
]


def handle_event_grid_event(event: Any) -> Outcome:
    """Handle one ``func.EventGridEvent`` from the Event Grid trigger; see ``renewal.flow.entry``."""
    from renewal.flow.entry import handle_event_grid_event as handle

    return handle(event)


def handle_event(envelope: Any) -> Outcome:
    """Handle one event in Event Grid or CloudEvents dict form; see ``renewal.flow.entry``."""
    from renewal.flow.entry import handle_event as handle

    return handle(envelope)


def run_sweep() -> Any:
    """Run the timer sweep (or plan it onto the work queue); see ``renewal.flow.sweep`` and ``renewal.flow.fanout``."""
    from renewal.flow.entry import run_sweep as run

    return run()


def handle_queue_message(message: Any) -> Any:
    """Do one work-queue message (``func.QueueMessage``): a vault's sweep, or Key Vault events; see
    ``renewal.flow.entry``."""
    from renewal.flow.entry import handle_queue_message as handle

    return handle(message)


def handle_poisoned_queue_message(message: Any) -> Outcome:
    """Announce one message the host moved to the poison queue; see ``renewal.flow.entry``."""
    from renewal.flow.entry import handle_poisoned_queue_message as handle

    return handle(message)


def renew_now(vault_name: str, certificate_name: str, *, force: bool = False) -> tuple[int, str]:
    """Renew one certificate now; HTTP status and JSON outcome. See ``renewal.flow.entry.renew_now``."""
    from renewal.flow.entry import renew_now as renew

    return renew(vault_name, certificate_name, force=force)


def status() -> tuple[int, str]:
    """The journal's status as HTTP status and JSON. See ``renewal.flow.report``."""
    from renewal.flow.entry import status as report

    return report()


def status_page() -> tuple[int, str]:
    """The status page as HTTP status and HTML. See ``renewal.flow.page``."""
    from renewal.flow.page import status_page as page

    return page()
