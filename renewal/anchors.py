"""The trust anchors a CA profile names for a planned CA rollover, read from a file or an app setting.

Not pure (it reads files and settings), so it sits apart from ``renewal.verify``, which takes what it returns.
Two profile options, common to every adapter, name the anchors instead of the default (the CA that issued the
version being replaced):

``trust_anchor_path``
    A PEM file of one or more CA certificates.
``trust_anchor_setting``
    The name of an app setting holding that PEM (a Key Vault reference works); literal ``\\n`` escapes, as a
    one-line setting has them, are accepted.

Errors name the profile and the option, never the option's value or what the file or setting holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from renewal.ca._protocol import CAProfile
from renewal.config import resolve_secret_setting
from renewal.errors import ConfigurationError

__all__ = ["TRUST_ANCHOR_OPTIONS", "TRUST_ANCHOR_PATH", "TRUST_ANCHOR_SETTING", "trust_anchors_for"]

TRUST_ANCHOR_PATH = "trust_anchor_path"
TRUST_ANCHOR_SETTING = "trust_anchor_setting"
TRUST_ANCHOR_OPTIONS = frozenset({TRUST_ANCHOR_PATH, TRUST_ANCHOR_SETTING})
_PROFILES_SETTING = "RENEWAL_CA_PROFILES"


def trust_anchors_for(profile: CAProfile, environ: Mapping[str, str]) -> tuple[x509.Certificate, ...]:
    """The CA certificates ``profile`` trusts for its renewals, or ``()`` when it names none (the default anchor).

    Raises:
        ConfigurationError: both options are given, an option is not a non-empty string, or the file or setting
            cannot be read as PEM CA certificates (names the option, never its value).
    """
    path, setting = (_option(profile, name) for name in (TRUST_ANCHOR_PATH, TRUST_ANCHOR_SETTING))
    if path is not None and setting is not None:
        raise _problem(profile, f"give {TRUST_ANCHOR_PATH} or {TRUST_ANCHOR_SETTING}, not both")
    if path is not None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise _problem(profile, f"option {TRUST_ANCHOR_PATH}: the file cannot be read ({exc.strerror})") from exc
        return _certificates(profile, TRUST_ANCHOR_PATH, data)
    if setting is not None:
        try:
            text = resolve_secret_setting(environ, setting)
        except ConfigurationError as exc:
            raise _problem(
                profile, f"option {TRUST_ANCHOR_SETTING}: the app setting it names is missing or empty"
            ) from exc
        # App settings are often entered on one line with literal "\n" escapes.
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        return _certificates(profile, TRUST_ANCHOR_SETTING, text.encode("ascii", errors="replace"))
    return ()


def _option(profile: CAProfile, name: str) -> str | None:
    value = profile.options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _problem(profile, f"option {name} must be a non-empty string")
    return value.strip()


def _certificates(profile: CAProfile, option: str, data: bytes) -> tuple[x509.Certificate, ...]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise _problem(profile, f"option {option}: holds no readable PEM certificate") from exc
    for position, certificate in enumerate(certificates, start=1):
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (x509.ExtensionNotFound, ValueError):
            is_ca = False
        if not is_ca:
            raise _problem(profile, f"option {option}: certificate {position} is not a CA (basicConstraints CA:TRUE)")
    return tuple(certificates)


def _problem(profile: CAProfile, text: str) -> ConfigurationError:
    return ConfigurationError(_PROFILES_SETTING, f"profile {profile.name!r}: {text}")
