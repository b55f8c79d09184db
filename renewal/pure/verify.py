"""Verify a CA's answer before anything reaches Key Vault: merge only what was asked, from the expected CA.

Pure: no I/O, no network, no file reads, no Azure SDK (docs/verification.md). "A CA that answers garbage, or anything
in front of it, must never get a certificate merged." Each rule fails with ``VerificationError`` and its own
reason, checked in this order (docs/verification.md has the same table):

============================  ========================================================================
reason                        the answer fails when
============================  ========================================================================
unparsable_csr                the CSR is not DER PKCS#10
unparsable_certificate        the leaf or a chain entry is not a PEM certificate
key_mismatch                  the leaf's public key is not the CSR's
leaf_not_end_entity           the leaf says CA:TRUE, or may sign certificates or CRLs (keyUsage)
unexpected_names              the leaf's SANs are not exactly the CSR's, or its subject holds an
                              attribute that was not asked for
unexpected_usage              an EKU the policy asked for is missing, or a powerful one it did not
                              ask for is present (codeSigning, OCSPSigning, timeStamping, anyEKU)
not_yet_valid                 the leaf starts more than ``CLOCK_SKEW`` after now
expired                       the leaf has expired
validity_too_long             the leaf lives longer than the policy's months plus ``VALIDITY_SLACK``
unknown_critical_extension    the leaf or a chain certificate has a critical extension outside
                              ``UNDERSTOOD_CRITICAL_EXTENSIONS``
chain_invalid                 a chain certificate is not a CA, is not valid now, or does not sign the
                              certificate before it
untrusted_issuer              the path does not reach the trust anchor (below)
============================  ========================================================================

The trust anchor. With configured anchors (the profile's ``trust_anchor_path`` or ``trust_anchor_setting``,
loaded by ``renewal.ca.anchors``, for a planned CA rollover) the path must end at one of them: an anchor appears in
the chain (same subject and public key), or an anchor's key signed the last certificate of the path. Without
them, the anchor is the CA that issued the version being replaced: the new chain must hold a certificate whose
subject is the replaced leaf's issuer, whose subject key identifier is the replaced leaf's authority key
identifier (when both exist), and under whose key the replaced leaf's signature verifies. Then the new leaf
chains to it by verified signatures, so a renewal signed by any other CA fails.

Messages say what the CA sent against what was asked, with every value clipped and escaped; never a PEM body.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from renewal.ca._protocol import Issued
from renewal.errors import VerificationError

__all__ = [
    "CLOCK_SKEW",
    "POWERFUL_EKUS",
    "UNDERSTOOD_CRITICAL_EXTENSIONS",
    "VALIDITY_SLACK",
    "VerifiedCertificate",
    "describe",
    "verify_issued",
]

# A CA's clock may run a little ahead of ours; a leaf that starts within this is not refused as not yet valid.
CLOCK_SKEW = timedelta(minutes=5)
# CAs round validity (whole days, a backdated start, an inclusive end), so a policy's months get this much slack.
VALIDITY_SLACK = timedelta(days=3)
# EKUs that give a key powers far beyond a TLS or client certificate's: present only when the policy asked.
POWERFUL_EKUS = frozenset(
    {
        ExtendedKeyUsageOID.CODE_SIGNING.dotted_string,
        ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,
        ExtendedKeyUsageOID.TIME_STAMPING.dotted_string,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string,
    }
)
# RFC 5280 §4.2: "applications conforming to this profile MUST recognize" these, and SHOULD recognize policy
# mappings. Every TLS stack that will use the certificate processes them, so one marked critical still works; any
# other critical extension (a CT precertificate poison, a private one) makes relying parties refuse it.
UNDERSTOOD_CRITICAL_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS.dotted_string,
        ExtensionOID.KEY_USAGE.dotted_string,
        ExtensionOID.EXTENDED_KEY_USAGE.dotted_string,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string,
        ExtensionOID.NAME_CONSTRAINTS.dotted_string,
        ExtensionOID.POLICY_CONSTRAINTS.dotted_string,
        ExtensionOID.CERTIFICATE_POLICIES.dotted_string,
        ExtensionOID.INHIBIT_ANY_POLICY.dotted_string,
        ExtensionOID.POLICY_MAPPINGS.dotted_string,
    }
)
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string: "anyExtendedKeyUsage",
}
_ANCHOR_OPTIONS = "trust_anchor_path or trust_anchor_setting"
_SHOWN_VALUES = 5

_SanKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    """A leaf and chain that passed every check.

    Attributes:
        leaf_der: the end-entity certificate, DER.
        chain_der: the issuing chain, DER, nearest issuer first.
        thumbprint_sha1: SHA-1 of the leaf's DER, upper-case hex without separators (as the portal shows it).
        serial_number: the leaf's serial, upper-case hex without separators (as Key Vault shows it).
        not_before: the leaf's not-before, tz-aware UTC.
        not_after: the leaf's not-after, tz-aware UTC.
    """

    leaf_der: bytes
    chain_der: tuple[bytes, ...]
    thumbprint_sha1: str
    serial_number: str
    not_before: datetime
    not_after: datetime


def verify_issued(
    csr_der: bytes,
    issued: Issued,
    *,
    now: datetime,
    validity_months: int | None = None,
    ekus: Sequence[str] = (),
    replaced_leaf_der: bytes | None = None,
    anchors: Sequence[x509.Certificate] = (),
) -> VerifiedCertificate:
    """Check ``issued`` against the CSR it answers, the policy that asked for it, and the trust anchor.

    ``issued.leaf_pem`` may be a bundle (leaf first); its extra certificates are taken as the start of the chain.
    ``now`` is tz-aware. ``validity_months`` and ``ekus`` are the policy's (``None``: no length check).
    ``anchors`` are the profile's configured trust anchors; without them the anchor is the issuer of
    ``replaced_leaf_der``, the certificate of the version being renewed. With neither, nothing is trusted.

    Raises:
        VerificationError: with the reason of the first rule the answer breaks (see the module docstring).
    """
    try:
        csr = x509.load_der_x509_csr(csr_der)
        asked_key = _spki(csr.public_key())
        csr.extensions  # noqa: B018 - parsed here, where a malformed one is the CSR's fault
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError("the CSR is not a readable DER PKCS#10 request", reason="unparsable_csr") from exc

    certificates = _load_pem("leaf_pem", issued.leaf_pem)
    for index, pem in enumerate(issued.chain_pem):
        certificates.extend(_load_pem(f"chain_pem[{index}]", pem))
    leaf, chain = certificates[0], certificates[1:]

    if _spki_of(leaf) != asked_key:
        raise VerificationError("the leaf's public key is not the CSR's", reason="key_mismatch")
    _check_end_entity(leaf)
    _check_names(leaf, csr)
    _check_usage(leaf, ekus)
    _check_validity(leaf, now, validity_months)
    _check_critical_extensions(leaf, chain)
    _check_chain(leaf, chain, now)
    if anchors:
        _check_configured_anchor(leaf, chain, anchors)
    else:
        _check_replaced_issuer(chain, replaced_leaf_der)
    return describe(leaf, chain)


def describe(leaf: x509.Certificate, chain: Sequence[x509.Certificate] = ()) -> VerifiedCertificate:
    """Describe a certificate already known to be good (verified earlier, or read back from Key Vault)."""
    der = serialization.Encoding.DER
    return VerifiedCertificate(
        leaf_der=leaf.public_bytes(der),
        chain_der=tuple(c.public_bytes(der) for c in chain),
        thumbprint_sha1=leaf.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - x5t is SHA-1 by definition
        serial_number=_serial_hex(leaf.serial_number),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )


def _check_end_entity(leaf: x509.Certificate) -> None:
    if _is_ca(leaf):
        raise VerificationError(
            "the leaf says CA:TRUE (basicConstraints); a renewal asks for an end-entity certificate",
            reason="leaf_not_end_entity",
        )
    usage = _key_usage(leaf)
    if usage is not None and (usage.key_cert_sign or usage.crl_sign):
        granted = [name for name, on in (("keyCertSign", usage.key_cert_sign), ("cRLSign", usage.crl_sign)) if on]
        raise VerificationError(
            f"the leaf's keyUsage grants {', '.join(granted)}; a renewal asks for an end-entity certificate",
            reason="leaf_not_end_entity",
        )


def _check_names(leaf: x509.Certificate, csr: x509.CertificateSigningRequest) -> None:
    asked, sent = _sans(csr.extensions), _sans(leaf.extensions)
    extra, missing = sent - asked, asked - sent
    if extra or missing:
        problems = []
        if extra:
            problems.append(f"carries names not asked for ({_shown_sans(extra)})")
        if missing:
            problems.append(f"lacks requested names ({_shown_sans(missing)})")
        raise VerificationError(
            f"the leaf's SANs are not the CSR's: it {' and '.join(problems)}", reason="unexpected_names"
        )
    unasked = _unasked_subject_attributes(leaf.subject, csr.subject, {value for _, value in asked})
    if unasked:
        shown = ", ".join(_clip(x509.Name([a]).rfc4514_string(), 80) for a in unasked[:_SHOWN_VALUES])
        raise VerificationError(
            f"the leaf's subject {_dn(leaf.subject)} carries {shown}, which the CSR (subject {_dn(csr.subject)}) "
            "did not ask for",
            reason="unexpected_names",
        )


def _unasked_subject_attributes(
    subject: x509.Name, asked_subject: x509.Name, requested_names: set[str]
) -> list[x509.NameAttribute[str | bytes]]:
    """The subject's attributes that are neither in the CSR's subject nor a CN naming one of the requested SANs.

    A subject equal to the CSR's, an empty one, or one holding only such CNs passes: ACME CAs and some AD CS
    templates rewrite subjects that way, and none of that names anything that was not asked for.
    """
    remaining = Counter((a.oid.dotted_string, str(a.value)) for a in asked_subject)
    unasked = []
    for attribute in subject:
        key = (attribute.oid.dotted_string, str(attribute.value))
        if remaining[key] > 0:
            remaining[key] -= 1
        elif not (attribute.oid == NameOID.COMMON_NAME and _dns_key(str(attribute.value)) in requested_names):
            unasked.append(attribute)
    return unasked


def _check_usage(leaf: x509.Certificate, requested: Sequence[str]) -> None:
    asked = {oid.strip() for oid in requested if oid.strip()}
    try:
        present: set[str] | None = {
            oid.dotted_string for oid in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        }
    except x509.ExtensionNotFound:
        present = None
    if present is None:
        if asked:
            raise VerificationError(
                f"the leaf has no extendedKeyUsage, so it is good for any purpose; the policy asked for "
                f"{_eku_names(asked)}",
                reason="unexpected_usage",
            )
        return
    missing = asked - present
    if missing:
        raise VerificationError(
            f"the leaf's EKUs are {_eku_names(present)}; the policy asked for {_eku_names(asked)} "
            f"({_eku_names(missing)} missing)",
            reason="unexpected_usage",
        )
    powerful = (present & POWERFUL_EKUS) - asked
    if powerful:
        raise VerificationError(
            f"the leaf's EKUs include {_eku_names(powerful)}, which the policy ({_eku_names(asked) or 'none'}) "
            "did not ask for",
            reason="unexpected_usage",
        )


def _check_validity(leaf: x509.Certificate, now: datetime, validity_months: int | None) -> None:
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_before > now + CLOCK_SKEW:
        raise VerificationError(
            f"the leaf is valid from {_moment(not_before)}, later than now ({_moment(now)}) plus "
            f"{_minutes(CLOCK_SKEW)} minutes of clock skew",
            reason="not_yet_valid",
        )
    if now >= not_after:
        raise VerificationError(f"the leaf expired {_moment(not_after)} (now is {_moment(now)})", reason="expired")
    if validity_months:
        allowed_end = _add_months(not_before, validity_months) + VALIDITY_SLACK
        if not_after > allowed_end:
            raise VerificationError(
                f"the leaf is valid {(not_after - not_before).days} days ({_moment(not_before)} to "
                f"{_moment(not_after)}); the policy asks for {validity_months} months (at most until "
                f"{_moment(allowed_end)}, with {VALIDITY_SLACK.days} days of slack)",
                reason="validity_too_long",
            )


def _check_critical_extensions(leaf: x509.Certificate, chain: Sequence[x509.Certificate]) -> None:
    for position, certificate in enumerate((leaf, *chain)):
        unknown = sorted(
            e.oid.dotted_string
            for e in certificate.extensions
            if e.critical and e.oid.dotted_string not in UNDERSTOOD_CRITICAL_EXTENSIONS
        )
        if unknown:
            shown = ", ".join(_clip(oid, 60) for oid in unknown[:_SHOWN_VALUES])
            raise VerificationError(
                f"{_which(position)} ({_dn(certificate.subject)}) has critical extension(s) {shown} that relying "
                "parties do not understand and must refuse (RFC 5280 §4.2)",
                reason="unknown_critical_extension",
            )


def _check_chain(leaf: x509.Certificate, chain: Sequence[x509.Certificate], now: datetime) -> None:
    """Each chain certificate is a CA that may sign certificates, is valid now, and signs the one before it.

    Written out rather than left to ``cryptography.x509.verification``: its path validation holds every
    certificate to the Web PKI's algorithms (no Ed25519, Ed448 or secp256k1 issuers, which the local CA and Key
    Vault keys allow), and its single error cannot say which of our rules failed. The chain is the one the CA
    sent, nearest issuer first (the adapters order it), so there is no path to search for.
    """
    for position, (child, parent) in enumerate(zip((leaf, *chain), chain, strict=False), start=1):
        what = f"chain certificate {position} ({_dn(parent.subject)})"
        if not _is_ca(parent):
            raise VerificationError(f"{what} is not a CA (no basicConstraints CA:TRUE)", reason="chain_invalid")
        usage = _key_usage(parent)
        if usage is not None and not usage.key_cert_sign:
            # RFC 5280 §4.2.1.3: a CA's key signs certificates only when keyCertSign is set.
            raise VerificationError(
                f"{what} may not sign certificates (keyUsage lacks keyCertSign)", reason="chain_invalid"
            )
        if parent.not_valid_before_utc > now + CLOCK_SKEW or now >= parent.not_valid_after_utc:
            raise VerificationError(
                f"{what} is not valid now ({_moment(now)}): it is valid from {_moment(parent.not_valid_before_utc)} "
                f"to {_moment(parent.not_valid_after_utc)}",
                reason="chain_invalid",
            )
        if not _issued_by(child, parent):
            raise VerificationError(
                f"{_which(position - 1)} (issuer {_dn(child.issuer)}) is not signed by the next certificate, {what}",
                reason="chain_invalid",
            )


def _check_configured_anchor(
    leaf: x509.Certificate, chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]
) -> None:
    anchor_keys = {(anchor.subject, key) for anchor in anchors if (key := _spki_of(anchor)) is not None}
    if any((certificate.subject, _spki_of(certificate)) in anchor_keys for certificate in chain):
        return
    last = chain[-1] if chain else leaf
    if any(_issued_by(last, anchor) for anchor in anchors):
        return
    configured = ", ".join(_dn(anchor.subject, 80) for anchor in anchors[:_SHOWN_VALUES])
    if not chain:
        raise VerificationError(
            f"the CA sent no chain and none of the configured trust anchors ({configured}) signed the leaf (issuer "
            f"{_dn(leaf.issuer)}), so the leaf's signature cannot be checked; add its issuing CA to {_ANCHOR_OPTIONS}",
            reason="untrusted_issuer",
        )
    raise VerificationError(
        f"the chain ends at {_dn(last.subject)} (issuer {_dn(last.issuer)}), which none of the configured trust "
        f"anchors ({configured}) is or signed",
        reason="untrusted_issuer",
    )


def _check_replaced_issuer(chain: Sequence[x509.Certificate], replaced_leaf_der: bytes | None) -> None:
    if replaced_leaf_der is None:
        raise VerificationError(
            "the certificate being replaced is unknown, so its issuing CA cannot serve as the trust anchor; name "
            f"the anchor with the CA profile's {_ANCHOR_OPTIONS}",
            reason="untrusted_issuer",
        )
    try:
        replaced = x509.load_der_x509_certificate(replaced_leaf_der)
    except ValueError as exc:
        raise VerificationError(
            "the certificate being replaced cannot be read, so its issuing CA cannot serve as the trust anchor; name "
            f"the anchor with the CA profile's {_ANCHOR_OPTIONS}",
            reason="untrusted_issuer",
        ) from exc
    if not chain:
        raise VerificationError(
            "the CA sent no chain, so the leaf's signature cannot be checked against the CA that issued the "
            f"version being replaced ({_dn(replaced.issuer)}); set the CA profile's {_ANCHOR_OPTIONS} to that CA "
            "to accept such answers",
            reason="untrusted_issuer",
        )
    if any(_issued_replaced(replaced, certificate) for certificate in chain):
        return
    issuers = ", ".join(_dn(certificate.subject, 80) for certificate in chain[:_SHOWN_VALUES])
    raise VerificationError(
        f"the new chain ({issuers}) does not reach the CA that issued the version being replaced "
        f"({_dn(replaced.issuer)}); a renewal from another CA is a CA rollover and needs the CA profile's "
        f"{_ANCHOR_OPTIONS}",
        reason="untrusted_issuer",
    )


def _issued_replaced(replaced: x509.Certificate, candidate: x509.Certificate) -> bool:
    """Whether ``candidate`` is the CA that issued ``replaced``: name, key identifier and signature agree."""
    if candidate.subject != replaced.issuer:
        return False
    authority = _authority_key_id(replaced)
    subject_key = _subject_key_id(candidate)
    if authority is not None and subject_key is not None and authority != subject_key:
        return False
    return _issued_by(replaced, candidate)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _load_pem(field_name: str, pem: str) -> list[x509.Certificate]:
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
        raise VerificationError(f"{field_name} holds no PEM certificate", reason="unparsable_certificate")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
        for certificate in certificates:
            certificate.extensions  # noqa: B018 - parsed lazily; a malformed one must fail here, not mid-check
    except (ValueError, UnicodeEncodeError) as exc:
        raise VerificationError(
            f"{field_name} is not a readable PEM certificate", reason="unparsable_certificate"
        ) from exc
    return certificates


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        raise ValueError("a public key without an encoding")
    result: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return result


def _spki_of(certificate: x509.Certificate) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo, DER, or ``None`` for a key this library cannot read."""
    try:
        return _spki(certificate.public_key())
    except (ValueError, UnsupportedAlgorithm):
        return None


def _dns_key(value: str) -> str:
    return value.lower().rstrip(".")


def _sans(extensions: x509.Extensions) -> set[_SanKey]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    keys: set[_SanKey] = set()
    for name in san:
        if isinstance(name, x509.DNSName):
            keys.add(("DNS", _dns_key(name.value)))
        elif isinstance(name, x509.IPAddress):
            keys.add(("IP", str(name.value)))
        elif isinstance(name, x509.RFC822Name):
            keys.add(("email", name.value.lower()))
        elif isinstance(name, x509.UniformResourceIdentifier):
            keys.add(("URI", name.value))
        elif isinstance(name, x509.OtherName):
            keys.add((f"otherName:{name.type_id.dotted_string}", name.value.hex()))
        elif isinstance(name, x509.DirectoryName):
            keys.add(("dirName", name.value.rfc4514_string()))
        elif isinstance(name, x509.RegisteredID):
            keys.add(("registeredID", name.value.dotted_string))
        else:
            keys.add((type(name).__name__, str(name.value)))
    return keys


def _shown_sans(keys: set[_SanKey]) -> str:
    shown = ", ".join(f"{kind}:{_clip(value, 80)}" for kind, value in sorted(keys)[:_SHOWN_VALUES])
    return shown + (f" and {len(keys) - _SHOWN_VALUES} more" if len(keys) > _SHOWN_VALUES else "")


def _eku_names(oids: Iterable[str]) -> str:
    names = sorted(_EKU_NAMES.get(oid, _clip(oid, 40)) for oid in oids)
    shown = ", ".join(names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_usage(certificate: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _authority_key_id(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _subject_key_id(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, the day clamped to the target month's length (Jan 31 + 1 = Feb 28)."""
    years, month_index = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + years, month_index + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _which(position: int) -> str:
    return "the leaf" if position == 0 else f"chain certificate {position}"


def _dn(name: x509.Name, limit: int = 120) -> str:
    try:
        text = name.rfc4514_string()
    except ValueError:
        return "'<unreadable name>'"
    return f"'{_clip(text, limit)}'" if text else "'<empty>'"


def _clip(text: str, limit: int) -> str:
    """``text`` fit for a message: control and other unprintable characters escaped, at most ``limit`` long."""
    shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _moment(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _serial_hex(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text
