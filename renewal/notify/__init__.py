"""Notifications people read: Microsoft Teams, Slack and e-mail, through the outbox (docs/notifications.md).

- ``parse_notifiers`` reads ``RENEWAL_NOTIFIERS``; ``notifier_secret_values`` gives the log scrubber what to hide.
- ``notifications_for`` (in ``routing``, no I/O) turns an outcome into outbox rows ``notify:<name>``: which
  notifiers want it (outcome kind, tag, owner tag) and whether it is news (a failure once per streak, then
  ``recovered``).
- ``NotifierSender`` is the outbox's sender for those rows: one module per kind (``teams``, ``slack``, ``email``)
  under one protocol (``Channel``: render, send).

Names are imported when first used, so the settings can read ``RENEWAL_NOTIFIERS`` (``renewal.notify._config``)
without loading the journal, the HTTP client or ``smtplib``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from renewal.notify._config import (
        DEFAULT_OUTCOMES,
        NOTIFIERS,
        OUTCOME_KINDS,
        EmailOptions,
        NotifierConfig,
        SlackOptions,
        TeamsOptions,
        notifier_secret_values,
        parse_notifiers,
    )
    from renewal.notify._protocol import Channel, Notice
    from renewal.notify._sender import NotifierSender
    from renewal.notify.routing import announces_dead_letter, classify, notifications_for, streak_decision, unqueued

__all__ = [
    "DEFAULT_OUTCOMES",
    "NOTIFIERS",
    "OUTCOME_KINDS",
    "Channel",
    "EmailOptions",
    "Notice",
    "NotifierConfig",
    "NotifierSender",
    "SlackOptions",
    "TeamsOptions",
    "announces_dead_letter",
    "classify",
    "notifications_for",
    "notifier_secret_values",
    "parse_notifiers",
    "streak_decision",
    "unqueued",
]

_HOMES = {
    **dict.fromkeys(
        (
            "DEFAULT_OUTCOMES",
            "NOTIFIERS",
            "OUTCOME_KINDS",
            "EmailOptions",
            "NotifierConfig",
            "SlackOptions",
            "TeamsOptions",
            "notifier_secret_values",
            "parse_notifiers",
        ),
        "renewal.notify._config",
    ),
    **dict.fromkeys(("Channel", "Notice"), "renewal.notify._protocol"),
    "NotifierSender": "renewal.notify._sender",
    **dict.fromkeys(
        ("announces_dead_letter", "classify", "notifications_for", "streak_decision", "unqueued"),
        "renewal.notify.routing",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(home), name)
