"""Intake: parse one Key Vault certificate event into a typed request (pure, no I/O).

Nothing after intake sees raw JSON. Both envelopes are read: the Event Grid schema (``eventType``, ``topic``,
``subject``, ``data``, ``id``, ``eventTime``) and CloudEvents 1.0 (``type``, ``source``, ``subject``, ``data``,
``id``, ``time``, ``specversion``).

Key Vault's own sample events have a trailing space in a key (``"ObjectName "``), a leading space in a value,
and ``NBF``/``EXP`` as strings, while the SDK models use camelCase; so ``data`` keys are read case-insensitively
and trimmed, values are trimmed, and ``NBF``/``EXP`` may be numbers or strings.

The vault URL always comes from configuration, never from the event's ``Id``: a forged event must not make
the app send its managed identity's token anywhere else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from renewal.errors import PermanentError
from renewal.settings import VaultConfig

__all__ = [
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_NEAR_EXPIRY",
    "HANDLED_EVENT_TYPES",
    "OBJECT_NAME",
    "Ignored",
    "RenewalRequest",
    "on_demand_request",
    "parse_event",
]

CERTIFICATE_NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
CERTIFICATE_EXPIRED = "Microsoft.KeyVault.CertificateExpired"
HANDLED_EVENT_TYPES = (CERTIFICATE_NEAR_EXPIRY, CERTIFICATE_EXPIRED)

# Key Vault object names: "^[0-9a-zA-Z-]+$", at most 127 characters; versions are 32 lower-case hex characters,
# read leniently (any alphanumerics) and compared case-insensitively later.
# Names are matched whole (``fullmatch``: ``$`` would let "app1\n" through) and in ASCII only.
OBJECT_NAME = re.compile(r"[0-9A-Za-z-]{1,127}", re.ASCII)
_VERSION = re.compile(r"[0-9A-Za-z]{1,64}", re.ASCII)
# Key Vault's events name the vault's ARM id as topic (Event Grid schema) or source (CloudEvents).
_VAULT_RESOURCE_ID = re.compile(
    r"/subscriptions/[^/]+(?:/resourceGroups/[^/]+)?/providers/Microsoft\.KeyVault/vaults/([0-9A-Za-z-]{1,24})/*",
    re.ASCII | re.IGNORECASE,
)
_MAX_SHOWN = 60


@dataclass(frozen=True, slots=True)
class RenewalRequest:
    """A request to consider renewing one certificate.

    Attributes:
        vault_name: the vault's name as configured (canonical case).
        vault_url: the vault URL from configuration, never from the event.
        certificate_name: the Key Vault certificate's name.
        version: the version the event is about, if it said.
        not_before: the event version's not-before, tz-aware UTC, if it said.
        expires_on: the event version's expiry, tz-aware UTC, if it said.
        event_type: the event type (``Microsoft.KeyVault.CertificateNearExpiry``, ...), or the trigger's own name.
        event_id: the event's id, if any.
        trigger: ``event_grid``, ``manual`` or ``sweep``.
        notes: oddities seen while parsing that did not stop it (e.g. an ``Id`` naming another host),
            for the outcome message and the log.
        force: for a manual renewal, go ahead even when paused or inside the cooldown.
        suggested_start: an earlier window start the caller learnt from the CA (the sweep asks ACME ARI).
    """

    vault_name: str
    vault_url: str
    certificate_name: str
    version: str | None
    not_before: datetime | None
    expires_on: datetime | None
    event_type: str
    event_id: str | None
    trigger: str = "event_grid"
    notes: tuple[str, ...] = ()
    force: bool = False
    suggested_start: datetime | None = None


def on_demand_request(
    vault: VaultConfig,
    certificate_name: str,
    *,
    trigger: str,
    force: bool = False,
    suggested_start: datetime | None = None,
) -> RenewalRequest:
    """A request that no event carried: a manual renewal or the sweep's (no version or expiry to compare)."""
    return RenewalRequest(
        vault_name=vault.name,
        vault_url=vault.url,
        certificate_name=certificate_name,
        version=None,
        not_before=None,
        expires_on=None,
        event_type=trigger,
        event_id=None,
        trigger=trigger,
        force=force,
        suggested_start=suggested_start,
    )


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event the app acknowledges and does nothing about.

    Attributes:
        reason: ``unsupported_event_type``, ``not_a_key_vault_event``, ``vault_not_allowed`` or
            ``not_a_certificate``.
        message: a human explanation.
        vault_name: the vault the event named, if read.
        certificate_name: the object the event named, if read.
    """

    reason: str
    message: str
    vault_name: str | None = None
    certificate_name: str | None = None


def parse_event(envelope: Mapping[str, object], *, vaults: Mapping[str, VaultConfig]) -> RenewalRequest | Ignored:
    """Parse one event (Event Grid schema or CloudEvents 1.0) against the vault allow-list.

    ``vaults`` is keyed by lower-cased vault name, as ``Settings.vaults`` is.

    Raises:
        PermanentError: reason ``malformed_event``, when the event cannot be read. The message never
            echoes more than a short excerpt of any value.
    """
    if not isinstance(envelope, Mapping):
        raise _malformed(f"an event must be a JSON object, not {type(envelope).__name__}")
    env = _fold(envelope)
    cloud_event = "specversion" in env
    event_type = _text(env, "type" if cloud_event else "eventtype", where="envelope")
    if event_type is None:
        raise _malformed("the event has no " + ("type" if cloud_event else "eventType"))
    handled = {t.lower(): t for t in HANDLED_EVENT_TYPES}.get(event_type.lower())
    if handled is None:
        return Ignored("unsupported_event_type", f"event type {_show(event_type)} is not handled")
    event_id = _text(env, "id", where="envelope")
    data = _data(env.get("data"))
    resource = _text(env, "source" if cloud_event else "topic", where="envelope")
    if resource is not None and _VAULT_RESOURCE_ID.fullmatch(resource) is None:
        return Ignored(
            "not_a_key_vault_event",
            f"the event's {'source' if cloud_event else 'topic'} {_show(resource)} is not a Microsoft.KeyVault/vaults "
            "resource",
        )

    object_type = _text(data, "objecttype", where="data")
    object_name = _text(data, "objectname", where="data") or _text(env, "subject", where="envelope")
    if object_type is not None and object_type.lower() != "certificate":
        return Ignored(
            "not_a_certificate", f"object type {_show(object_type)} is not Certificate", certificate_name=object_name
        )
    if object_name is None:
        raise _malformed("the event names no certificate (no data.ObjectName and no subject)")
    if not OBJECT_NAME.fullmatch(object_name):
        raise _malformed(f"certificate name {_show(object_name)} is not a valid Key Vault name")

    vault_name = _vault_name(data, resource)
    vault = vaults.get(vault_name.lower())
    if vault is None:
        return Ignored(
            "vault_not_allowed",
            f"vault {_show(vault_name)} is not in RENEWAL_VAULTS",
            vault_name=vault_name,
            certificate_name=object_name,
        )

    version = _text(data, "version", where="data")
    if version is not None and not _VERSION.fullmatch(version):
        raise _malformed(f"version {_show(version)} is not a Key Vault version")
    notes = _id_notes(_text(data, "id", where="data"), vault, object_name)
    return RenewalRequest(
        vault_name=vault.name,
        vault_url=vault.url,
        certificate_name=object_name,
        version=version,
        not_before=_epoch(data, "nbf"),
        expires_on=_epoch(data, "exp"),
        event_type=handled,
        event_id=event_id,
        trigger="event_grid",
        notes=notes,
    )


def _malformed(message: str) -> PermanentError:
    return PermanentError(f"malformed event: {message}", reason="malformed_event")


def _show(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "...")


def _fold(mapping: Mapping[Any, object]) -> dict[str, object]:
    folded: dict[str, object] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise _malformed("a key is not a string")
        name = key.strip().lower()
        if name in folded:
            raise _malformed(f"key {_show(name)} appears twice (keys are read case-insensitively)")
        folded[name] = value
    return folded


def _data(value: object) -> dict[str, object]:
    if isinstance(value, str | bytes):
        # Some publishers send data as a JSON string rather than an object.
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise _malformed("data is a string that is not JSON, or nested too deeply") from exc
    if not isinstance(value, Mapping):
        raise _malformed(f"data must be an object, not {type(value).__name__}")
    return _fold(value)


def _text(mapping: Mapping[str, object], key: str, *, where: str) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _malformed(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value.strip() or None


def _vault_name(data: Mapping[str, object], resource: str | None) -> str:
    from_data = _text(data, "vaultname", where="data")
    match = _VAULT_RESOURCE_ID.fullmatch(resource) if resource else None
    from_resource = match.group(1).strip() if match else None
    if from_data and from_resource and from_data.lower() != from_resource.lower():
        raise _malformed(
            f"data.VaultName {_show(from_data)} disagrees with the topic/source vault {_show(from_resource)}"
        )
    name = from_data or from_resource
    if not name:
        raise _malformed("the event names no vault (no data.VaultName and no .../vaults/<name> topic or source)")
    return name


def _epoch(data: Mapping[str, object], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _malformed(f"data.{key.upper()} must be a number of seconds, not {type(value).__name__}")
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            seconds = float(value.strip())
        except ValueError as exc:
            raise _malformed(f"data.{key.upper()} {_show(value)} is not a number of seconds") from exc
    else:
        seconds = float(value)
    try:
        if not math.isfinite(seconds):
            raise ValueError(seconds)
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise _malformed(f"data.{key.upper()} {_show(value)} is out of range") from exc


def _id_notes(object_id: str | None, vault: VaultConfig, certificate_name: str) -> tuple[str, ...]:
    if object_id is None:
        return ()
    try:
        parts = urlsplit(object_id)
        host = (parts.hostname or "").lower()
    except ValueError:
        return (f"data.Id {_show(object_id)} is not a URL; ignored",)
    expected = (urlsplit(vault.url).hostname or "").lower()
    notes = []
    if host != expected:
        notes.append(f"data.Id names host {_show(host)}, not the configured {vault.url}; the configured URL is used")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[1].lower() != certificate_name.lower():
        notes.append(f"data.Id names object {_show(segments[1])}, not {certificate_name!r}; ObjectName is used")
    return tuple(notes)
