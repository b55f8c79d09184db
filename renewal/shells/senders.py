"""The one protocol every outbox destination implements (docs/architecture.md §4).

An outbox row's ``endpoint`` names where it goes: a webhook's name, ``eventgrid-topic``, or ``<kind>:<name>``
for the other destinations (``notify:<notifier>``, ``target:<target>``, ``revoke:<ca profile>``). The deliverer
hands a row to the sender registered for its kind and records what came back, so each destination gets the
outbox's guarantees (retried with backoff, dead-lettered past the maximum age, never lost) without its own copy.
"""

from __future__ import annotations

from typing import Protocol

from renewal.outcome import Delivery
from renewal.shells.journal import OutboxItem

__all__ = ["OutboxSender", "endpoint_kind"]


class OutboxSender(Protocol):
    """Sends one outbox row once (quick retries inside are its own business) and says what happened.

    Never raises for a destination that fails: a ``Delivery`` with ``delivered=False`` says why; ``permanent=True``
    when retrying cannot help (dead-lettered at once), ``retry_after_seconds`` when the destination asked for a
    pause (ARM's 429 ``Retry-After``).
    """

    def send(self, item: OutboxItem) -> Delivery: ...


def endpoint_kind(endpoint: str) -> tuple[str, str]:
    """``(kind, name)`` of an outbox endpoint: ``("notify", "ops")`` for ``notify:ops``; ``("webhook", name)``
    for a webhook's bare name."""
    kind, sep, name = endpoint.partition(":")
    return (kind, name) if sep else ("webhook", endpoint)
