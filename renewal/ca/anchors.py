"""The trust anchors a CA profile names for a planned CA rollover, read from a file or an app setting.

Not pure (it reads files and settings), so it sits apart from ``renewal.pure.verify``, which takes what it returns.
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

from cryptography import x509

from renewal.ca._options import COMMON_OPTIONS, CommonOptions, parse_options, profile_problem
from renewal.ca._protocol import CAProfile

__all__ = ["TRUST_ANCHOR_OPTIONS", "TRUST_ANCHOR_PATH", "TRUST_ANCHOR_SETTING", "trust_anchors_for"]

TRUST_ANCHOR_PATH = "trust_anchor_path"
TRUST_ANCHOR_SETTING = "trust_anchor_setting"
TRUST_ANCHOR_OPTIONS = COMMON_OPTIONS


def trust_anchors_for(profile: CAProfile, environ: Mapping[str, str]) -> tuple[x509.Certificate, ...]:
    """The CA certificates ``profile`` trusts for its renewals, or ``()`` when it names none (the default anchor).

    Raises:
        ConfigurationError: both options are given, an option is not a non-empty string, or the file or setting
            cannot be read as PEM CA certificates (names the option, never its value).
    """
    # The adapter's own options are the adapter's to check; only the common ones are read here.
    own = CAProfile(profile.name, profile.adapter, {k: v for k, v in profile.options.items() if k in COMMON_OPTIONS})
    options = parse_options(CommonOptions, own, environ)
    if options.trust_anchor_path is not None:
        try:
            data = options.trust_anchor_path.read_bytes()
        except OSError as exc:
            raise profile_problem(
                profile, f"option {TRUST_ANCHOR_PATH}: the file cannot be read ({exc.strerror})"
            ) from exc
        return _certificates(profile, TRUST_ANCHOR_PATH, data)
    if options.trust_anchor_setting is not None:
        return _certificates(profile, TRUST_ANCHOR_SETTING, options.trust_anchor_setting.pem())
    return ()


def _certificates(profile: CAProfile, option: str, data: bytes) -> tuple[x509.Certificate, ...]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise profile_problem(profile, f"option {option}: holds no readable PEM certificate") from exc
    for position, certificate in enumerate(certificates, start=1):
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (x509.ExtensionNotFound, ValueError):
            is_ca = False
        if not is_ca:
            raise profile_problem(
                profile, f"option {option}: certificate {position} is not a CA (basicConstraints CA:TRUE)"
            )
    return tuple(certificates)
