"""The app's settings, read from the environment and validated once.

Every error is a ``ConfigurationError`` that names the faulty setting and never echoes a secret value.

``RENEWAL_VAULTS`` (required)
    Comma-separated vaults the app may touch: ``name=https://url``, or a bare ``name`` meaning
    ``https://name.vault.azure.net``. URLs must be https. Events from other vaults are ignored.
``RENEWAL_CA_PROFILES``
    JSON object, profile name → ``{"adapter": "local", ...options}``; ``adapter`` is a key of the adapter
    registry. Secret options name *another app setting* holding the value (``"ca_key_setting": "CORP_CA_KEY"``),
    so that setting can be a Key Vault reference; such named settings must exist.
``RENEWAL_DEFAULT_CA_PROFILE``
    The profile for certificates without a ``renewal-ca`` tag. Unset: untagged certificates are not managed.
``RENEWAL_WEBHOOKS``
    JSON object, endpoint name → ``{"url": ..., "secret_setting": ..., "tag": "key=value"}``. ``url`` is https
    (plain http only on loopback); ``secret_setting`` names the app setting holding the Standard Webhooks secret
    (``whsec_`` + base64 of 24 to 64 bytes); the optional ``tag`` limits the endpoint to certificates with that tag.
``RENEWAL_KEYVAULT_CA_BUNDLE``
    Development only: a PEM file of CAs to trust for the vault's TLS (the local emulator).
``RENEWAL_KEYVAULT_STATIC_TOKEN``
    Development only: a static bearer token for the local emulator; refused unless every vault URL is on loopback.
``RENEWAL_NOTIFIERS``
    JSON object, notifier name → ``{"kind": "teams" | "slack" | "email", ...}``: see docs/notifications.md.
``RENEWAL_CONSUMER_LEAD_HOURS``
    The renewal window opens no later than this many hours before expiry; ``auto``: the slowest configured
    deployment target's own pick-up time plus ``RENEWAL_CA_TURNAROUND_HOURS`` (default 1) plus one sweep interval.
``RENEWAL_VAULT_CREATE_RATE`` / ``RENEWAL_VAULT_CREATE_RATES``
    Certificate creates per 10 s per vault, across every instance (default 20, Key Vault's software-key limit; 0
    turns pacing off), and per-vault overrides ``name=10,other=5`` (HSM vaults: 10).
``RENEWAL_OBSERVE``
    ``true``: observe mode. The app decides and reports what it would do (``would_renew``, with the window) but
    creates no version and asks no CA. A certificate's ``renewal-observe`` tag (``true``/``false``) overrides it.
``RENEWAL_SDK_LOG_LEVEL``
    The Azure SDK loggers' level (default ``WARNING``: their HTTP logging policy logs every request at INFO).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from urllib.parse import urlsplit

from renewal._shared.secrets import resolve_secret_setting
from renewal._shared.specs import match_tag, named_specs, reject_unknown_keys
from renewal._shared.urls import is_loopback_host, url_problem
from renewal.ca import ADAPTERS, adapter_location
from renewal.ca._protocol import CAProfile
from renewal.errors import ConfigurationError
from renewal.notify._config import NotifierConfig, notifier_secret_values, parse_notifiers
from renewal.pure.consumers import SELF_PICKUP
from renewal.pure.pacing import PacingOptions

__all__ = [
    "Settings",
    "VaultConfig",
    "WebhookEndpoint",
]

VAULTS = "RENEWAL_VAULTS"
CA_PROFILES = "RENEWAL_CA_PROFILES"
DEFAULT_CA_PROFILE = "RENEWAL_DEFAULT_CA_PROFILE"
WEBHOOKS = "RENEWAL_WEBHOOKS"
KEYVAULT_CA_BUNDLE = "RENEWAL_KEYVAULT_CA_BUNDLE"
KEYVAULT_STATIC_TOKEN = "RENEWAL_KEYVAULT_STATIC_TOKEN"  # noqa: S105 - the setting's name, not a token
JOURNAL_TABLE = "RENEWAL_JOURNAL_TABLE"
SWEEP_BUDGET = "RENEWAL_SWEEP_BUDGET_SECONDS"
WINDOW_FRACTION = "RENEWAL_WINDOW_FRACTION"
WINDOW_JITTER = "RENEWAL_WINDOW_JITTER"
WEBHOOK_MAX_AGE = "RENEWAL_WEBHOOK_MAX_AGE_HOURS"
ALERT_DAYS = "RENEWAL_ALERT_DAYS"
OUTCOME_TOPIC = "RENEWAL_OUTCOME_TOPIC_ENDPOINT"
CLAIM_SECONDS = "RENEWAL_CLAIM_SECONDS"
CA_POLL_SECONDS = "RENEWAL_CA_POLL_SECONDS"
RETRY_SECONDS = "RENEWAL_RETRY_SECONDS"
WEBHOOK_RETRY_SECONDS = "RENEWAL_WEBHOOK_RETRY_SECONDS"
KEYVAULT_TIMEOUT = "RENEWAL_KEYVAULT_TIMEOUT_SECONDS"
OUTCOME_TOPIC_KEY = "RENEWAL_OUTCOME_TOPIC_KEY_SETTING"
SWEEP_SCHEDULE = "RENEWAL_SWEEP_SCHEDULE"
OBSERVE = "RENEWAL_OBSERVE"
CONSUMER_LEAD = "RENEWAL_CONSUMER_LEAD_HOURS"
CA_TURNAROUND = "RENEWAL_CA_TURNAROUND_HOURS"
TARGETS = "RENEWAL_TARGETS"
SDK_LOG_LEVEL = "RENEWAL_SDK_LOG_LEVEL"
MANUAL_COOLDOWN = "RENEWAL_MANUAL_COOLDOWN_SECONDS"
OUTBOX_RETENTION = "RENEWAL_OUTBOX_RETENTION_DAYS"
# Every name is matched whole (``fullmatch``) and in ASCII: ``$`` lets a trailing newline through, and Unicode
# case folding maps the Kelvin sign to "k".
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}", re.ASCII)

# Key Vault names: "3-24 characters, alphanumerics and dashes, start with a letter, end with a letter or digit,
# no consecutive dashes" (Azure resource naming rules).
VAULT_NAME = re.compile(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]", re.ASCII)
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}", re.ASCII)
_WEBHOOK_KEYS = frozenset({"url", "secret_setting", "tag"})
_WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


@dataclass(frozen=True, slots=True)
class VaultConfig:
    """A vault the app is allowed to work on.

    Attributes:
        name: the vault's name as configured (its canonical case).
        url: the vault URL, https, without a trailing slash; the only URL the app ever sends a token to.
    """

    name: str
    url: str


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A deployment webhook.

    Attributes:
        name: the endpoint's name from configuration (used in logs and outcomes instead of the URL).
        url: where to POST; https, or http on loopback.
        secret: the Standard Webhooks signing secret (``whsec_...``); never shown in ``repr``.
        match_tag: ``(key, value)`` a certificate's tags must contain, or ``None`` for every certificate.
    """

    name: str
    url: str
    secret: str = field(repr=False)
    match_tag: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated app settings.

    Attributes:
        vaults: allowed vaults, keyed by lower-cased vault name.
        ca_profiles: CA profiles by name.
        default_ca_profile: the profile for untagged certificates, or ``None`` (untagged ones are not managed).
        webhooks: deployment webhook endpoints.
        keyvault_ca_bundle: path of a PEM CA bundle for the vault's TLS (development only).
        keyvault_static_token: a static bearer token for a loopback emulator (development only).
        environ: the environment the settings came from, to resolve adapter credential settings later.
        journal_table: the journal's table name.
        sweep_budget_seconds: the work one sweep run may do.
        window_fraction: the lifetime fraction after which the sweep renews.
        window_jitter: the largest fraction of the lifetime taken off a window's start, spread by name.
        webhook_max_age_hours: the age at which a failing delivery is dead-lettered.
        alert_days: days before expiry under which a failing renewal alarms at every sweep.
        outcome_topic_endpoint: the Event Grid custom topic for outcome events, if any.
        outcome_topic_key: that topic's access key, or ``None`` for the managed identity.
        claim_seconds: how long a claim lasts before another worker may take it over.
        ca_poll_seconds: how soon to poll a CA that deferred without saying when.
        retry_seconds: the first retry delay of a renewal that failed for now.
        webhook_retry_seconds: the first redelivery delay of a failed delivery.
        keyvault_timeout_seconds: connect and read timeout of each Key Vault request.
        sweep_interval: the longest gap between two sweeps, read from ``RENEWAL_SWEEP_SCHEDULE``, if set.
        manual_cooldown_seconds: a manual renewal inside this time after the current version was created is
            refused unless forced.
        secret_values: every secret the settings hold or name, for scrubbing text before it is shown.
        outbox_retention_days: how long delivered and dead-lettered notifications stay in the journal.
        storage: the settings that say where the journal lives (``AzureWebJobsStorage*``,
            ``RENEWAL_JOURNAL_CONNECTION``), as read.
        observe: observe mode for every certificate without a ``renewal-observe`` tag: decide and report
            (``would_renew``), never create a version or call a CA.
        window_lead: the renewal window opens no later than this before expiry (``RENEWAL_CONSUMER_LEAD_HOURS``:
            the slowest consumer's pick-up plus the CA's turnaround; docs/targets.md).
        pacing: the per-vault rate of certificate creates every instance keeps to (``RENEWAL_VAULT_CREATE_RATE``,
            ``RENEWAL_VAULT_CREATE_RATES``).
        notifiers: the Teams, Slack and e-mail notifiers (``RENEWAL_NOTIFIERS``, docs/notifications.md).
        sdk_log_level: the level of the Azure SDK's loggers (their HTTP logging policy logs every request at
            INFO, which costs money in Application Insights): WARNING unless asked.
    """

    vaults: Mapping[str, VaultConfig]
    ca_profiles: Mapping[str, CAProfile]
    default_ca_profile: str | None
    webhooks: tuple[WebhookEndpoint, ...]
    keyvault_ca_bundle: str | None
    keyvault_static_token: str | None = field(repr=False)
    # Not compared: two settings are equal when everything the app reads from the environment is (the named
    # secrets are in secret_values, the journal's storage in storage); see renewal.flow.entry.current_runtime.
    environ: Mapping[str, str] = field(repr=False, compare=False)
    journal_table: str = "renewals"
    sweep_budget_seconds: float = 120.0
    window_fraction: float = 2 / 3
    window_jitter: float = 0.02
    webhook_max_age_hours: float = 24.0
    alert_days: float = 7.0
    outcome_topic_endpoint: str | None = None
    outcome_topic_key: str | None = field(default=None, repr=False)
    claim_seconds: float = 600.0
    ca_poll_seconds: float = 300.0
    retry_seconds: float = 120.0
    webhook_retry_seconds: float = 60.0
    keyvault_timeout_seconds: float = 30.0
    sweep_interval: timedelta | None = None
    manual_cooldown_seconds: float = 300.0
    secret_values: frozenset[str] = field(default=frozenset(), repr=False)
    outbox_retention_days: float = 7.0
    storage: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    observe: bool = False
    sdk_log_level: str = "WARNING"
    notifiers: tuple[NotifierConfig, ...] = ()
    window_lead: timedelta = timedelta(0)
    pacing: PacingOptions = field(default_factory=PacingOptions)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate every setting.

        Raises:
            ConfigurationError: a setting is missing or malformed; the error names it.
        """
        vaults = _parse_vaults(environ.get(VAULTS, ""))
        profiles = _parse_ca_profiles(environ.get(CA_PROFILES, ""), environ)
        default = _optional(environ, DEFAULT_CA_PROFILE)
        if default is not None and default not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigurationError(DEFAULT_CA_PROFILE, f"names a profile {CA_PROFILES} lacks (configured: {known})")
        webhooks = _parse_webhooks(environ.get(WEBHOOKS, ""), environ)
        notifiers = parse_notifiers(environ)
        bundle = _optional(environ, KEYVAULT_CA_BUNDLE)
        if bundle is not None and not os.path.isfile(bundle):
            raise ConfigurationError(KEYVAULT_CA_BUNDLE, "names a file that does not exist")
        token = _optional(environ, KEYVAULT_STATIC_TOKEN)
        if token is not None:
            remote = [v.name for v in vaults.values() if not is_loopback_host(urlsplit(v.url).hostname or "")]
            if remote:
                raise ConfigurationError(
                    KEYVAULT_STATIC_TOKEN,
                    f"is for a local emulator only, but vault(s) {', '.join(remote)} are not on loopback",
                )
        journal_table = _optional(environ, JOURNAL_TABLE) or "renewals"
        if not _TABLE_NAME.fullmatch(journal_table):
            raise ConfigurationError(JOURNAL_TABLE, "must be 3-63 letters and digits, starting with a letter")
        topic = _optional(environ, OUTCOME_TOPIC)
        if topic is not None:
            problem = url_problem(topic)
            if problem:
                raise ConfigurationError(OUTCOME_TOPIC, problem)
        topic_key_setting = _optional(environ, OUTCOME_TOPIC_KEY)
        topic_key = (
            resolve_secret_setting(environ, topic_key_setting, named_by=(OUTCOME_TOPIC_KEY, "this setting"))
            if topic_key_setting
            else None
        )
        return cls(
            journal_table=journal_table,
            sweep_budget_seconds=_number(environ, SWEEP_BUDGET, 120.0, low=5.0, high=3600.0),
            window_fraction=_number(environ, WINDOW_FRACTION, 2 / 3, low=0.05, high=0.99),
            window_jitter=_number(environ, WINDOW_JITTER, 0.02, low=0.0, high=0.2),
            webhook_max_age_hours=_number(environ, WEBHOOK_MAX_AGE, 24.0, low=0.0001, high=24.0 * 30),
            alert_days=_number(environ, ALERT_DAYS, 7.0, low=0.0, high=365.0),
            outcome_topic_endpoint=topic,
            claim_seconds=_number(environ, CLAIM_SECONDS, 600.0, low=1.0, high=86400.0),
            ca_poll_seconds=_number(environ, CA_POLL_SECONDS, 300.0, low=0.0, high=86400.0),
            retry_seconds=_number(environ, RETRY_SECONDS, 120.0, low=0.0, high=86400.0),
            webhook_retry_seconds=_number(environ, WEBHOOK_RETRY_SECONDS, 60.0, low=0.0, high=86400.0),
            keyvault_timeout_seconds=_number(environ, KEYVAULT_TIMEOUT, 30.0, low=0.5, high=300.0),
            sweep_interval=_sweep_interval(environ),
            manual_cooldown_seconds=_number(environ, MANUAL_COOLDOWN, 300.0, low=0.0, high=86400.0),
            outbox_retention_days=_number(environ, OUTBOX_RETENTION, 7.0, low=1.0, high=365.0),
            observe=_flag(environ, OBSERVE),
            pacing=PacingOptions.from_environ(environ),
            window_lead=_window_lead(environ, _sweep_interval(environ)),
            sdk_log_level=_log_level(environ, SDK_LOG_LEVEL),
            storage=tuple(
                sorted(
                    (key, value)
                    for key, value in environ.items()
                    if key.startswith("AzureWebJobsStorage") or key == "RENEWAL_JOURNAL_CONNECTION"
                )
            ),
            secret_values=_secret_values(environ, profiles, webhooks, token, topic_key)
            | frozenset(v for v in notifier_secret_values(notifiers, environ) if len(v) >= 8),
            notifiers=notifiers,
            outcome_topic_key=topic_key,
            vaults=MappingProxyType(vaults),
            ca_profiles=MappingProxyType(profiles),
            default_ca_profile=default,
            webhooks=webhooks,
            keyvault_ca_bundle=bundle,
            keyvault_static_token=token,
            environ=MappingProxyType(dict(environ)),
        )


def _window_lead(environ: Mapping[str, str], sweep_interval: timedelta | None) -> timedelta:
    """``RENEWAL_CONSUMER_LEAD_HOURS``: unset, no lead; hours; or ``auto``: the slowest kind of deployment target
    configured (its own pick-up time, with no push), plus the CA's turnaround, plus one sweep interval."""
    raw = _optional(environ, CONSUMER_LEAD)
    if raw is None:
        return timedelta(0)
    if raw.lower() != "auto":
        return timedelta(hours=_number(environ, CONSUMER_LEAD, 0.0, low=0.0, high=24.0 * 365))
    turnaround = timedelta(hours=_number(environ, CA_TURNAROUND, 1.0, low=0.0, high=24.0 * 30))
    # The kinds only: RENEWAL_TARGETS is validated whole where the targets are built (renewal.targets).
    try:
        specs = json.loads(environ.get(TARGETS, "") or "{}")
    except ValueError:
        raise ConfigurationError(TARGETS, "is not valid JSON") from None
    kinds = (
        {str(spec.get("kind")) for spec in specs.values() if isinstance(spec, dict)}
        if isinstance(specs, dict)
        else set()
    )
    slowest = max((SELF_PICKUP[kind] for kind in kinds if kind in SELF_PICKUP), default=timedelta(0))
    if slowest == timedelta(0):
        return timedelta(0)
    return slowest + turnaround + (sweep_interval or timedelta(0))


def _flag(environ: Mapping[str, str], setting: str) -> bool:
    raw = (_optional(environ, setting) or "false").lower()
    if raw in ("true", "yes", "1", "on"):
        return True
    if raw in ("false", "no", "0", "off"):
        return False
    raise ConfigurationError(setting, "must be true or false")


def _log_level(environ: Mapping[str, str], setting: str) -> str:
    raw = (_optional(environ, setting) or "WARNING").upper()
    if raw not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigurationError(setting, "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return raw


def _number(environ: Mapping[str, str], setting: str, default: float, *, low: float, high: float) -> float:
    raw = _optional(environ, setting)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(setting, "must be a number") from None
    if not low <= value <= high:
        raise ConfigurationError(setting, f"must be between {low:g} and {high:g}")
    return value


def _sweep_interval(environ: Mapping[str, str]) -> timedelta | None:
    raw = _optional(environ, SWEEP_SCHEDULE)
    if raw is None:
        return None
    from renewal.pure.schedule import sweep_interval

    interval = sweep_interval(raw)
    if interval is None and not raw.startswith("%"):
        raise ConfigurationError(SWEEP_SCHEDULE, "is not a six-field NCRONTAB schedule ({second} {minute} {hour} ...)")
    return interval


# Shapes of the connection strings' secret parts, whose values must never be shown.
_CONNECTION_SECRETS = re.compile(r"(?:AccountKey|SharedAccessSignature|SharedAccessKey)=([^;]+)", re.IGNORECASE)
_CONNECTION_SETTINGS = ("AzureWebJobsStorage", "RENEWAL_JOURNAL_CONNECTION", "APPLICATIONINSIGHTS_CONNECTION_STRING")


def _secret_values(
    environ: Mapping[str, str],
    profiles: Mapping[str, CAProfile],
    webhooks: tuple[WebhookEndpoint, ...],
    token: str | None,
    topic_key: str | None,
) -> frozenset[str]:
    values: set[str] = {endpoint.secret for endpoint in webhooks}
    values.update(v for v in (token, topic_key, environ.get("RENEWAL_ARM_STATIC_TOKEN", "").strip()) if v)

    def named(options: object) -> None:
        if isinstance(options, Mapping):
            for key, value in options.items():
                if isinstance(key, str) and key.endswith("_setting") and isinstance(value, str):
                    secret = environ.get(value, "").strip()
                    if secret:
                        values.add(secret)
                        # One-line PEM settings are read with their "\n" escapes turned into newlines.
                        values.add(secret.replace("\\n", "\n"))
                else:
                    named(value)
        elif isinstance(options, list):
            for item in options:
                named(item)

    for profile in profiles.values():
        named(profile.options)
    for setting in _CONNECTION_SETTINGS:
        values.update(match.group(1) for match in _CONNECTION_SECRETS.finditer(environ.get(setting, "")))
    # Too short a value would redact ordinary words; such a "secret" protects nothing anyway.
    return frozenset(v for v in values if len(v) >= 8)


def _optional(environ: Mapping[str, str], setting: str) -> str | None:
    value = environ.get(setting, "").strip()
    return value or None


def _parse_vaults(raw: str) -> dict[str, VaultConfig]:
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if not entries:
        raise ConfigurationError(VAULTS, "is required: a comma-separated list of name=https://url or name")
    vaults: dict[str, VaultConfig] = {}
    for position, entry in enumerate(entries, start=1):
        name, sep, url = (part.strip() for part in entry.partition("="))
        if not VAULT_NAME.fullmatch(name):
            raise ConfigurationError(
                VAULTS, f"entry {position} is not a valid vault name (3-24 ASCII letters, digits and dashes)"
            )
        url = _vault_url(url) if sep else f"https://{name.lower()}.vault.azure.net"
        if name.lower() in vaults:
            raise ConfigurationError(VAULTS, f"vault {name!r} is listed twice")
        twin = next((v.name for v in vaults.values() if v.url.lower() == url.lower()), None)
        if twin is not None:
            raise ConfigurationError(VAULTS, f"vaults {twin!r} and {name!r} have the same URL")
        vaults[name.lower()] = VaultConfig(name=name, url=url)
    return vaults


def _vault_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(VAULTS, "a vault URL is not a valid URL") from exc
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigurationError(VAULTS, "a vault URL must be https with a host")
    if not parts.hostname.isascii():
        raise ConfigurationError(VAULTS, "a vault URL's host must be ASCII (IDNA-encode it)")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path.strip("/"):
        raise ConfigurationError(VAULTS, f"{parts.hostname!r}: a vault URL has no path, query or credentials")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"https://{host}" + (f":{port}" if port is not None else "")


def _parse_ca_profiles(raw: str, environ: Mapping[str, str]) -> dict[str, CAProfile]:
    profiles: dict[str, CAProfile] = {}
    for name, spec in named_specs(CA_PROFILES, raw, noun="profile"):
        adapter = spec.get("adapter")
        # The adapter is named, not imported, here: the runtime builds it when a renewal needs it (and may be
        # handed an instance for the profile instead).
        if not isinstance(adapter, str) or adapter_location(adapter) is None:
            known = ", ".join(sorted(ADAPTERS))
            raise ConfigurationError(
                CA_PROFILES, f"profile {name!r}: adapter must be one of {known}, or package.module:Class"
            )
        options = {key: value for key, value in spec.items() if key != "adapter"}
        for key, value in options.items():
            if isinstance(value, str) and "-----BEGIN" in value:
                raise ConfigurationError(
                    CA_PROFILES,
                    f"profile {name!r}: option {key!r} holds PEM text; put it in an app setting and name that "
                    "setting with a *_setting option",
                )
            if key.endswith("_setting"):
                if not isinstance(value, str) or not _SETTING_NAME.fullmatch(value):
                    raise ConfigurationError(CA_PROFILES, f"profile {name!r}: {key} must name an app setting")
                resolve_secret_setting(environ, value, named_by=(CA_PROFILES, f"profile {name!r}: option {key}"))
        profiles[name] = CAProfile(name=name, adapter=adapter, options=MappingProxyType(options))
    return profiles


def _parse_webhooks(raw: str, environ: Mapping[str, str]) -> tuple[WebhookEndpoint, ...]:
    endpoints = []
    for name, spec in named_specs(WEBHOOKS, raw, noun="endpoint"):
        reject_unknown_keys(WEBHOOKS, f"endpoint {name!r}", spec, _WEBHOOK_KEYS)
        url = spec.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ConfigurationError(WEBHOOKS, f"endpoint {name!r}: url is required")
        problem = url_problem(url.strip())
        if problem:
            raise ConfigurationError(WEBHOOKS, f"endpoint {name!r}: {problem}")
        secret_setting = spec.get("secret_setting")
        if not isinstance(secret_setting, str) or not _SETTING_NAME.fullmatch(secret_setting):
            raise ConfigurationError(WEBHOOKS, f"endpoint {name!r}: secret_setting must name an app setting")
        secret = resolve_secret_setting(
            environ, secret_setting, named_by=(WEBHOOKS, f"endpoint {name!r}: secret_setting")
        )
        _check_webhook_secret(secret_setting, secret)
        endpoints.append(
            WebhookEndpoint(
                name=name,
                url=url.strip(),
                secret=secret,
                match_tag=match_tag(WEBHOOKS, f"endpoint {name!r}", spec.get("tag")),
            )
        )
    return tuple(endpoints)


def _check_webhook_secret(setting: str, secret: str) -> None:
    if not secret.startswith(_WEBHOOK_SECRET_PREFIX):
        raise ConfigurationError(setting, "must be a Standard Webhooks secret: whsec_ followed by base64")
    try:
        key = base64.b64decode(secret[len(_WEBHOOK_SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(setting, "must be a Standard Webhooks secret: whsec_ followed by base64") from exc
    # Standard Webhooks: "secrets ... between 24 bytes (192 bits) and 64 bytes (512 bits)".
    if not 24 <= len(key) <= 64:
        raise ConfigurationError(setting, "must decode to 24 to 64 bytes (Standard Webhooks)")
