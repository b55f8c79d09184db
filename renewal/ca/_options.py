"""CA profile options as data: each adapter declares a frozen, keyword-only options dataclass, and one parser reads
a profile into it.

A field's type says what the parser checks:

- ``str`` (non-empty, stripped), ``bool``, ``int``, ``float`` (an int is accepted), ``Path``, ``Literal[...]``,
  ``tuple[str, ...]`` (a JSON list of strings), ``Mapping[str, object]`` (a JSON object), each possibly
  ``| None``; a field without a default is required, and JSON ``null`` counts as absent;
- ``SecretSetting``: the option names an app setting (``*_setting``); the parser resolves it to a ``Secret``;
- ``Annotated[T, Check(...)]``: a condition on the value besides its type (``HttpsUrl``, ``ExistingFile``,
  ``Seconds``, ``HostNames``, ``between(...)``). Name a module-level ``Check`` in the annotation rather than
  writing a lambda there: ``get_type_hints`` evaluates annotations with the class's namespace as globals, where a
  lambda would not find the module's names.

Conditions between options (``not_both``, ``together``, ``goes_with``, ``exactly_one``) are checked in the class's
``__post_init__``, which raises ``OptionError``. Types are checked first, then those conditions, then each value's
checks, and missing secret settings last. ``CommonOptions`` are the options every adapter accepts besides its
own (read by ``renewal.ca.anchors``); ``CaBundleOptions`` and ``ClientCertificateOptions`` are the bases of adapters
that talk HTTPS, with ``tls_verify`` and ``client_certificate`` to use them.

Every error is a ``ConfigurationError`` for ``RENEWAL_CA_PROFILES`` naming the profile and the option, never a value
(not even a file path or a setting's name, which may be something pasted in the wrong place). Errors about what a
resolved app setting holds (an unreadable PKCS#12) name that setting, never what it holds.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from renewal._shared.http import ClientCertificate
from renewal._shared.secrets import resolve_secret_setting
from renewal._shared.urls import url_problem
from renewal.ca._protocol import CAProfile
from renewal.errors import ConfigurationError

__all__ = [
    "COMMON_OPTIONS",
    "RETIREMENT_OPTIONS",
    "CaBundleOptions",
    "Check",
    "ClientCertificateOptions",
    "CommonOptions",
    "ExistingFile",
    "HostNames",
    "HttpsUrl",
    "OptionError",
    "RetirementOptions",
    "Seconds",
    "Secret",
    "SecretSetting",
    "between",
    "client_certificate",
    "exactly_one",
    "goes_with",
    "not_both",
    "parse_option_object",
    "parse_options",
    "profile_problem",
    "read_certificates",
    "retirement_options",
    "tls_verify",
    "together",
]

_PROFILES_SETTING = "RENEWAL_CA_PROFILES"
_Options = TypeVar("_Options")


class OptionError(ValueError):
    """What is wrong with an option or a combination of options, in words that name options, never values."""


@dataclass(frozen=True, slots=True)
class Secret:
    """The value of the app setting a ``*_setting`` option names.

    Attributes:
        setting: the app setting's name, for errors about what it holds.
        value: what it holds, stripped; never in a ``repr``, a log line or a message.
    """

    setting: str
    value: str = field(repr=False)

    def pem(self) -> bytes:
        """The value as PEM bytes, with literal ``\\n`` escapes turned into line breaks."""
        text = self.value
        # App settings are often entered on one line with literal "\n" escapes.
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        return text.encode("ascii", errors="replace")


SecretSetting = Secret


@dataclass(frozen=True, slots=True)
class Check:
    """A condition on an option's value besides its type, for ``Annotated[T, Check(...)]``.

    Attributes:
        holds: whether a value (of the field's type, after ``tidy``) is acceptable.
        must: what an acceptable value is, for the message "option x must be {must}".
        tidy: how a value is kept, e.g. host names lower-cased (``None``: as given).
    """

    holds: Callable[[Any], bool]
    must: str
    tidy: Callable[[Any], Any] | None = None


def between(low: float, high: float = math.inf, *, low_ok: bool = True, whole: bool = False) -> Check:
    """A number from ``low`` (itself only when ``low_ok``) to ``high``; ``whole`` says the field is an ``int``."""
    kind = "a whole number" if whole else "a number"
    if high == math.inf:
        must = f"{kind} of at least {low:g}" if low_ok else f"{kind} greater than {low:g}"
        if low == 0 and not low_ok:
            must = f"a positive {kind.removeprefix('a ')}"
    else:
        must = f"{kind} from {low:g} to {high:g}" if low_ok else f"{kind} greater than {low:g} and at most {high:g}"
    return Check(lambda value: (low <= value if low_ok else low < value) and value <= high, must)


def _host_names(names: tuple[str, ...]) -> bool:
    return all(_HOST_NAME.fullmatch(name) for name in names)


def _has_certificates(secret: Secret) -> bool:
    try:
        return bool(x509.load_pem_x509_certificates(secret.pem()))
    except ValueError:
        return False


_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?|[0-9a-f:]{2,39}")
HttpsUrl = Annotated[
    str, Check(lambda url: url_problem(url) is None, "an https URL without credentials (plain http only on loopback)")
]
ExistingFile = Annotated[Path, Check(Path.is_file, "the path of a readable file")]
Seconds = Annotated[float, between(0, low_ok=False)]
HostNames = Annotated[
    tuple[str, ...],
    Check(_host_names, "a list of host names (no scheme, port or path)", lambda names: tuple(n.lower() for n in names)),
]
_PemCertificates = Check(_has_certificates, "the name of an app setting holding PEM certificates")


def not_both(options: object, first: str, second: str) -> None:
    """Refuse ``first`` and ``second`` given together.

    Raises:
        OptionError: both are given.
    """
    if getattr(options, first) is not None and getattr(options, second) is not None:
        raise OptionError(f"give {first} or {second}, not both")


def together(options: object, *names: str) -> None:
    """Refuse some of ``names`` without the others.

    Raises:
        OptionError: some but not all are given.
    """
    given = [getattr(options, name) is not None for name in names]
    if any(given) and not all(given):
        raise OptionError(f"{' and '.join(names)} go together")


def goes_with(options: object, name: str, needed: str) -> None:
    """Refuse ``name`` without ``needed``.

    Raises:
        OptionError: ``name`` is given and ``needed`` is not.
    """
    if getattr(options, name) is not None and getattr(options, needed) is None:
        raise OptionError(f"{name} goes with {needed}")


def exactly_one(options: object, *choices: str | tuple[str, ...], why: str = "") -> None:
    """Require exactly one of ``choices``, each an option or a group of options (one given is enough to count).

    Raises:
        OptionError: none or several are given; ``why`` is added to the message.
    """
    groups = [(choice,) if isinstance(choice, str) else choice for choice in choices]
    given = [group for group in groups if any(getattr(options, name) is not None for name in group)]
    if len(given) != 1:
        raise OptionError("give exactly one of " + ", ".join("+".join(group) for group in groups) + why)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommonOptions:
    """The options every adapter accepts besides its own: the trust anchors of a planned CA rollover.

    Read by ``renewal.ca.anchors``, not by the adapter (docs/verification.md).

    Attributes:
        trust_anchor_path: a PEM file of one or more CA certificates.
        trust_anchor_setting: an app setting holding that PEM (a Key Vault reference works).
    """

    trust_anchor_path: ExistingFile | None = None
    trust_anchor_setting: SecretSetting | None = None

    def __post_init__(self) -> None:
        not_both(self, "trust_anchor_path", "trust_anchor_setting")


COMMON_OPTIONS = frozenset(option.name for option in fields(CommonOptions))


@dataclass(frozen=True, slots=True, kw_only=True)
class RetirementOptions:
    """The options every adapter accepts about the certificate a renewal supersedes (docs/ca/revocation.md).

    Read by the rollout (``renewal.flow.retire``), not by the adapter; only an adapter that implements
    ``RevokingCAAdapter`` may set ``revoke_superseded``.

    Attributes:
        revoke_superseded: once every deployment target is seen serving the new version, revoke the version it
            replaced at the CA, then disable that Key Vault version and tag it ``renewal-revoked``.
        retire_grace_hours: for a certificate with no deployment target, how long after the merge the superseded
            version is retired (its consumers have that long to pick up the new one).
    """

    revoke_superseded: bool = False
    retire_grace_hours: Annotated[float, between(0)] = 24.0


RETIREMENT_OPTIONS = frozenset(option.name for option in fields(RetirementOptions))


@dataclass(frozen=True, slots=True, kw_only=True)
class CaBundleOptions:
    """The options of an adapter that talks HTTPS: the CA that signed its server's TLS certificate.

    Attributes:
        ca_bundle_path: a PEM file of CA certificates (``None``, and no setting: the system trust).
        ca_bundle_setting: an app setting holding that PEM (a Key Vault reference works; literal ``\\n`` too).
    """

    ca_bundle_path: ExistingFile | None = None
    ca_bundle_setting: Annotated[SecretSetting, _PemCertificates] | None = None

    def __post_init__(self) -> None:
        not_both(self, "ca_bundle_path", "ca_bundle_setting")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCertificateOptions(CaBundleOptions):
    """An HTTPS adapter's options for a TLS client certificate, besides the CA bundle.

    Attributes:
        client_pfx_setting: an app setting holding it as base64 PKCS#12, which is what a Key Vault reference to a
            Key Vault certificate's *secret* resolves to.
        client_pfx_password_setting: an app setting holding that PKCS#12's password, if it has one.
        client_pem_setting: an app setting holding the PEM certificate and its unencrypted key, in either order.
    """

    client_pfx_setting: SecretSetting | None = None
    client_pfx_password_setting: SecretSetting | None = None
    client_pem_setting: SecretSetting | None = None

    def __post_init__(self) -> None:
        # A slotted dataclass is a new class, so a zero-argument super() cannot find its base: name the base.
        CaBundleOptions.__post_init__(self)
        not_both(self, "client_pfx_setting", "client_pem_setting")
        goes_with(self, "client_pfx_password_setting", "client_pfx_setting")


def parse_options(options_class: type[_Options], profile: CAProfile, environ: Mapping[str, str]) -> _Options:
    """Read ``profile``'s options into ``options_class``, a dataclass, resolving its secret settings from ``environ``.

    ``COMMON_OPTIONS`` and ``RETIREMENT_OPTIONS`` are allowed besides the class's fields (they are
    ``renewal.ca.anchors``' and ``retirement_options``' to read).

    Raises:
        ConfigurationError: an option is unknown, missing, of the wrong type or refused by a check or a condition,
            or a secret setting is missing (setting ``RENEWAL_CA_PROFILES``, naming the profile and the option,
            never a value).
    """
    return _parse(
        options_class, profile.options, environ, where=f"profile {profile.name!r}",
        also_known=COMMON_OPTIONS | RETIREMENT_OPTIONS,
        unknown_suffix=f" for adapter {profile.adapter[:60]}",
    )  # fmt: skip


def retirement_options(profile: CAProfile, environ: Mapping[str, str], *, revokes: bool) -> RetirementOptions:
    """``profile``'s ``RetirementOptions``; ``revokes`` says whether its adapter can revoke (``RevokingCAAdapter``).

    Raises:
        ConfigurationError: an option is of the wrong type, or ``revoke_superseded`` is set for an adapter whose CA
            has no revocation call (AD CS web enrollment, EST).
    """
    own = CAProfile(
        profile.name, profile.adapter, {k: v for k, v in profile.options.items() if k in RETIREMENT_OPTIONS}
    )
    options = _parse(
        RetirementOptions, own.options, environ, where=f"profile {profile.name!r}", also_known=frozenset(),
        unknown_suffix="",
    )  # fmt: skip
    if options.revoke_superseded and not revokes:
        raise profile_problem(
            profile,
            f"option revoke_superseded: adapter {profile.adapter[:60]} cannot revoke certificates (its CA's "
            "protocol has no revocation call; see docs/ca/revocation.md), so the superseded certificate would never "
            "be revoked; remove the option or revoke at the CA by hand",
        )
    return options


def parse_option_object(
    options_class: type[_Options], options: Mapping[str, object], environ: Mapping[str, str], *, where: str
) -> _Options:
    """Read a nested option object (as ACME's ``dns_options``) into ``options_class``; ``where`` starts each message.

    Raises:
        ConfigurationError: as ``parse_options``.
    """
    return _parse(options_class, options, environ, where=where, also_known=frozenset(), unknown_suffix="")


def profile_problem(profile: CAProfile, text: str) -> ConfigurationError:
    """A ``ConfigurationError`` about ``profile``, for what an adapter finds after parsing (``text`` names no value)."""
    return ConfigurationError(_PROFILES_SETTING, f"profile {profile.name!r}: {text}")


def _parse(
    options_class: type[_Options],
    raw: Mapping[str, object],
    environ: Mapping[str, str],
    *,
    where: str,
    also_known: frozenset[str],
    unknown_suffix: str,
) -> _Options:
    def problem(text: str) -> ConfigurationError:
        return ConfigurationError(_PROFILES_SETTING, f"{where}: {text}")

    assert is_dataclass(options_class), "options classes are dataclasses"
    hints = get_type_hints(options_class, include_extras=True)
    declared = {option.name: option for option in fields(options_class)}
    unknown = sorted(set(raw) - set(declared) - also_known)
    if unknown:
        raise problem(f"unknown option(s) {', '.join(name[:40] for name in unknown)}{unknown_suffix}")
    # Types first, then the conditions between options (the shape of the profile), then each value's checks, and
    # missing secret settings last: an operator hears about what they typed before what the environment lacks.
    values: dict[str, object] = {}
    checks: dict[str, tuple[Check, ...]] = {}
    for name, option in declared.items():
        given = raw.get(name)
        if given is None:
            if option.default is MISSING and option.default_factory is MISSING:
                raise problem(f"option {name} is required")
            continue
        base, checks[name] = _unwrap(hints[name])
        try:
            values[name] = _convert(base, given, environ)
        except OptionError as exc:
            must = checks[name][0].must if checks[name] else str(exc)
            raise problem(f"option {name} must be {must}") from exc
    try:
        options_class(**values)
    except OptionError as exc:
        raise problem(str(exc)) from exc
    missing = {name: value.setting for name, value in values.items() if isinstance(value, Secret) and not value.value}
    for name in [name for name in values if name not in missing]:
        for check in checks[name]:
            values[name] = check.tidy(values[name]) if check.tidy else values[name]
            if not check.holds(values[name]):
                raise problem(f"option {name} must be {check.must}")
    for name, setting in missing.items():
        resolve_secret_setting(environ, setting, named_by=(_PROFILES_SETTING, f"{where}: option {name}"))
    return options_class(**values)


def _unwrap(hint: Any) -> tuple[Any, tuple[Check, ...]]:
    """The base type of a field's type hint (without ``| None`` and ``Annotated``) and its checks."""
    if get_origin(hint) in (Union, UnionType):
        (hint,) = (arg for arg in get_args(hint) if arg is not NoneType)
    if get_origin(hint) is Annotated:
        hint, *extras = get_args(hint)
        return hint, tuple(extra for extra in extras if isinstance(extra, Check))
    return hint, ()


def _convert(base: Any, value: object, environ: Mapping[str, str]) -> object:
    """``value`` as JSON gave it, as a value of ``base``; a ``Secret`` whose setting is missing has an empty value.

    Raises:
        OptionError: the value is not of ``base`` (its text says what it must be).
    """
    origin = get_origin(base)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise OptionError("true or false")
    if base is int or base is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or (base is int and isinstance(value, float)):
            raise OptionError("a whole number" if base is int else "a number")
        return base(value)
    if origin is Literal:
        if value in get_args(base):
            return value
        raise OptionError(" or ".join(repr(choice) for choice in get_args(base)))
    if origin is tuple:
        if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
            return tuple(item.strip() for item in value)
        raise OptionError("a list of non-empty strings")
    if origin is Mapping:
        if isinstance(value, Mapping):
            return MappingProxyType(dict(value))
        raise OptionError("a JSON object")
    if not isinstance(value, str) or not value.strip():
        raise OptionError("the name of an app setting" if base is Secret else "a non-empty string")
    if base is Secret:
        return Secret(value.strip(), environ.get(value.strip(), "").strip())
    if base is Path:
        return Path(value.strip())
    assert base is str, f"options of type {base!r} are not supported"
    return value.strip()


def read_certificates(profile: CAProfile, option: str, path: Path) -> list[x509.Certificate]:
    """The PEM certificates in the file an option names.

    Raises:
        ConfigurationError: the file cannot be read or holds no PEM certificate (names the option, not the path).
    """
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise profile_problem(profile, f"option {option}: the file cannot be read ({exc.strerror})") from exc
    except ValueError as exc:
        raise profile_problem(profile, f"option {option}: the file holds no PEM certificate") from exc


def tls_verify(options: CaBundleOptions) -> str | bool:
    """``requests``' ``verify=``: ``ca_bundle_path``, a file of ``ca_bundle_setting``'s certificates, or ``True``.

    ``True`` is the system trust. ``requests`` reads a CA bundle only from a file, so the setting's certificates are
    written once, for the adapter being built, to a file only this user can read (0600, in a 0700 directory),
    removed when the process exits. Only the certificates are written, so anything else pasted into the setting
    never reaches the disk.

    Raises:
        ConfigurationError: the file cannot be written.
    """
    if options.ca_bundle_path is not None:
        return str(options.ca_bundle_path)
    if options.ca_bundle_setting is None:
        return True
    certificates = x509.load_pem_x509_certificates(options.ca_bundle_setting.pem())
    try:
        directory = tempfile.mkdtemp(prefix="renewal-ca-bundle-")  # mkdtemp: "readable ... only by the creating user"
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = os.path.join(directory, "ca-bundle.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    except OSError as exc:
        raise ConfigurationError(
            _PROFILES_SETTING, f"option ca_bundle_setting: cannot write its certificates to a file ({exc.strerror})"
        ) from exc
    return path


def client_certificate(options: ClientCertificateOptions) -> ClientCertificate | None:
    """The TLS client certificate the options give, from ``client_pfx_setting`` or ``client_pem_setting``.

    Raises:
        ConfigurationError: the setting cannot be read as a certificate with its key (names the setting, never its
            value).
    """
    if options.client_pfx_setting is not None:
        setting = options.client_pfx_setting.setting
        password = options.client_pfx_password_setting
        try:
            data = base64.b64decode(options.client_pfx_setting.value, validate=True)
            key, certificate, additional = pkcs12.load_key_and_certificates(
                data, password.value.encode() if password else None
            )
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ConfigurationError(setting, "is not a base64 PKCS#12 (or its password is wrong)") from exc
        if key is None or certificate is None:
            raise ConfigurationError(setting, "holds no certificate with its private key")
        return ClientCertificate(certificate, key, tuple(additional))
    if options.client_pem_setting is not None:
        data = options.client_pem_setting.pem()
        try:
            certificates = x509.load_pem_x509_certificates(data)
            pem_key = serialization.load_pem_private_key(data, None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                options.client_pem_setting.setting, "must hold a PEM certificate and its unencrypted PEM private key"
            ) from exc
        return ClientCertificate(certificates[0], pem_key, tuple(certificates[1:]))
    return None
