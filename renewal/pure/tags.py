"""The certificate tags the app reads, and the one way it reads them (pure).

A tag's name is matched whole, case-insensitively, and only when it is ASCII: ``str.lower()`` folds the Kelvin
sign ``K`` (U+212A) to ``k``, so a non-ASCII name could otherwise pose as one of ours. Values are bounded, so
a tag cannot make parsing costly.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CA_PROFILE_TAG",
    "MAX_TAG_VALUE",
    "NOTIFY_TAG",
    "PAUSED_TAG",
    "RENEWED_BY_TAG",
    "RENEWED_BY_VALUE",
    "WINDOW_TAG",
    "is_paused",
    "renewed_by_the_app",
    "tag_value",
]

CA_PROFILE_TAG = "renewal-ca"
WINDOW_TAG = "renewal-window"
PAUSED_TAG = "renewal-paused"
NOTIFY_TAG = "renewal-notify"
# Set on every version the app merges.
RENEWED_BY_TAG = "renewal-by"
RENEWED_BY_VALUE = "keyvault-private-ca-renewal"
# Key Vault allows tag values of up to 256 characters.
MAX_TAG_VALUE = 256
_TRUE = frozenset({"true", "yes", "1", "on"})


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
    return tag_value(tags, RENEWED_BY_TAG) == RENEWED_BY_VALUE
