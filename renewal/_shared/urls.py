"""URLs as the app allows and shows them: https (plain http only on loopback), and hosts only in messages."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

__all__ = ["host_of", "is_loopback_host", "url_problem"]

# What urlsplit's hostname may look like when we repeat it in a message (lower-cased by urlsplit).
_PRINTABLE_HOST = re.compile(r"[a-z0-9._:-]{1,253}")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's host name, without brackets) is ``localhost`` or a loopback address."""
    host = host.strip().lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why a webhook URL is refused (not https, and not plain http on loopback), or ``None`` when it is fine."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what raises for a malformed one
    except ValueError:
        return "url is not a valid URL"
    if not parts.hostname:
        return "url has no host"
    if parts.username or parts.password:
        return "url must not carry credentials"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return None
    return "url must be https (plain http only on loopback)"


def host_of(url: str | None) -> str:
    """The host name of ``url``, for a message: never its scheme, userinfo, port, path or query."""
    try:
        host = urlsplit(url or "").hostname
    except ValueError:
        host = None
    if not host or not _PRINTABLE_HOST.fullmatch(host):
        return "an unreadable host"
    return host
