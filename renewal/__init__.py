"""The renewal app: renews Azure Key Vault certificates issued by private CAs.

The public surface is small: the entry points ``function_app.py`` wires to triggers. Everything else may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from renewal.outcome import Outcome

__all__ = ["handle_event", "handle_event_grid_event", "renew_now", "run_sweep", "status"]


def handle_event_grid_event(event: Any) -> Outcome:
    """Handle one ``func.EventGridEvent`` from the Event Grid trigger; see ``renewal.app``."""
    from renewal.app import handle_event_grid_event as handle

    return handle(event)


def handle_event(envelope: Any) -> Outcome:
    """Handle one event in Event Grid or CloudEvents dict form; see ``renewal.app``."""
    from renewal.app import handle_event as handle

    return handle(envelope)


def run_sweep() -> Any:
    """Run the timer sweep; see ``renewal.sweep``."""
    from renewal.app import run_sweep as run

    return run()


def renew_now(vault_name: str, certificate_name: str, *, force: bool = False) -> tuple[int, str]:
    """Renew one certificate now; HTTP status and JSON outcome. See ``renewal.app.renew_now``."""
    from renewal.app import renew_now as renew

    return renew(vault_name, certificate_name, force=force)


def status() -> tuple[int, str]:
    """The journal's status as HTTP status and JSON. See ``renewal.report``."""
    from renewal.app import status as report

    return report()
