"""The ``RENEWAL_NOTIFIERS`` setting: which notifiers exist, how each is reached, and what each is told.

JSON object, notifier name → spec::

    {"ops":      {"kind": "teams", "url_setting": "OPS_TEAMS_URL"},
     "payments": {"kind": "slack", "url_setting": "PAYMENTS_SLACK_URL", "owner": "team-payments",
                  "outcomes": ["renewed", "failed", "at_risk", "recovered"]},
     "pki-mail": {"kind": "email", "host": "smtp.example.com", "username": "renewal@example.com",
                  "password_setting": "SMTP_PASSWORD", "from": "renewal@example.com", "to": ["pki@example.com"]}}

Secrets (the Teams and Slack webhook URLs, the SMTP password) are never in the spec: it names the app setting that
holds each (``url_setting``, ``password_setting``), so that setting can be a Key Vault reference. Every error is a
``ConfigurationError`` naming ``RENEWAL_NOTIFIERS`` and the notifier, never a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from urllib.parse import parse_qsl, urlsplit

from renewal._shared.secrets import resolve_secret_setting
from renewal._shared.specs import match_tag, named_specs, reject_unknown_keys
from renewal._shared.urls import url_problem
from renewal.errors import ConfigurationError

__all__ = [
    "DEFAULT_OUTCOMES",
    "NOTIFIERS",
    "OUTCOME_KINDS",
    "EmailOptions",
    "NotifierConfig",
    "SlackOptions",
    "TeamsOptions",
    "notifier_secret_values",
    "parse_notifiers",
]

NOTIFIERS = "RENEWAL_NOTIFIERS"
# What a notifier can be told about; ``routing.classify`` maps each outcome to one of these.
OUTCOME_KINDS = frozenset(
    {
        "renewed",
        "failed",
        "at_risk",
        "dead_letter",
        "recovered",
        "rollout_complete",
        "rollout_stalled",
        "would_renew",
    }
)
# What needs a person: a renewal that fails, a certificate about to expire, a message given up on, and the end
# of a failure streak (so whoever was told of the failure is told it is over).
DEFAULT_OUTCOMES = frozenset({"failed", "at_risk", "dead_letter", "recovered"})

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}", re.ASCII)
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}", re.ASCII)
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\]", re.ASCII)
_ROUTING_KEYS = frozenset({"kind", "outcomes", "tag", "owner"})
_CHAT_KEYS = _ROUTING_KEYS | {"url_setting"}
_EMAIL_KEYS = _ROUTING_KEYS | {
    "host",
    "port",
    "starttls",
    "username",
    "password_setting",
    "from",
    "to",
    "tls_ca_bundle",
}
_KINDS = ("teams", "slack", "email")
# Too short a value would redact ordinary words; such a "secret" protects nothing anyway.
_SHORTEST_SECRET = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamsOptions:
    """A Microsoft Teams channel reached through a Workflows incoming webhook ("Post to a channel when a webhook
    request is received").

    Attributes:
        url_setting: the app setting holding the workflow's URL (its ``sig`` query parameter is the credential).
    """

    url_setting: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackOptions:
    """A Slack channel reached through an incoming webhook.

    Attributes:
        url_setting: the app setting holding the webhook URL (``https://hooks.slack.com/services/...``: the path
            is the credential).
    """

    url_setting: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailOptions:
    """A mailbox reached over SMTP submission.

    Attributes:
        host: the mail server's host name (its TLS certificate must be issued for it).
        port: the submission port.
        starttls: upgrade to TLS before anything else is said; the server must offer it, else nothing is sent.
        username: the AUTH user, or ``None`` for a relay that takes mail without AUTH.
        password_setting: the app setting holding the AUTH password (with ``username``).
        sender: the ``From`` address.
        recipients: the ``To`` addresses.
        tls_ca_bundle: a PEM file of CAs to trust for the server's certificate, instead of the system store.
    """

    host: str
    port: int = 587
    starttls: bool = True
    username: str | None = None
    password_setting: str | None = None
    sender: str
    recipients: tuple[str, ...]
    tls_ca_bundle: str | None = None


NotifierOptions = TeamsOptions | SlackOptions | EmailOptions


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifierConfig:
    """One configured notifier: where it sends, and which outcomes of which certificates it is told about.

    Attributes:
        name: the notifier's name (in outbox endpoints as ``notify:<name>``, in logs and outcomes).
        options: how it is reached (one options type per kind).
        outcomes: the outcome kinds it is told about (``OUTCOME_KINDS``).
        match_tag: ``(key, value)`` a certificate's tags must contain, or ``None`` for every certificate.
        owner: when set, it is told only about certificates whose ``renewal-notify`` tag names this owner.
    """

    name: str
    options: NotifierOptions
    outcomes: frozenset[str] = DEFAULT_OUTCOMES
    match_tag: tuple[str, str] | None = None
    owner: str | None = None

    @property
    def kind(self) -> str:
        """``teams``, ``slack`` or ``email``."""
        if isinstance(self.options, TeamsOptions):
            return "teams"
        if isinstance(self.options, SlackOptions):
            return "slack"
        return "email"

    @property
    def endpoint(self) -> str:
        """The outbox endpoint of its rows: ``notify:<name>``."""
        return f"notify:{self.name}"


def parse_notifiers(environ: Mapping[str, str]) -> tuple[NotifierConfig, ...]:
    """The notifiers ``RENEWAL_NOTIFIERS`` configures (none when unset), checked once.

    Every setting a notifier names must exist; a webhook URL must be https (plain http only on loopback).

    Raises:
        ConfigurationError: the JSON is malformed, a key is unknown, a value has the wrong type or shape, or a
            named setting is missing; the message names the notifier and the key, never a value.
    """
    specs = named_specs(
        NOTIFIERS, environ.get(NOTIFIERS, ""), noun="notifier", shape="a JSON object: notifier name → spec"
    )
    return tuple(_notifier(name, spec, environ) for name, spec in specs)


def notifier_secret_values(configs: tuple[NotifierConfig, ...], environ: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret the notifiers name, for the log scrubber: webhook URLs whole, their credential parts alone
    (urllib3 logs a request's path without its host), and SMTP passwords. Settings that are missing are skipped."""
    values: set[str] = set()
    for config in configs:
        options = config.options
        if isinstance(options, TeamsOptions | SlackOptions):
            url = environ.get(options.url_setting, "").strip()
            if not url:
                continue
            values.add(url)
            parts = urlsplit(url)
            values.add(parts.path + (f"?{parts.query}" if parts.query else ""))
            values.add(parts.path)
            values.update(value for _, value in parse_qsl(parts.query))
            # A Slack webhook's credential is the path's last segments (T…/B…/secret).
            values.update(segment for segment in parts.path.split("/") if len(segment) >= 16)
        elif options.password_setting:
            password = environ.get(options.password_setting, "").strip()
            if password:
                values.add(password)
    return tuple(sorted(v for v in values if len(v) >= _SHORTEST_SECRET))


def _notifier(name: str, spec: Mapping[str, object], environ: Mapping[str, str]) -> NotifierConfig:
    kind = spec.get("kind")
    if kind not in _KINDS:
        raise ConfigurationError(NOTIFIERS, f"notifier {name!r}: kind must be one of {', '.join(_KINDS)}")
    allowed = _EMAIL_KEYS if kind == "email" else _CHAT_KEYS
    reject_unknown_keys(NOTIFIERS, f"notifier {name!r}", spec, allowed)
    options: NotifierOptions
    if kind == "email":
        options = _email_options(name, spec, environ)
    else:
        url_setting = _setting_name(name, spec, "url_setting", required=True)
        assert url_setting is not None
        url = resolve_secret_setting(environ, url_setting, named_by=(NOTIFIERS, f"notifier {name!r}: url_setting"))
        problem = url_problem(url)
        if problem:
            # The problem only: the URL is the credential.
            raise ConfigurationError(NOTIFIERS, f"notifier {name!r}: the URL its url_setting holds: {problem}")
        options = TeamsOptions(url_setting=url_setting) if kind == "teams" else SlackOptions(url_setting=url_setting)
    return NotifierConfig(
        name=name,
        options=options,
        outcomes=_outcomes(name, spec.get("outcomes")),
        match_tag=match_tag(NOTIFIERS, f"notifier {name!r}", spec.get("tag")),
        owner=_owner(name, spec.get("owner")),
    )


def _email_options(name: str, spec: Mapping[str, object], environ: Mapping[str, str]) -> EmailOptions:
    where = f"notifier {name!r}"
    host = spec.get("host")
    if not isinstance(host, str) or not _HOST.fullmatch(host.strip()):
        raise ConfigurationError(NOTIFIERS, f"{where}: host must be a host name or address")
    port = spec.get("port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigurationError(NOTIFIERS, f"{where}: port must be a whole number from 1 to 65535")
    starttls = spec.get("starttls", True)
    if not isinstance(starttls, bool):
        raise ConfigurationError(NOTIFIERS, f"{where}: starttls must be true or false")
    username = spec.get("username")
    if username is not None and (not isinstance(username, str) or not username.strip() or "\n" in username):
        raise ConfigurationError(NOTIFIERS, f"{where}: username must be a non-empty string")
    password_setting = _setting_name(name, spec, "password_setting", required=False)
    if (username is None) != (password_setting is None):
        raise ConfigurationError(NOTIFIERS, f"{where}: username and password_setting go together")
    if password_setting is not None:
        resolve_secret_setting(environ, password_setting, named_by=(NOTIFIERS, f"{where}: password_setting"))
        if not starttls:
            raise ConfigurationError(
                NOTIFIERS, f"{where}: AUTH needs starttls (the password would cross the network in clear)"
            )
    sender = _address(where, "from", spec.get("from"))
    recipients = spec.get("to")
    if not isinstance(recipients, list) or not recipients:
        raise ConfigurationError(NOTIFIERS, f"{where}: to must be a non-empty list of addresses")
    bundle = spec.get("tls_ca_bundle")
    if bundle is not None and (not isinstance(bundle, str) or not os.path.isfile(bundle)):
        raise ConfigurationError(NOTIFIERS, f"{where}: tls_ca_bundle must name a PEM file that exists")
    return EmailOptions(
        host=host.strip(),
        port=port,
        starttls=starttls,
        username=username.strip() if isinstance(username, str) else None,
        password_setting=password_setting,
        sender=sender,
        recipients=tuple(_address(where, "to", value) for value in recipients),
        tls_ca_bundle=bundle,
    )


def _address(where: str, key: str, value: object) -> str:
    """A bare ``local@domain`` address; display names and header tricks (line breaks, several addresses) are
    refused, since the value goes into a header and an SMTP command."""
    problem = ConfigurationError(NOTIFIERS, f"{where}: {key} must hold e-mail addresses (local@domain)")
    if not isinstance(value, str) or any(c in value for c in '\r\n,;<>"') or not value.isascii():
        raise problem
    display, address = parseaddr(value.strip())
    if display or address != value.strip() or address.count("@") != 1:
        raise problem
    local, _, domain = address.partition("@")
    if not local or not domain or not _HOST.fullmatch(domain):
        raise problem
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError) as exc:
        raise problem from exc
    return address


def _setting_name(name: str, spec: Mapping[str, object], key: str, *, required: bool) -> str | None:
    value = spec.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _SETTING_NAME.fullmatch(value):
        raise ConfigurationError(NOTIFIERS, f"notifier {name!r}: {key} must name an app setting")
    return value


def _outcomes(name: str, value: object) -> frozenset[str]:
    if value is None:
        return DEFAULT_OUTCOMES
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(NOTIFIERS, f"notifier {name!r}: outcomes must be a non-empty list")
    unknown = sorted(set(value) - OUTCOME_KINDS)
    if unknown:
        raise ConfigurationError(
            NOTIFIERS,
            f"notifier {name!r}: unknown outcome(s) {', '.join(unknown)} (known: {', '.join(sorted(OUTCOME_KINDS))})",
        )
    return frozenset(value)


def _owner(name: str, owner: object) -> str | None:
    if owner is None:
        return None
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner.strip()):
        raise ConfigurationError(
            NOTIFIERS, f"notifier {name!r}: owner must be one name (ASCII letters, digits, _ . @ -), as tagged"
        )
    return owner.strip().lower()
