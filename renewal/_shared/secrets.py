"""Secrets named by settings: an option names the app setting that holds the value, never the value itself."""

from __future__ import annotations

from collections.abc import Mapping

from renewal.errors import ConfigurationError

__all__ = ["resolve_secret_setting"]


def resolve_secret_setting(environ: Mapping[str, str], setting: str, *, named_by: tuple[str, str] | None = None) -> str:
    """Return the non-empty value of the app setting ``setting``.

    ``named_by`` is ``(setting, where)``: the setting and option that name ``setting``. A missing setting is then
    reported against them, without repeating the name, since the name is what the operator typed and may be a
    secret pasted in the wrong place.

    Raises:
        ConfigurationError: the setting is missing or empty (never shows a value).
    """
    value = environ.get(setting, "").strip()
    if not value:
        if named_by is not None:
            parent, where = named_by
            raise ConfigurationError(parent, f"{where} names an app setting that is missing or empty")
        raise ConfigurationError(setting, "is missing or empty")
    return value
