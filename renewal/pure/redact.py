"""Scrub text that came from outside before it is shown anywhere (pure).

A CA's error body, a problem document, a proxy's page: any of them may echo what it was sent (a token, a
password, the CSR) or hold a certificate. Before such text reaches a log line, the journal, the status answer or
an outcome event it loses PEM blocks and control characters, known secret values and the shapes of common
credentials, and is cut to a bounded length.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable

__all__ = ["REDACTED", "SecretScrubber", "scrub"]

REDACTED = "[redacted]"
_MAX_LENGTH = 500

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]{1,64}-----.*?(?:-----END [A-Z0-9 ]{1,64}-----|\Z)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TOKEN_SHAPES = re.compile(
    r"""
      \bhv[sbr]\.[A-Za-z0-9_-]{8,}                                  # HashiCorp Vault tokens
    | \bs\.[A-Za-z0-9]{20,}                                         # Vault's legacy service tokens
    | \bwhsec_[A-Za-z0-9+/=_-]{8,}                                  # Standard Webhooks secrets
    | \beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*)? # JWTs (managed identity, ACME JWS)
    | \b(?:Bearer|Basic|NTLM|Negotiate|SharedAccessSignature)\s+[A-Za-z0-9+/=._~%&-]{6,}
    | \b(?:sig|code|secret_id|password|token|AccountKey)=[^&;\s"'<>]{4,}
    """,
    re.VERBOSE | re.IGNORECASE,
)
# A query string after a URL or a request path ("POST /api/x?code=..."), as urllib3 logs requests.
_QUERY = re.compile(r"((?:https?://|/)[^\s?\"'<>]*)\?[^\s\"'<>]+")


def scrub(text: object, secrets: Collection[str] = (), *, limit: int = _MAX_LENGTH, lines: bool = False) -> str:
    """``text`` without PEM blocks, control characters, ``secrets`` or credential shapes, at most ``limit`` long.

    Line breaks become spaces too (a CA's text must not forge a log line), unless ``lines`` keeps them.
    """
    value = text if isinstance(text, str) else str(text)
    value = _PEM_BLOCK.sub("[certificate or key removed]", value)
    # Longest first, so that a secret containing another is removed whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in value:
            value = value.replace(secret, REDACTED)
    value = _TOKEN_SHAPES.sub(REDACTED, value)
    value = (_CONTROL_BUT_LINES if lines else _CONTROL).sub(" ", value)
    return value if len(value) <= limit else value[:limit] + "..."


class SecretScrubber:
    """A logging record factory that scrubs every record's text, at every level, before any handler sees it.

    A filter would do only for records logged on the logger it is attached to, not its children, and the app
    does not own the host's handlers; the record factory is the one place every record passes. It also takes
    query strings off URLs (urllib3 logs each request's URL at DEBUG, and webhook URLs carry function keys).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = frozenset(secrets)
        self._previous = logging.getLogRecordFactory()

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return record
        cleaned = _QUERY.sub(r"\1?" + REDACTED, scrub(message, self.secrets, limit=20_000, lines=True))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    @classmethod
    def install(cls, secrets: Iterable[str]) -> SecretScrubber:
        """Install a scrubber for ``secrets`` (replacing one installed before) and return it."""
        current = logging.getLogRecordFactory()
        scrubber = cls(secrets)
        if isinstance(current, SecretScrubber):
            scrubber._previous = current._previous
        logging.setLogRecordFactory(scrubber)
        return scrubber
