"""The local file-based CA: signs CSRs with a CA certificate and key it holds, for development and small setups.

Profile options (``RENEWAL_CA_PROFILES``, adapter ``local``); exactly one source of the CA is given:

- ``ca_cert_path`` + ``ca_key_path``: PEM files; the key may be encrypted with the password held in the app
  setting named by ``ca_key_password_setting``;
- ``ca_cert_setting`` + ``ca_key_setting``: names of app settings holding PEM text (Key Vault references work);
- ``ca_pfx_setting``: name of an app setting holding a base64 PKCS#12 (as a Key Vault certificate's secret is),
  with an optional ``ca_pfx_password_setting``.

And optionally: ``chain_path`` (PEM file of the CA's own issuers, nearest first; the CA certificate itself is
dropped if listed), ``validity_days`` (when the request has no ``validity_months``; default 365),
``max_validity_hours`` (a cap on every leaf's lifetime, as Vault roles' ``max_ttl`` and step-ca's provisioners
have: a policy asking for more gets this much), ``approval``
(``"manual"`` to hold each request until a file ``<reference>.approved`` or ``<reference>.denied`` appears in
``approval_dir``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from renewal.ca._options import (
    ExistingFile,
    OptionError,
    Secret,
    SecretSetting,
    between,
    exactly_one,
    parse_options,
    profile_problem,
    read_certificates,
    retirement_options,
    together,
)
from renewal.ca._protocol import CAProfile, Issued, Pending, SigningRequest
from renewal.errors import ConfigurationError, PermanentError, RetryableError

__all__ = ["KEY_USAGE_NAMES", "LocalCA", "LocalOptions"]

# Key Vault's key usage names (CertificatePolicy x509_props.key_usage) → x509.KeyUsage arguments.
KEY_USAGE_NAMES = {
    "digitalsignature": "digital_signature",
    "nonrepudiation": "content_commitment",
    "keyencipherment": "key_encipherment",
    "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement",
    "keycertsign": "key_cert_sign",
    "crlsign": "crl_sign",
    "encipheronly": "encipher_only",
    "decipheronly": "decipher_only",
}
_REFERENCE = re.compile(r"^[0-9a-f]{32}$")
# Backdate a little: a verifier whose clock trails ours by a few seconds must not see "not yet valid".
_BACKDATE = timedelta(minutes=1)
_ISSUER_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)
_SignedKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalOptions:
    """A ``local`` profile's options (described above)."""

    ca_cert_path: ExistingFile | None = None
    ca_key_path: ExistingFile | None = None
    ca_key_password_setting: SecretSetting | None = None
    ca_cert_setting: SecretSetting | None = None
    ca_key_setting: SecretSetting | None = None
    ca_pfx_setting: SecretSetting | None = None
    ca_pfx_password_setting: SecretSetting | None = None
    chain_path: ExistingFile | None = None
    validity_days: Annotated[int, between(1, whole=True)] = 365
    max_validity_hours: Annotated[float, between(0, 24 * 36500, low_ok=False)] | None = None
    approval: Literal["auto", "manual"] = "auto"
    approval_dir: Path | None = None

    def __post_init__(self) -> None:
        exactly_one(self, ("ca_cert_path", "ca_key_path"), ("ca_cert_setting", "ca_key_setting"), "ca_pfx_setting")
        together(self, "ca_cert_path", "ca_key_path")
        together(self, "ca_cert_setting", "ca_key_setting")
        if self.approval == "manual" and self.approval_dir is None:
            raise OptionError("approval 'manual' needs approval_dir")


class LocalCA:
    """A CA adapter that signs with a CA certificate and key held locally.

    ``submit`` issues at once, or, with ``approval_dir``, stores the CSR and answers ``Pending`` until a file
    ``<reference>.approved`` (issue) or ``<reference>.denied`` (refuse) appears there.
    """

    def __init__(
        self,
        *,
        ca_certificate: x509.Certificate,
        ca_key: CertificateIssuerPrivateKeyTypes,
        chain: tuple[x509.Certificate, ...] = (),
        clock: Callable[[], datetime] = _utc_now,
        default_validity_days: int = 365,
        max_validity: timedelta | None = None,
        approval_dir: Path | None = None,
    ) -> None:
        """Hold a CA certificate and its key; ``clock`` returns tz-aware UTC now.

        Raises:
            ValueError: the key does not belong to the certificate, or the certificate is not a CA.
        """
        if _spki(ca_key.public_key()) != _spki(ca_certificate.public_key()):
            raise ValueError("the CA key does not belong to the CA certificate")
        if not _is_ca(ca_certificate):
            raise ValueError("the CA certificate lacks basicConstraints CA:TRUE")
        if default_validity_days < 1:
            raise ValueError("default_validity_days must be positive")
        self._certificate = ca_certificate
        self._key = ca_key
        self._chain = tuple(c for c in chain if c != ca_certificate)
        self._clock = clock
        self._default_validity = timedelta(days=default_validity_days)
        self._max_validity = max_validity
        self._approval_dir = approval_dir

    @classmethod
    def from_profile(
        cls, profile: CAProfile, environ: Mapping[str, str], *, clock: Callable[[], datetime] = _utc_now
    ) -> LocalCA:
        """Build a ``LocalCA`` from a profile's options, resolving secret settings from ``environ``.

        ``clock`` is the time it issues at (the emulator's, in tests and benchmarks that move time).

        Raises:
            ConfigurationError: an option is unknown or malformed, or a CA file or setting cannot be read;
                names ``RENEWAL_CA_PROFILES`` or the app setting at fault, never a secret value.
        """
        options = parse_options(LocalOptions, profile, environ)
        # The local CA keeps no revocation list: a profile asking to revoke is refused rather than pretended.
        retirement_options(profile, environ, revokes=False)
        certificate, key, chain = _issuer(profile, options)
        if options.chain_path is not None:
            chain.extend(read_certificates(profile, "chain_path", options.chain_path))
        directory = options.approval_dir if options.approval == "manual" else None
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise profile_problem(profile, f"option approval_dir: cannot create it ({exc.strerror})") from exc
        hours = options.max_validity_hours
        try:
            return cls(
                ca_certificate=certificate,
                ca_key=key,
                chain=tuple(chain),
                default_validity_days=options.validity_days,
                max_validity=timedelta(hours=hours) if hours is not None else None,
                approval_dir=directory,
                clock=clock,
            )
        except ValueError as exc:
            raise profile_problem(profile, str(exc)) from exc

    def check(self) -> str:
        """The CA certificate and key loaded and match (``from_profile`` checked it); say until when it signs.

        Raises:
            PermanentError: reason ``ca_expired`` when the CA certificate is no longer valid.
        """
        names = self._certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(names[0].value) if names else self._certificate.subject.rfc4514_string()
        until = self._certificate.not_valid_after_utc
        if until <= self._clock():
            raise PermanentError(f"the local CA certificate {name!r} expired on {until:%Y-%m-%d}", reason="ca_expired")
        return f"local CA {name!r}: certificate and key loaded, valid until {until:%Y-%m-%d}"

    def submit(self, request: SigningRequest) -> Issued | Pending:
        """Sign ``request``'s CSR, or hold it for approval.

        Raises:
            PermanentError: reason ``csr_invalid`` (unreadable CSR, bad signature, unsupported key),
                ``unsupported_key_usage``/``unsupported_eku`` (the policy asks for what a leaf cannot carry)
                or ``ca_expired``.
            RetryableError: reason ``approval_store_unavailable``, when the approval directory cannot be written.
        """
        csr = _load_csr(request.csr_der)
        if self._approval_dir is None:
            return self._issue(csr, request.validity_months, request.key_usage, request.ekus)
        reference = hashlib.sha256(request.csr_der).hexdigest()[:32]
        stored = {
            "vault_name": request.vault_name,
            "certificate_name": request.certificate_name,
            "validity_months": request.validity_months,
            "key_usage": list(request.key_usage),
            "ekus": list(request.ekus),
        }
        try:
            _write_once(self._approval_dir / f"{reference}.csr.pem", csr.public_bytes(serialization.Encoding.PEM))
            _write_once(self._approval_dir / f"{reference}.request.json", json.dumps(stored, indent=2).encode())
        except OSError as exc:
            raise RetryableError(
                f"cannot store the request in the approval directory: {exc.strerror}",
                reason="approval_store_unavailable",
            ) from exc
        return Pending(reference)

    def poll(self, reference: str) -> Issued | Pending:
        """Answer ``Issued`` once ``<reference>.approved`` exists, ``Pending`` until then.

        Raises:
            PermanentError: reason ``denied`` (``<reference>.denied`` exists), ``unknown_reference`` (never
                submitted, or its stored files are damaged), or any reason ``submit`` gives when signing.
            RetryableError: reason ``approval_store_unavailable``, when the issued certificate cannot be stored.
        """
        directory = self._approval_dir
        if directory is None or not _REFERENCE.match(reference):
            raise PermanentError(f"no request {reference[:40]!r} is held by this CA", reason="unknown_reference")
        csr_path = directory / f"{reference}.csr.pem"
        if not csr_path.exists():
            raise PermanentError(f"no request {reference!r} is held by this CA", reason="unknown_reference")
        if (directory / f"{reference}.denied").exists():
            raise PermanentError(f"request {reference} was denied", reason="denied")
        issued_path = directory / f"{reference}.issued.pem"
        if issued_path.exists():
            return Issued(issued_path.read_text(encoding="ascii"), self._chain_pem())
        if not (directory / f"{reference}.approved").exists():
            return Pending(reference)
        try:
            stored = json.loads((directory / f"{reference}.request.json").read_text(encoding="utf-8"))
            csr = x509.load_pem_x509_csr(csr_path.read_bytes())
            validity, usage, ekus = stored["validity_months"], tuple(stored["key_usage"]), tuple(stored["ekus"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PermanentError(f"the stored request {reference} is damaged", reason="unknown_reference") from exc
        issued = self._issue(csr, validity, usage, ekus)
        try:
            # Kept so that later polls return the same certificate instead of signing a new one each time.
            _write_once(issued_path, issued.leaf_pem.encode("ascii"))
            leaf_pem = issued_path.read_text(encoding="ascii")
        except OSError as exc:
            raise RetryableError(
                f"cannot store the issued certificate: {exc.strerror}", reason="approval_store_unavailable"
            ) from exc
        return Issued(leaf_pem, issued.chain_pem)

    def _chain_pem(self) -> tuple[str, ...]:
        return tuple(_pem(c) for c in (self._certificate, *self._chain))

    def _issue(
        self,
        csr: x509.CertificateSigningRequest,
        validity_months: int | None,
        key_usage: tuple[str, ...],
        ekus: tuple[str, ...],
    ) -> Issued:
        now = self._clock()
        ca = self._certificate
        if now >= ca.not_valid_after_utc:
            raise PermanentError(
                f"the CA certificate expired {ca.not_valid_after_utc.isoformat()}", reason="ca_expired"
            )
        not_after = _add_months(now, validity_months) if validity_months else now + self._default_validity
        if self._max_validity is not None:
            not_after = min(not_after, now + self._max_validity)
        not_after = min(not_after, ca.not_valid_after_utc)
        not_before = max(now - _BACKDATE, ca.not_valid_before_utc)
        public_key = csr.public_key()
        if not isinstance(public_key, _SignedKey):
            raise PermanentError("the CSR's key type cannot be certified", reason="csr_invalid")

        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca.subject)
            .public_key(public_key)
            # RFC 5280 §4.1.2.2: positive, at most 20 octets; 127 random bits (CA/B Forum asks for at least 64).
            .serial_number(secrets.randbits(127) | 1)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(key_usage, csr, public_key), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_authority_key_identifier(ca, self._key), critical=False)
        )
        extended = _extended_key_usage(ekus, csr)
        if extended is not None:
            builder = builder.add_extension(extended, critical=False)
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            # RFC 5280 §4.2.1.6: "If the subject field contains an empty sequence ... marked as critical".
            builder = builder.add_extension(sans, critical=len(csr.subject) == 0)
        except x509.ExtensionNotFound:
            pass
        algorithm = (
            None if isinstance(self._key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
        )
        leaf = builder.sign(self._key, algorithm)
        return Issued(_pem(leaf), self._chain_pem())


def _load_csr(csr_der: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_der_x509_csr(csr_der)
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise PermanentError("the CSR is not a readable DER PKCS#10 request", reason="csr_invalid") from exc
    if not valid:
        raise PermanentError("the CSR's signature does not verify", reason="csr_invalid")
    return csr


def _key_usage(names: tuple[str, ...], csr: x509.CertificateSigningRequest, key: _SignedKey) -> x509.KeyUsage:
    if not names:
        try:
            return csr.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            names = (
                ("digitalSignature", "keyEncipherment") if isinstance(key, rsa.RSAPublicKey) else ("digitalSignature",)
            )
    flags = dict.fromkeys(KEY_USAGE_NAMES.values(), False)
    for name in names:
        argument = KEY_USAGE_NAMES.get(name.strip().lower())
        if argument is None:
            raise PermanentError(
                f"key usage {name[:40]!r} is not a Key Vault key usage", reason="unsupported_key_usage"
            )
        flags[argument] = True
    if flags["key_cert_sign"] or flags["crl_sign"]:
        # RFC 5280 §4.2.1.3: keyCertSign/cRLSign only with basicConstraints CA:TRUE; this CA issues leaves only.
        raise PermanentError("keyCertSign and cRLSign are for CA certificates", reason="unsupported_key_usage")
    try:
        return x509.KeyUsage(**flags)
    except ValueError as exc:
        raise PermanentError(f"invalid key usage combination: {exc}", reason="unsupported_key_usage") from exc


def _extended_key_usage(oids: tuple[str, ...], csr: x509.CertificateSigningRequest) -> x509.ExtendedKeyUsage | None:
    if not oids:
        try:
            return csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return None
    try:
        return x509.ExtendedKeyUsage([x509.ObjectIdentifier(oid.strip()) for oid in oids])
    except ValueError as exc:
        raise PermanentError("an extended key usage is not a dotted OID", reason="unsupported_eku") from exc


def _authority_key_identifier(
    ca: x509.Certificate, key: CertificateIssuerPrivateKeyTypes
) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())


def _add_months(moment: datetime, months: int) -> datetime:
    years, month_index = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + years, month_index + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    result: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return result


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _write_once(path: Path, data: bytes) -> None:
    if path.exists():
        return
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _read(profile: CAProfile, option: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise profile_problem(profile, f"option {option}: the file cannot be read ({exc.strerror})") from exc


def _issuer(
    profile: CAProfile, options: LocalOptions
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes, list[x509.Certificate]]:
    """The CA certificate, its key and the certificates that came with them, from the one source the options give."""
    if options.ca_pfx_setting is not None:
        return _pkcs12(options.ca_pfx_setting, options.ca_pfx_password_setting)
    password = options.ca_key_password_setting.value.encode() if options.ca_key_password_setting else None
    unreadable_key = "is not a readable PEM private key (or its password is wrong)"
    if options.ca_cert_path is not None and options.ca_key_path is not None:
        certificate = _certificate(
            _read(profile, "ca_cert_path", options.ca_cert_path),
            profile_problem(profile, "option ca_cert_path: the file is not a PEM certificate"),
        )
        key = _private_key(
            _read(profile, "ca_key_path", options.ca_key_path),
            password,
            profile_problem(profile, f"option ca_key_path: the file {unreadable_key}"),
        )
        return certificate, key, []
    cert_setting, key_setting = options.ca_cert_setting, options.ca_key_setting
    assert cert_setting is not None, "LocalOptions holds exactly one source"
    assert key_setting is not None, "LocalOptions holds exactly one source"
    certificate = _certificate(cert_setting.pem(), ConfigurationError(cert_setting.setting, "is not a PEM certificate"))
    key = _private_key(key_setting.pem(), password, ConfigurationError(key_setting.setting, unreadable_key))
    return certificate, key, []


def _certificate(data: bytes, error: ConfigurationError) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise error from exc


def _private_key(data: bytes, password: bytes | None, error: ConfigurationError) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(data, password)
    except (ValueError, TypeError) as exc:
        raise error from exc
    if not isinstance(key, _ISSUER_KEYS):
        raise error
    return key


def _pkcs12(
    pfx: Secret, password: Secret | None
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes, list[x509.Certificate]]:
    try:
        data = base64.b64decode(pfx.value, validate=True)
        key, certificate, additional = pkcs12.load_key_and_certificates(
            data, password.value.encode() if password else None
        )
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ConfigurationError(pfx.setting, "is not a base64 PKCS#12 (or its password is wrong)") from exc
    if certificate is None or key is None or not isinstance(key, _ISSUER_KEYS):
        raise ConfigurationError(pfx.setting, "holds no certificate with a signing key")
    return certificate, key, list(additional)
