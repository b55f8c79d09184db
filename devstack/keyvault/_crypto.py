"""Key, CSR and certificate handling for the emulated vault: the cryptography Key Vault does on its side.

Nothing here knows about HTTP or JSON; every function raises ``ValueError`` with a message fit for a
``BadParameter`` error when its input cannot be used.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

__all__ = [
    "CERTIFICATE_KEY_USAGES",
    "CertificateTemplate",
    "ImportedCertificate",
    "PrivateKey",
    "build_csr",
    "build_self_signed",
    "certificate_x509_props",
    "decode_x5c",
    "generate_key",
    "key_from_pem",
    "key_properties",
    "key_to_pem",
    "name_to_string",
    "parse_import",
    "parse_subject",
    "pem_bundle",
    "pkcs12_bundle",
    "same_public_key",
    "x5t_of",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

CURVES: dict[str, type[ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
CURVE_SIZES = {"P-256": 256, "P-384": 384, "P-521": 521}
RSA_KEY_SIZES = (2048, 3072, 4096)

# Wire names of key usages in Key Vault's order-insensitive list; "cRLSign" is how the service spells it
# (rec: net VerifyCertificateGetWithPolicyInProgress normalises "crlSign" to "cRLSign").
CERTIFICATE_KEY_USAGES = (
    "cRLSign",
    "dataEncipherment",
    "decipherOnly",
    "digitalSignature",
    "encipherOnly",
    "keyAgreement",
    "keyCertSign",
    "keyEncipherment",
    "nonRepudiation",
)

_DN_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "T": NameOID.TITLE,
    "TITLE": NameOID.TITLE,
    "G": NameOID.GIVEN_NAME,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "POSTALCODE": NameOID.POSTAL_CODE,
    "UID": NameOID.USER_ID,
}
_OID_LABELS = {
    NameOID.COMMON_NAME: "CN",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "S",
    NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "E",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.TITLE: "T",
    NameOID.GIVEN_NAME: "G",
    NameOID.SURNAME: "SN",
    NameOID.POSTAL_CODE: "PostalCode",
    NameOID.USER_ID: "UID",
}
# Attributes X.520 fixes to PrintableString / IA5String; others use PrintableString when the value allows
# it, as the real CSRs do ("MBExDzANBgNVBAMTBk15Q2VydA" = CN=MyCert as PrintableString, rec: python merge).
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")
_IA5_ATTRIBUTES = {NameOID.EMAIL_ADDRESS, NameOID.DOMAIN_COMPONENT}

_KEY_USAGE_FLAGS = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}


@dataclass(frozen=True, slots=True)
class CertificateTemplate:
    """What a policy asks to be put in a CSR or a self-signed certificate.

    Attributes:
        subject: the parsed subject (may be empty when SANs are given).
        dns_names: ``sans.dns_names``.
        emails: ``sans.emails``.
        upns: ``sans.upns``.
        uris: ``sans.uris``.
        ip_addresses: ``sans.ipAddresses``.
        key_usage: wire names of the key usages (empty: no KeyUsage extension).
        ekus: dotted OIDs of the extended key usages (empty: no EKU extension).
    """

    subject: x509.Name
    dns_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    upns: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    key_usage: tuple[str, ...] = ()
    ekus: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportedCertificate:
    """A certificate with its private key, as found in an imported PFX or PEM.

    Attributes:
        key: the private key.
        leaf: the certificate whose public key matches ``key``.
        chain: the other certificates, in the order given.
        pem: whether the input was PEM text (else PKCS#12).
    """

    key: PrivateKey
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    pem: bool


def generate_key(kty: str, *, key_size: int | None, crv: str | None) -> PrivateKey:
    """Generate a key as ``key_props`` describes (HSM variants are software keys here).

    Raises:
        ValueError: the size or curve is not one Key Vault supports for certificates.
    """
    if kty in ("RSA", "RSA-HSM"):
        size = key_size or 2048
        if size not in RSA_KEY_SIZES:
            raise ValueError(
                f"Property policy.key_props.key_size has invalid value {size}. Supported: 2048, 3072, 4096."
            )
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if kty in ("EC", "EC-HSM"):
        curve = CURVES.get(crv or "P-256")
        if curve is None:
            raise ValueError(f"Property policy.key_props.crv has invalid value {crv}. Supported: P-256, P-384, P-521.")
        return ec.generate_private_key(curve())
    raise ValueError(f"Property policy.key_props.kty has invalid value {kty}. Supported: RSA, RSA-HSM, EC, EC-HSM.")


def key_properties(key: PrivateKey) -> tuple[str, int, str | None]:
    """Return ``(kty, key_size, crv)`` of a key, as ``key_props`` spells them.

    Raises:
        ValueError: the EC curve is not one Key Vault supports.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA", key.key_size, None
    for name, curve in CURVES.items():
        if isinstance(key.curve, curve):
            return "EC", CURVE_SIZES[name], name
    raise ValueError(f"Unsupported elliptic curve {key.curve.name}.")


def key_to_pem(key: PrivateKey) -> str:
    """Serialise a private key as unencrypted PKCS#8 PEM (for snapshots and secrets only)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def key_from_pem(pem: str) -> PrivateKey:
    """Load a private key written by :func:`key_to_pem`.

    Raises:
        ValueError: the text is not an RSA or EC private key.
    """
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("Only RSA and EC keys are supported.")
    return key


def _split_unescaped(text: str, separators: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char in separators and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted or escaped:
        raise ValueError("unterminated quote or escape")
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('""', '"')
    return re.sub(r"\\(.)", r"\1", value)


def _name_attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    if oid == NameOID.COUNTRY_NAME:
        if len(value) != 2:
            raise ValueError("country must be two letters")
        return x509.NameAttribute(oid, value, _type=_ASN1Type.PrintableString)
    if oid in _IA5_ATTRIBUTES:
        return x509.NameAttribute(oid, value, _type=_ASN1Type.IA5String)
    if _PRINTABLE.match(value):
        return x509.NameAttribute(oid, value, _type=_ASN1Type.PrintableString)
    return x509.NameAttribute(oid, value)


def parse_subject(subject: str) -> x509.Name:
    """Parse a policy subject such as ``CN=app, O=Contoso`` (``,`` or ``;`` separated, ``+`` for multi-valued RDNs).

    The string is read most-specific first, as RFC 4514 writes it, so the DER holds the RDNs in reverse.

    Raises:
        ValueError: the text is not a distinguished name (the caller answers Key Vault's
            "Invalid X.500 distinguished name").
    """
    if not subject.strip():
        return x509.Name([])
    rdns: list[x509.RelativeDistinguishedName] = []
    for rdn_text in _split_unescaped(subject, ",;"):
        attributes: list[x509.NameAttribute[str]] = []
        for pair in _split_unescaped(rdn_text, "+"):
            label, sep, raw = pair.partition("=")
            label = label.strip()
            if not sep or not label:
                raise ValueError(f"not a type=value pair: {pair.strip()!r}")
            oid = _DN_ATTRIBUTES.get(label.upper())
            if oid is None and label.upper().startswith("OID."):
                label = label[4:]
            if oid is None:
                try:
                    oid = x509.ObjectIdentifier(label)
                except ValueError as exc:
                    raise ValueError(f"unknown attribute type {label!r}") from exc
            value = _unescape(raw)
            if not value:
                raise ValueError(f"empty value for {label}")
            attributes.append(_name_attribute(oid, value))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(list(reversed(rdns)))


def name_to_string(name: x509.Name) -> str:
    """Render a name as Key Vault shows it in ``subject``/``issuer`` fields: most specific first, ``", "`` separated."""
    rdn_texts = []
    for rdn in reversed(list(name.rdns)):
        pairs = []
        for attribute in rdn:
            label = _OID_LABELS.get(attribute.oid, attribute.oid.dotted_string)
            value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
            if any(char in value for char in ',+;"\\<>=') or value != value.strip():
                value = '"' + value.replace('"', '""') + '"'
            pairs.append(f"{label}={value}")
        rdn_texts.append(" + ".join(pairs))
    return ", ".join(rdn_texts)


def _san_extension(template: CertificateTemplate) -> x509.SubjectAlternativeName | None:
    names: list[x509.GeneralName] = []
    names += [x509.RFC822Name(email) for email in template.emails]
    names += [x509.DNSName(dns) for dns in template.dns_names]
    for ip_text in template.ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip_text)))
        except ValueError as exc:
            raise ValueError(f"Property policy.x509_props.sans.ipAddresses has invalid value {ip_text}.") from exc
    names += [x509.UniformResourceIdentifier(uri) for uri in template.uris]
    upn_oid = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
    for upn in template.upns:
        encoded = upn.encode("utf-8")
        # OtherName value is the DER of a UTF8String: tag 0x0C, short length (UPNs are short).
        if len(encoded) > 127:
            raise ValueError(f"Property policy.x509_props.sans.upns has invalid value {upn}.")
        names.append(x509.OtherName(upn_oid, bytes([0x0C, len(encoded)]) + encoded))
    return x509.SubjectAlternativeName(names) if names else None


def _key_usage_extension(usages: Sequence[str]) -> x509.KeyUsage:
    flags = dict.fromkeys(_KEY_USAGE_FLAGS.values(), False)
    for usage in usages:
        flags[_KEY_USAGE_FLAGS[usage]] = True
    return x509.KeyUsage(**flags)


def _extensions(template: CertificateTemplate) -> list[tuple[x509.ExtensionType, bool]]:
    """KeyUsage (critical), EKU, SAN, BasicConstraints CA:FALSE: the order of the recorded CSRs.

    The SAN is critical when the subject is empty (RFC 5280 §4.2.1.6; recorded for an ipAddresses-only policy).
    """
    extensions: list[tuple[x509.ExtensionType, bool]] = []
    if template.key_usage:
        extensions.append((_key_usage_extension(template.key_usage), True))
    if template.ekus:
        extensions.append((x509.ExtendedKeyUsage([x509.ObjectIdentifier(oid) for oid in template.ekus]), False))
    san = _san_extension(template)
    if san is not None:
        extensions.append((san, len(template.subject) == 0))
    extensions.append((x509.BasicConstraints(ca=False, path_length=None), False))
    return extensions


def build_csr(key: PrivateKey, template: CertificateTemplate) -> bytes:
    """Build the DER PKCS#10 request Key Vault hands out for a pending certificate, signed SHA-256.

    Raises:
        ValueError: a SAN value cannot be encoded.
    """
    builder = x509.CertificateSigningRequestBuilder().subject_name(template.subject)
    for extension, critical in _extensions(template):
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def build_self_signed(key: PrivateKey, template: CertificateTemplate, *, not_before: int, not_after: int) -> bytes:
    """Build the DER of a self-signed certificate for issuer ``Self``, with a random 128-bit serial as Key Vault uses.

    Raises:
        ValueError: a SAN value cannot be encoded.
    """
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() >> 32)
        .not_valid_before(dt.datetime.fromtimestamp(not_before, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(not_after, dt.UTC))
    )
    for extension, critical in _extensions(template):
        builder = builder.add_extension(extension, critical=critical)
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def x5t_of(der: bytes) -> str:
    """Return ``x5t``: base64url without padding of the SHA-1 of the DER certificate."""
    return base64.urlsafe_b64encode(hashlib.sha1(der, usedforsecurity=False).digest()).rstrip(b"=").decode("ascii")


def same_public_key(certificate: x509.Certificate, key: PrivateKey) -> bool:
    """Tell whether a certificate carries the public half of ``key``."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(serialization.Encoding.DER, spki) == key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )


def _b64decode(text: str | bytes) -> bytes:
    raw = text.encode("ascii") if isinstance(text, str) else text
    compact = re.sub(rb"\s+", b"", raw)
    if re.fullmatch(rb"[A-Za-z0-9+/=_-]+", compact) is None:
        raise ValueError("not base64")
    compact = compact.replace(b"-", b"+").replace(b"_", b"/")
    try:
        return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def _certificates_from_bytes(data: bytes, depth: int = 0) -> list[x509.Certificate]:
    if data[:1] == b"\x30":
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            pass
        try:
            return list(pkcs7.load_der_pkcs7_certificates(data))
        except ValueError:
            pass
    if depth >= 2:
        raise ValueError("no certificate found")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError("no certificate found") from exc
    if "-----BEGIN CERTIFICATE-----" in text:
        return list(x509.load_pem_x509_certificates(data))
    if "-----BEGIN PKCS7-----" in text:
        raise ValueError("a PEM PKCS#7 block is not accepted")
    # Base64 text, possibly with PEM armour half-stripped (the JS SDK test keeps "-----END CERTIFICATE-----").
    body = re.sub(r"-----[A-Z0-9 ]+-----", "", text)
    return _certificates_from_bytes(_b64decode(body), depth + 1)


def decode_x5c(items: Sequence[str]) -> list[x509.Certificate]:
    """Decode the ``x5c`` of a merge as leniently as Key Vault does (protocol reference §4.4).

    Each item may be base64 DER, base64 of base64-DER text, base64 of PEM text, or a base64 PKCS#7 chain.

    Raises:
        ValueError: no item holds a certificate, or one item holds something else.
    """
    certificates: list[x509.Certificate] = []
    for item in items:
        try:
            certificates += _certificates_from_bytes(_b64decode(item))
        except ValueError as exc:
            raise ValueError(f"Property x5c has invalid value. {exc}.") from exc
    if not certificates:
        raise ValueError("Property x5c has invalid value X5C must has at least one valid item")
    return certificates


def _load_pem_key(data: bytes) -> PrivateKey | None:
    match = re.search(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", data, re.DOTALL)
    if match is None:
        return None
    if match.group(1) == b"ENCRYPTED ":
        raise ValueError("Encrypted PEM private keys are not supported; import a PKCS#12 file with a password.")
    key = serialization.load_pem_private_key(match.group(0), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("Only RSA and EC private keys are supported.")
    return key


def _order_leaf_first(key: PrivateKey, certificates: list[x509.Certificate], pem: bool) -> ImportedCertificate:
    for index, certificate in enumerate(certificates):
        if same_public_key(certificate, key):
            chain = tuple(certificates[:index] + certificates[index + 1 :])
            return ImportedCertificate(key=key, leaf=certificate, chain=chain, pem=pem)
    raise ValueError(
        "The public key of the end-entity certificate in the specified X.509 certificate content does not "
        "match the public part of the specified private key. Please check if certificate is valid."
    )


def parse_import(value: str, password: str | None) -> ImportedCertificate:
    """Parse an import ``value``: PEM text (certificates and a PKCS#8/PKCS#1/SEC1 key), base64 of such text,
    or base64 PKCS#12 (with or without ``pwd``).

    Raises:
        ValueError: the content is neither, the password is wrong, or there is no key matching a certificate.
    """
    data = value.encode("utf-8")
    if b"-----BEGIN" not in data:
        try:
            data = _b64decode(value)
        except ValueError as exc:
            raise ValueError("Property value has invalid value. It is neither PEM text nor base64.") from exc
    if b"-----BEGIN" in data:
        try:
            key = _load_pem_key(data)
            certificates = list(x509.load_pem_x509_certificates(data)) if b"-----BEGIN CERTIFICATE" in data else []
        except ValueError as exc:
            raise ValueError(f"Property value has invalid value. The PEM content could not be read: {exc}") from exc
        if key is None or not certificates:
            raise ValueError("Property value has invalid value. PEM content needs a certificate and its private key.")
        return _order_leaf_first(key, certificates, pem=True)
    try:
        loaded = pkcs12.load_pkcs12(data, password.encode("utf-8") if password else None)
    except ValueError as exc:
        raise ValueError(
            "Property value has invalid value. The PKCS#12 content could not be read: wrong password or not a PFX."
        ) from exc
    if loaded.key is None or loaded.cert is None:
        raise ValueError("Property value has invalid value. The PKCS#12 content needs a certificate and its key.")
    pkcs12_key = loaded.key
    if not isinstance(pkcs12_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("Property value has invalid value. Only RSA and EC private keys are supported.")
    others = [extra.certificate for extra in loaded.additional_certs]
    return _order_leaf_first(pkcs12_key, [loaded.cert.certificate, *others], pem=False)


def pkcs12_bundle(key: PrivateKey, leaf: x509.Certificate, chain: Sequence[x509.Certificate]) -> bytes:
    """Serialise key, leaf and chain as a password-less PKCS#12, as Key Vault's secret view of a certificate."""
    return pkcs12.serialize_key_and_certificates(
        name=None, key=key, cert=leaf, cas=list(chain) or None, encryption_algorithm=serialization.NoEncryption()
    )


def pem_bundle(key: PrivateKey, leaf: x509.Certificate, chain: Sequence[x509.Certificate]) -> str:
    """Serialise the PEM secret view: the PKCS#8 key, then the leaf, then the chain."""
    parts = [key_to_pem(key)]
    parts += [certificate.public_bytes(serialization.Encoding.PEM).decode("ascii") for certificate in (leaf, *chain)]
    return "".join(parts)


def certificate_x509_props(certificate: x509.Certificate) -> dict[str, object]:
    """Describe a certificate in ``x509_props`` terms, as Key Vault stores the policy of an imported certificate.

    The ``validity_months`` is the certificate's lifetime rounded to whole months (at least 1).
    """
    props: dict[str, object] = {"subject": name_to_string(certificate.subject)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        sans: dict[str, list[str]] = {}
        emails = san.get_values_for_type(x509.RFC822Name)
        dns_names = san.get_values_for_type(x509.DNSName)
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        for key, values in (("emails", emails), ("dns_names", dns_names), ("uris", uris), ("ipAddresses", ips)):
            if values:
                sans[key] = list(values)
        props["sans"] = sans
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ekus = [oid.dotted_string for oid in eku]
    except x509.ExtensionNotFound:
        ekus = []
    props["ekus"] = ekus
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    names: list[str] = []
    if usage is not None:
        for wire, attribute in _KEY_USAGE_FLAGS.items():
            if attribute in ("encipher_only", "decipher_only") and not usage.key_agreement:
                continue
            if getattr(usage, attribute):
                names.append(wire)
    props["key_usage"] = sorted(names, key=str.lower)
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    props["validity_months"] = max(1, round(lifetime.days / 30.4))
    return props
