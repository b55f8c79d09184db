"""Scrubbing text that came from outside: PEM blocks, control characters, secrets and token shapes, length."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from renewal._shared.urls import host_of
from renewal.pure.redact import REDACTED, SecretScrubber, scrub

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----"


def test_pem_blocks_are_removed_whole() -> None:
    """A certificate or key in a CA's error text is replaced, body and all, even when it is cut short."""
    assert "MIIB" not in scrub(f"bad request: {PEM} (see above)")
    assert "MIIB" not in scrub("truncated: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq")


@pytest.mark.parametrize(
    "token",
    [
        "hvs.CAESIJlWh3Vm0abcdefgh",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAifQ.c2lnbmF0dXJl",
        "Bearer abc.def-ghi_jkl",
        "NTLM TlRMTVNTUAADAAAAGAAYAHQAAAA=",
        "password=hunter22xx",
        "https://h.example/api?code=abcdef123",
    ],
)
def test_common_credential_shapes_are_redacted(token: str) -> None:
    """Vault tokens, webhook secrets, JWTs, Authorization values and credential parameters never pass."""
    cleaned = scrub(f"the CA said: {token} is invalid")
    assert token not in cleaned
    assert REDACTED in cleaned


def test_known_secret_values_are_redacted_longest_first() -> None:
    """A configured secret is removed wherever it appears, even inside another configured secret."""
    cleaned = scrub("x=ABCDEF123456 and ABCDEF123456789", {"ABCDEF123456", "ABCDEF123456789"})
    assert "ABCDEF123456" not in cleaned
    assert cleaned.count(REDACTED) == 2


def test_control_characters_and_line_breaks_cannot_forge_a_log_line() -> None:
    """Newlines, escape sequences and Unicode line separators become spaces."""
    cleaned = scrub("denied\nrenewal outcome=renewed\x1b[2J\u2028x")
    assert "\n" not in cleaned
    assert "\x1b" not in cleaned
    assert "\u2028" not in cleaned


def test_text_is_bounded() -> None:
    """A CA that answers a megabyte of text is shown in at most the limit plus an ellipsis."""
    assert len(scrub("x" * 1_000_000, limit=100)) == 103


def test_host_of_shows_the_host_only() -> None:
    """A URL in a message keeps its host and loses its userinfo, path and query."""
    assert host_of("https://user:pw@ca.corp.example:8443/v1/sign?token=x") == "ca.corp.example"
    assert host_of("not a url") == "an unreadable host"


@pytest.fixture
def scrubbing() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    previous = logging.getLogRecordFactory()
    logger = logging.getLogger("tests.redact")
    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(previous)


def test_the_record_factory_scrubs_every_record_at_every_level(scrubbing: list[logging.LogRecord]) -> None:
    """Installed, the scrubber cleans the formatted message of any logger, and URLs lose their query string."""
    SecretScrubber.install({"s3cretValue!"})
    logger = logging.getLogger("tests.redact")
    logger.debug('%s://%s:%s "%s %s HTTP/1.1" 200', "https", "hooks.example", 443, "POST", "/api/x?code=k3y")
    logger.info("the CA echoed %s", "s3cretValue!")
    assert [r.getMessage() for r in scrubbing] == [
        f'https://hooks.example:443 "POST /api/x?{REDACTED} HTTP/1.1" 200',
        f"the CA echoed {REDACTED}",
    ]


def test_installing_again_replaces_the_secrets_without_stacking(scrubbing: list[logging.LogRecord]) -> None:
    """A second install (settings changed) scrubs the new secrets, and the old factory chain does not grow."""
    first = SecretScrubber.install({"oldSecretValue"})
    second = SecretScrubber.install({"newSecretValue"})
    assert logging.getLogRecordFactory() is second
    assert second._previous is first._previous
    logging.getLogger("tests.redact").info("newSecretValue")
    assert scrubbing[-1].getMessage() == REDACTED
