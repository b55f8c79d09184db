"""The outbox's sender for ``notify:<name>`` rows: look the notifier up, render its notice, send it once."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from renewal._shared.secrets import resolve_secret_setting
from renewal.errors import PermanentError, RenewalError, RetryableError
from renewal.notify._config import NOTIFIERS, EmailOptions, NotifierConfig, TeamsOptions, notifier_secret_values
from renewal.notify._protocol import Channel, Notice
from renewal.outcome import Delivery
from renewal.pure.redact import scrub
from renewal.shells.journal import OutboxItem
from renewal.shells.senders import endpoint_kind

__all__ = ["NotifierSender"]

logger = logging.getLogger(__name__)


class NotifierSender:
    """Sends ``notify:<name>`` outbox rows to their notifiers (``OutboxSender`` for the kind ``notify``).

    Each row is sent once per call; the outbox retries it (and dead-letters it) by what ``send`` answers. Secrets
    (webhook URLs, the SMTP password) are read from ``environ`` when a row is sent, never kept in a row, and never
    appear in a ``Delivery``, an error or a log line.

    Args:
        configs: the notifiers (``parse_notifiers``).
        environ: the app settings the notifiers' ``*_setting`` options name.
        clock: now, tz-aware (``Retry-After`` dates, the mail's ``Date``).
        session: the HTTP session for Teams and Slack (one is made when not given).
        timeout: seconds to connect and for each answer.
    """

    def __init__(
        self,
        configs: Sequence[NotifierConfig],
        environ: Mapping[str, str],
        *,
        clock: Callable[[], datetime],
        session: requests.Session | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._configs = {config.name: config for config in configs}
        self._environ = environ
        self._clock = clock
        self._session = session
        self._timeout = timeout
        self._secrets = notifier_secret_values(tuple(configs), environ)

    def send(self, item: OutboxItem) -> Delivery:
        """Send one row once and say what happened; never raises for a notifier that fails.

        ``permanent`` when retrying cannot help (refused, gone, bad credentials, untrusted TLS, a broken row);
        ``retry_after_seconds`` when the service asked for a pause.
        """
        _, name = endpoint_kind(item.endpoint)
        config = self._configs.get(name)
        if config is None:
            # As for a webhook endpoint: the setting may be in the middle of a change; the maximum age ends it.
            return Delivery(item.endpoint, item.webhook_id, False, 0, None, "the notifier is no longer configured")
        try:
            notice = _notice(item, name)
            channel = self._channel(config)
        except RenewalError as exc:
            return self._failed(item, config, exc, attempts=0)
        try:
            code = channel.send(notice)
        except RenewalError as exc:
            return self._failed(item, config, exc, attempts=1)
        except Exception as exc:  # a surprise in one notifier (a bug, a library's oddity) must not stop the outbox
            # The type only: a library's message may hold the URL.
            logger.debug("notification raised notifier=%s webhook_id=%s %s", name, item.webhook_id, type(exc).__name__)
            error = RetryableError(f"the notification could not be sent ({type(exc).__name__})")
            return self._failed(item, config, error, attempts=1)
        logger.debug("notification sent notifier=%s kind=%s webhook_id=%s", name, config.kind, item.webhook_id)
        return Delivery(item.endpoint, item.webhook_id, True, 1, code, None)

    def _channel(self, config: NotifierConfig) -> Channel:
        options = config.options
        named_by = (NOTIFIERS, f"notifier {config.name!r}")
        if isinstance(options, EmailOptions):
            from renewal.notify.email import EmailChannel

            password = None
            if options.password_setting is not None:
                password = resolve_secret_setting(self._environ, options.password_setting, named_by=named_by)
            return EmailChannel(options, password=password, clock=self._clock, timeout=self._timeout)
        url = resolve_secret_setting(self._environ, options.url_setting, named_by=named_by)
        if self._session is None:
            self._session = requests.Session()
        if isinstance(options, TeamsOptions):
            from renewal.notify.teams import TeamsChannel

            return TeamsChannel(url, session=self._session, clock=self._clock, timeout=self._timeout)
        from renewal.notify.slack import SlackChannel

        return SlackChannel(url, session=self._session, clock=self._clock, timeout=self._timeout)

    def _failed(self, item: OutboxItem, config: NotifierConfig, exc: RenewalError, *, attempts: int) -> Delivery:
        # Belt and braces: the channels never put a secret in a message, and this makes sure of it.
        error = scrub(f"{config.kind}: {exc.message}", self._secrets)
        retryable = isinstance(exc, RetryableError)
        logger.debug(
            "notification failed notifier=%s kind=%s webhook_id=%s reason=%s retryable=%s",
            config.name,
            config.kind,
            item.webhook_id,
            exc.reason,
            retryable,
        )
        return Delivery(
            item.endpoint,
            item.webhook_id,
            False,
            attempts,
            None,
            error,
            permanent=not retryable,
            retry_after_seconds=exc.retry_after if isinstance(exc, RetryableError) else None,
        )


def _notice(item: OutboxItem, name: str) -> Notice:
    try:
        payload: Any = json.loads(item.payload)
    except ValueError as exc:
        raise PermanentError("the stored notification is not JSON", reason="notify_bad_payload") from exc
    if not isinstance(payload, dict):
        raise PermanentError("the stored notification is not a JSON object", reason="notify_bad_payload")
    return Notice.from_payload(payload, notifier=name, webhook_id=item.webhook_id)
