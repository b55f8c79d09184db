"""The certificate tags the app reads, and the one way it reads them (pure).

A tag's name is matched whole, case-insensitively, and only when it is ASCII: ``str.lower()`` folds the Kelvin
sign ``K`` (U+212A) to ``k``, so a non-ASCII name could otherwise pose as one of ours. Values are bounded, so
a tag cannot make parsing costly.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CA_PROFILE_TAG",
    "LEGACY_TAGS",
    "MAX_TAGS",
    "MAX_TAG_VALUE",
    "NOTIFY_TAG",
    "OBSERVE_TAG",
    "PAUSED_TAG",
    "RENEWED_BY_TAG",
    "RENEWED_BY_VALUE",
    "WINDOW_TAG",
    "is_observed",
    "is_paused",
    "our_tag",
    "previous_version_tagged",
    "renewed_by_the_app",
    "tag_value",
]

CA_PROFILE_TAG = "renewal-ca"
WINDOW_TAG = "renewal-window"
PAUSED_TAG = "renewal-paused"
NOTIFY_TAG = "renewal-notify"
OBSERVE_TAG = "renewal-observe"
# The one tag the app adds to a version it renews: who renewed it, with which profile, replacing which version
# (``keyvault-private-ca-renewal;profile=corp;previous=<version>``). One tag, not three: Key Vault allows 15, and
# every tag the app takes is one the certificate's owners cannot use.
RENEWED_BY_TAG = "renewal-by"
RENEWED_BY_VALUE = "keyvault-private-ca-renewal"
# The three tags versions renewed before carried; read still, and dropped from the next version.
LEGACY_TAGS = ("renewal-ca-profile", "renewal-previous-version")
_LEGACY_PREVIOUS = "renewal-previous-version"
# Key Vault allows 15 tags per version, and tag values of up to 256 characters.
MAX_TAGS = 15
MAX_TAG_VALUE = 256
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def tag_value(tags: Mapping[str, str], name: str) -> str | None:
    """The value of the tag called ``name`` (ASCII, whole, case-insensitive), stripped; ``None`` when absent."""
    for key, value in tags.items():
        if isinstance(key, str) and key.isascii() and key.strip().lower() == name:
            return value.strip() if isinstance(value, str) else None
    return None


def is_paused(tags: Mapping[str, str]) -> bool:
    """Whether the ``renewal-paused`` tag stops renewals of this certificate (``true``, ``yes``, ``1``, ``on``)."""
    value = tag_value(tags, PAUSED_TAG)
    return value is not None and value.isascii() and value.lower() in _TRUE


def renewed_by_the_app(tags: Mapping[str, str]) -> bool:
    """Whether the version carrying ``tags`` was merged by this app."""
    value = tag_value(tags, RENEWED_BY_TAG)
    return value is not None and (value == RENEWED_BY_VALUE or value.startswith(RENEWED_BY_VALUE + ";"))


def our_tag(*, profile: str, previous_version: str | None) -> tuple[str, str]:
    """The app's one tag for a version it renews: ``(name, value)``."""
    value = f"{RENEWED_BY_VALUE};profile={profile}"
    if previous_version:
        value += f";previous={previous_version}"
    return RENEWED_BY_TAG, value[:MAX_TAG_VALUE]


def previous_version_tagged(tags: Mapping[str, str]) -> str | None:
    """The version the app replaced with the version carrying ``tags``, as its tag says (or the legacy tag)."""
    value = tag_value(tags, RENEWED_BY_TAG)
    if value is not None and value.startswith(RENEWED_BY_VALUE + ";"):
        for part in value.split(";")[1:]:
            key, _, found = part.partition("=")
            if key == "previous" and found:
                return found
    return tag_value(tags, _LEGACY_PREVIOUS) or None


def is_observed(tags: Mapping[str, str], *, app_observes: bool) -> bool:
    """Whether observe mode holds this certificate: its ``renewal-observe`` tag (``true``/``false``) decides,
    else the app's ``RENEWAL_OBSERVE`` setting."""
    value = tag_value(tags, OBSERVE_TAG)
    if value is not None and value.isascii():
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
    return app_observes
