"""Settings that hold a JSON object of named specs (``RENEWAL_CA_PROFILES``, ``RENEWAL_WEBHOOKS``,
``RENEWAL_NOTIFIERS``, ``RENEWAL_TARGETS``): reading the object, checking each name, key and ``tag`` alike.

Every error is a ``ConfigurationError`` naming the setting and the spec, never a value: a value may be something
the operator pasted by mistake (a URL with its credential, a key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

from renewal.errors import ConfigurationError

__all__ = ["SPEC_NAME", "load_json_object", "match_tag", "named_specs", "reject_unknown_keys"]

SPEC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)
# Longer keys are cut in messages: a key may be a value pasted in the wrong place.
_KEY_SHOWN = 40


def load_json_object(setting: str, raw: str, *, shape: str = "a JSON object") -> dict[str, object]:
    """The JSON object ``raw`` holds (empty when ``raw`` is blank).

    Args:
        setting: the setting's name, for the errors.
        raw: its text.
        shape: what it must be, as the error says it (``a JSON object of named targets``).

    Raises:
        ConfigurationError: it is not JSON (the position only, never the text), nested too deeply, or not an
            object.
    """
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(setting, f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise ConfigurationError(setting, "is nested too deeply") from exc
    if not isinstance(value, dict):
        raise ConfigurationError(setting, f"must be {shape}")
    return value


def named_specs(
    setting: str, raw: str, *, noun: str, shape: str = "a JSON object"
) -> Iterator[tuple[str, dict[str, object]]]:
    """Each ``(name, spec)`` of the object ``raw`` holds, in order, its name and shape checked as it is reached
    (so the first mistake in the text is the one reported).

    Args:
        setting: the setting's name, for the errors.
        raw: its text (blank: no specs).
        noun: what one spec is (``notifier``), as the errors say it.
        shape: what the whole must be, as ``load_json_object`` says it.

    Raises:
        ConfigurationError: as ``load_json_object`` (at once); a name is not ``SPEC_NAME`` (ASCII letters, digits,
            ``_ . -``) or a spec is not an object (when reached).
    """
    specs = load_json_object(setting, raw, shape=shape)
    article = "an" if noun[:1] in "aeiou" else "a"

    def checked() -> Iterator[tuple[str, dict[str, object]]]:
        for name, spec in specs.items():
            if not SPEC_NAME.fullmatch(name):
                raise ConfigurationError(setting, f"{article} {noun} name is not valid (ASCII letters, digits, _ . -)")
            if not isinstance(spec, dict):
                raise ConfigurationError(setting, f"{noun} {name!r} must be a JSON object")
            yield name, spec

    return checked()


def reject_unknown_keys(setting: str, where: str, spec: Mapping[str, object], known: frozenset[str]) -> None:
    """Refuse a spec with keys outside ``known`` (``where`` names the spec: ``notifier 'ops'``).

    Raises:
        ConfigurationError: ``<where>: unknown key(s) a, b``, each key cut to 40 characters.
    """
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigurationError(setting, f"{where}: unknown key(s) {', '.join(key[:_KEY_SHOWN] for key in unknown)}")


def match_tag(setting: str, where: str, tag: object) -> tuple[str, str] | None:
    """A spec's ``tag`` (``key=value``, both trimmed) as ``(key, value)``; ``None`` when it has none.

    Raises:
        ConfigurationError: ``<where>: tag must be 'key=value'`` (not a string, no ``=``, or an empty key).
    """
    if tag is None:
        return None
    if not isinstance(tag, str) or "=" not in tag:
        raise ConfigurationError(setting, f"{where}: tag must be 'key=value'")
    key, _, value = (part.strip() for part in tag.partition("="))
    if not key:
        raise ConfigurationError(setting, f"{where}: tag must be 'key=value'")
    return key, value
