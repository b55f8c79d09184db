"""The renewal app: renews Azure Key Vault certificates issued by private CAs.

The public surface is small: the entry points ``function_app.py`` wires to triggers. Everything else may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from renewal.outcome import Outcome

__all__ = ["handle_event", "handle_event_grid_event"]


def handle_event_grid_event(event: Any) -> Outcome:
    """Handle one ``func.EventGridEvent`` from the Event Grid trigger; see ``renewal.app``."""
    from renewal.app import handle_event_grid_event as handle

    return handle(event)


def handle_event(envelope: Any) -> Outcome:
    """Handle one event in Event Grid or CloudEvents dict form; see ``renewal.app``."""
    from renewal.app import handle_event as handle

    return handle(envelope)
