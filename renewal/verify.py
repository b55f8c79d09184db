"""Verify a CA's answer against the CSR before anything reaches Key Vault (pure, no I/O).

"A CA that answers garbage must never leave a half-merged certificate behind" (DESIGN §1 step 5). Checks:
the leaf parses; its public key is the CSR's; its SANs cover the CSR's; it is valid now; the chain is ordered
(each certificate issued by the next: names match and the signature verifies) and every chain certificate is a CA.
Error messages never contain PEM bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from renewal.ca._protocol import Issued
from renewal.errors import VerificationError

__all__ = ["VerifiedCertificate", "describe", "verify_issued"]

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


def verify_issued(csr_der: bytes, issued: Issued, *, now: datetime) -> VerifiedCertificate:
    """Check ``issued`` against the CSR it answers.

    ``issued.leaf_pem`` may be a bundle (leaf first); its extra certificates are taken as the start of the chain.
    ``now`` is tz-aware. An answer without chain certificates is accepted on the leaf's own checks.

    Raises:
        VerificationError: with reason ``unparsable_csr``, ``unparsable_certificate``, ``key_mismatch``,
            ``sans_not_covered``, ``not_yet_valid``, ``expired``, ``chain_broken`` or ``chain_not_ca``.
    """
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError as exc:
        raise VerificationError("the CSR is not a DER PKCS#10 request", reason="unparsable_csr") from exc

    certificates = _load_pem("leaf_pem", issued.leaf_pem)
    for index, pem in enumerate(issued.chain_pem):
        certificates.extend(_load_pem(f"chain_pem[{index}]", pem))
    leaf, chain = certificates[0], certificates[1:]

    if _spki(leaf.public_key()) != _spki(csr.public_key()):
        raise VerificationError("the leaf's public key is not the CSR's", reason="key_mismatch")

    missing = _sans(csr.extensions) - _sans(leaf.extensions)
    if missing:
        shown = ", ".join(f"{kind}:{value}" for kind, value in sorted(missing)[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise VerificationError(f"the leaf does not cover requested SANs {shown}{more}", reason="sans_not_covered")

    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now < not_before:
        raise VerificationError(f"the leaf is not valid before {not_before.isoformat()}", reason="not_yet_valid")
    if now >= not_after:
        raise VerificationError(f"the leaf expired {not_after.isoformat()}", reason="expired")

    for position, (child, parent) in enumerate(zip(certificates, chain, strict=False)):
        what = "the leaf" if position == 0 else f"chain certificate {position}"
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise VerificationError(
                f"{what} (issuer {child.issuer.rfc4514_string()[:120]!r}) is not issued by the next certificate "
                f"(subject {parent.subject.rfc4514_string()[:120]!r})",
                reason="chain_broken",
            ) from exc
    for position, certificate in enumerate(chain, start=1):
        if not _is_ca(certificate):
            raise VerificationError(
                f"chain certificate {position} ({certificate.subject.rfc4514_string()[:120]!r}) is not a CA",
                reason="chain_not_ca",
            )

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


def _load_pem(field_name: str, pem: str) -> list[x509.Certificate]:
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
        raise VerificationError(f"{field_name} holds no PEM certificate", reason="unparsable_certificate")
    try:
        return x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise VerificationError(
            f"{field_name} is not a readable PEM certificate", reason="unparsable_certificate"
        ) from exc


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        raise VerificationError("unsupported public key type", reason="key_mismatch")
    result: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return result


def _sans(extensions: x509.Extensions) -> set[_SanKey]:
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    keys: set[_SanKey] = set()
    for name in san:
        if isinstance(name, x509.DNSName):
            keys.add(("DNS", name.value.lower().rstrip(".")))
        elif isinstance(name, x509.IPAddress):
            keys.add(("IP", str(name.value)))
        elif isinstance(name, x509.RFC822Name):
            keys.add(("email", name.value.lower()))
        elif isinstance(name, x509.UniformResourceIdentifier):
            keys.add(("URI", name.value))
        else:
            keys.add((type(name).__name__, str(name.value)))
    return keys


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _serial_hex(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text
