"""Verify: a CA's answer merges only if it is exactly what was asked, from the expected CA (docs/verification.md).

Also the trust anchors a profile configures (``renewal.ca.anchors``), which verification takes as input.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.localca import create_local_ca
from renewal.ca import CAProfile, Issued, adapter_for
from renewal.ca._options import COMMON_OPTIONS, parse_options
from renewal.ca.anchors import TRUST_ANCHOR_PATH, TRUST_ANCHOR_SETTING, trust_anchors_for
from renewal.errors import ConfigurationError, VerificationError
from renewal.pure.verify import verify_issued

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SANS: list[x509.GeneralName] = [
    x509.DNSName("web.example.com"),
    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    x509.RFC822Name("ops@example.com"),
    x509.UniformResourceIdentifier("spiffe://example/web"),
]
SERVER_AUTH, CLIENT_AUTH = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
POLICY_EKUS = (SERVER_AUTH.dotted_string, CLIENT_AUTH.dotted_string)
POLICY_MONTHS = 12
UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")


def name(cn: str, *more: x509.NameAttribute[str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), *more])


SUBJECT = name("web.example.com", x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"))


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return pem(self.cert)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(
    cn: str,
    parent: CA | None = None,
    *,
    is_ca: bool = True,
    key_cert_sign: bool = True,
    subject: x509.Name | None = None,
    subject_key_id: bytes | None = None,
    not_after: datetime = NOW + timedelta(days=1000),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = subject or name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=400))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, key_cert_sign, True, False, False), critical=True
        )
        .add_extension(
            x509.SubjectKeyIdentifier(subject_key_id)
            if subject_key_id
            else x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return CA(builder.sign(parent.key if parent else key, hashes.SHA256()), key)


ROOT = make_ca("Corp Root")
INTERMEDIATE = make_ca("Corp Issuing", ROOT)
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())


def make_csr(sans: Sequence[x509.GeneralName] = SANS, subject: x509.Name = SUBJECT) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(LEAF_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_leaf(
    *,
    issuer: CA = INTERMEDIATE,
    key: ec.EllipticCurvePrivateKey = LEAF_KEY,
    subject: x509.Name = SUBJECT,
    sans: Sequence[x509.GeneralName] = SANS,
    ekus: Sequence[x509.ObjectIdentifier] | None = (SERVER_AUTH, CLIENT_AUTH),
    basic_constraints: x509.BasicConstraints | None = x509.BasicConstraints(ca=False, path_length=None),  # noqa: B008
    key_usage: x509.KeyUsage | None = None,
    not_before: datetime = NOW - timedelta(minutes=1),
    not_after: datetime = NOW + timedelta(days=90),
    issuer_name: x509.Name | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(0x0ABC)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    if basic_constraints is not None:
        builder = builder.add_extension(basic_constraints, critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer.key, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# The version being renewed: issued by the corp issuing CA, with the authority key id pointing at it.
REPLACED = make_leaf(not_before=NOW - timedelta(days=300), not_after=NOW + timedelta(days=30))


def verify(
    issued: Issued,
    *,
    csr: bytes | None = None,
    now: datetime = NOW,
    validity_months: int | None = POLICY_MONTHS,
    ekus: Sequence[str] = POLICY_EKUS,
    replaced: x509.Certificate | None = REPLACED,
    anchors: Sequence[x509.Certificate] = (),
) -> object:
    return verify_issued(
        csr or make_csr(),
        issued,
        now=now,
        validity_months=validity_months,
        ekus=ekus,
        replaced_leaf_der=der(replaced) if replaced is not None else None,
        anchors=anchors,
    )


def refused(issued: Issued, **kwargs: object) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify(issued, **kwargs)  # type: ignore[arg-type]
    return caught.value


def answer(leaf: x509.Certificate, *chain: CA | x509.Certificate) -> Issued:
    return Issued(pem(leaf), tuple(c.pem if isinstance(c, CA) else pem(c) for c in chain))


HONEST = answer(make_leaf(), INTERMEDIATE, ROOT)


# --- the honest control ---------------------------------------------------------------------------------------


def test_honest_answer_verifies_and_reports_the_leaf() -> None:
    """A leaf for the CSR's key, names and EKUs, valid now, chained to the replaced version's issuer, verifies."""
    leaf = make_leaf()
    verified = verify_issued(
        make_csr(),
        answer(leaf, INTERMEDIATE, ROOT),
        now=NOW,
        validity_months=POLICY_MONTHS,
        ekus=POLICY_EKUS,
        replaced_leaf_der=der(REPLACED),
    )
    assert verified.leaf_der == der(leaf)
    assert verified.chain_der == (der(INTERMEDIATE.cert), der(ROOT.cert))
    assert verified.thumbprint_sha1 == leaf.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert verified.serial_number == "0ABC"
    assert verified.not_after == NOW + timedelta(days=90)


def test_bundle_in_leaf_pem_is_split_into_leaf_and_chain() -> None:
    """A full-chain PEM in leaf_pem (leaf first) is taken as leaf plus chain."""
    verified = verify(Issued(pem(make_leaf()) + INTERMEDIATE.pem + ROOT.pem))
    assert verified.chain_der == (der(INTERMEDIATE.cert), der(ROOT.cert))  # type: ignore[attr-defined]


def test_chain_ending_at_the_issuing_ca_verifies() -> None:
    """The root need not be sent: the issuing CA of the replaced version is itself the anchor."""
    verify(answer(make_leaf(), INTERMEDIATE))


# --- unparsable ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issued",
    [
        Issued("hello, I am a certificate"),
        Issued("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        Issued(pem(make_leaf()), ("nope",)),
    ],
    ids=["garbage-leaf", "truncated-pem", "garbage-chain"],
)
def test_unreadable_certificate_is_unparsable_certificate(issued: Issued) -> None:
    """An answer that holds no readable PEM certificate where one belongs fails unparsable_certificate."""
    assert refused(issued).reason == "unparsable_certificate"


def test_unreadable_csr_is_unparsable_csr() -> None:
    """A CSR that is not DER PKCS#10 fails unparsable_csr."""
    assert refused(HONEST, csr=b"\x30\x03junk").reason == "unparsable_csr"


# --- key_mismatch -------------------------------------------------------------------------------------------------


def test_leaf_for_another_key_is_key_mismatch() -> None:
    """A leaf certifying a key other than the CSR's fails key_mismatch."""
    other = ec.generate_private_key(ec.SECP256R1())
    assert refused(answer(make_leaf(key=other), INTERMEDIATE)).reason == "key_mismatch"


# --- leaf_not_end_entity ------------------------------------------------------------------------------------------


def test_leaf_saying_ca_true_is_not_an_end_entity() -> None:
    """A leaf with basicConstraints CA:TRUE fails leaf_not_end_entity."""
    leaf = make_leaf(basic_constraints=x509.BasicConstraints(ca=True, path_length=None))
    error = refused(answer(leaf, INTERMEDIATE))
    assert error.reason == "leaf_not_end_entity"
    assert "CA:TRUE" in error.message


@pytest.mark.parametrize(("cert_sign", "crl_sign"), [(True, False), (False, True)], ids=["keyCertSign", "cRLSign"])
def test_leaf_allowed_to_sign_certificates_or_crls_is_not_an_end_entity(cert_sign: bool, crl_sign: bool) -> None:
    """A leaf whose keyUsage grants keyCertSign or cRLSign fails leaf_not_end_entity, even with CA:FALSE."""
    usage = x509.KeyUsage(True, False, False, False, False, cert_sign, crl_sign, False, False)
    assert refused(answer(make_leaf(key_usage=usage), INTERMEDIATE)).reason == "leaf_not_end_entity"


def test_leaf_without_basic_constraints_is_an_end_entity() -> None:
    """A leaf without basicConstraints is an end entity (RFC 5280 §4.2.1.9) and verifies."""
    verify(answer(make_leaf(basic_constraints=None), INTERMEDIATE))


# --- unexpected_names ---------------------------------------------------------------------------------------------


def test_extra_san_is_unexpected_names() -> None:
    """A leaf naming more than was asked (*.evil.example) fails unexpected_names, saying which name."""
    error = refused(answer(make_leaf(sans=[*SANS, x509.DNSName("*.evil.example")]), INTERMEDIATE))
    assert error.reason == "unexpected_names"
    assert "*.evil.example" in error.message


@pytest.mark.parametrize("dropped", range(len(SANS)), ids=["dns", "ip", "email", "uri"])
def test_missing_san_is_unexpected_names(dropped: int) -> None:
    """A leaf that lacks one of the requested SANs (of any type) fails unexpected_names."""
    sans = [san for index, san in enumerate(SANS) if index != dropped]
    assert refused(answer(make_leaf(sans=sans), INTERMEDIATE)).reason == "unexpected_names"


def test_leaf_without_sans_is_unexpected_names() -> None:
    """A leaf with no SAN extension, for a CSR that asked for names, fails unexpected_names."""
    assert refused(answer(make_leaf(sans=[]), INTERMEDIATE)).reason == "unexpected_names"


def test_dns_sans_compare_case_insensitively_without_trailing_dot() -> None:
    """WEB.Example.com. in the leaf is the web.example.com the CSR asked for."""
    verify(answer(make_leaf(sans=[x509.DNSName("WEB.Example.com."), *SANS[1:]]), INTERMEDIATE))


def test_subject_with_an_unasked_attribute_is_unexpected_names() -> None:
    """A subject carrying an attribute the CSR did not ask for (O=Evil Corp) fails unexpected_names."""
    subject = name("web.example.com", x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"))
    error = refused(answer(make_leaf(subject=subject), INTERMEDIATE))
    assert error.reason == "unexpected_names"
    assert "Evil Corp" in error.message


def test_subject_cn_naming_no_requested_san_is_unexpected_names() -> None:
    """A subject rewritten to a CN that is not among the requested SANs fails unexpected_names."""
    assert refused(answer(make_leaf(subject=name("evil.example")), INTERMEDIATE)).reason == "unexpected_names"


@pytest.mark.parametrize(
    "subject", [x509.Name([]), name("WEB.example.com"), name("10.0.0.1")], ids=["empty", "cn-dns", "cn-ip"]
)
def test_subject_rewritten_to_requested_names_only_verifies(subject: x509.Name) -> None:
    """An empty subject, or one holding only a CN that is a requested SAN (as ACME CAs write it), verifies."""
    verify(answer(make_leaf(subject=subject), INTERMEDIATE))


# --- unexpected_usage ---------------------------------------------------------------------------------------------


def test_code_signing_instead_of_server_auth_is_unexpected_usage() -> None:
    """A leaf for codeSigning where the policy asked for serverAuth and clientAuth fails unexpected_usage."""
    error = refused(answer(make_leaf(ekus=[ExtendedKeyUsageOID.CODE_SIGNING]), INTERMEDIATE))
    assert error.reason == "unexpected_usage"
    assert "codeSigning" in error.message
    assert "serverAuth" in error.message


@pytest.mark.parametrize(
    "powerful",
    [
        ExtendedKeyUsageOID.CODE_SIGNING,
        ExtendedKeyUsageOID.OCSP_SIGNING,
        ExtendedKeyUsageOID.TIME_STAMPING,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    ],
    ids=lambda oid: oid.dotted_string,
)
def test_unasked_powerful_eku_is_unexpected_usage(powerful: x509.ObjectIdentifier) -> None:
    """A leaf with every asked EKU plus one powerful EKU the policy did not ask for fails unexpected_usage."""
    leaf = make_leaf(ekus=[SERVER_AUTH, CLIENT_AUTH, powerful])
    assert refused(answer(leaf, INTERMEDIATE)).reason == "unexpected_usage"


def test_powerful_eku_the_policy_asked_for_verifies() -> None:
    """codeSigning in the leaf is fine when the policy asked for codeSigning."""
    leaf = make_leaf(ekus=[ExtendedKeyUsageOID.CODE_SIGNING])
    verify(answer(leaf, INTERMEDIATE), ekus=(ExtendedKeyUsageOID.CODE_SIGNING.dotted_string,))


def test_unasked_ordinary_eku_verifies() -> None:
    """An extra EKU outside the powerful ones (emailProtection) does not fail the answer."""
    verify(answer(make_leaf(ekus=[SERVER_AUTH, CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]), INTERMEDIATE))


def test_leaf_without_eku_when_the_policy_asks_for_some_is_unexpected_usage() -> None:
    """A leaf without extendedKeyUsage is good for any purpose, so it fails when the policy named EKUs."""
    assert refused(answer(make_leaf(ekus=None), INTERMEDIATE)).reason == "unexpected_usage"


# --- validity -----------------------------------------------------------------------------------------------------


def test_leaf_starting_within_the_clock_skew_verifies() -> None:
    """A leaf that starts 4 minutes from now (a CA clock slightly ahead) verifies."""
    verify(answer(make_leaf(not_before=NOW + timedelta(minutes=4)), INTERMEDIATE))


def test_leaf_starting_beyond_the_clock_skew_is_not_yet_valid() -> None:
    """A leaf that starts 6 minutes from now fails not_yet_valid."""
    leaf = make_leaf(not_before=NOW + timedelta(minutes=6))
    assert refused(answer(leaf, INTERMEDIATE)).reason == "not_yet_valid"


def test_expired_leaf_is_expired() -> None:
    """A leaf whose notAfter has passed fails expired."""
    leaf = make_leaf(not_before=NOW - timedelta(days=10), not_after=NOW - timedelta(seconds=1))
    assert refused(answer(leaf, INTERMEDIATE)).reason == "expired"


def test_validity_beyond_the_policys_months_and_slack_is_too_long() -> None:
    """A leaf living 12 calendar months and 4 days, for a 12-month policy, fails validity_too_long."""
    start = NOW - timedelta(minutes=1)
    leaf = make_leaf(not_before=start, not_after=start.replace(year=start.year + 1) + timedelta(days=4))
    error = refused(answer(leaf, INTERMEDIATE))
    assert error.reason == "validity_too_long"
    assert "12 months" in error.message


def test_validity_within_the_slack_verifies() -> None:
    """A leaf living 12 calendar months and 2 days, for a 12-month policy, verifies (CAs round)."""
    start = NOW - timedelta(minutes=1)
    verify(
        answer(
            make_leaf(not_before=start, not_after=start.replace(year=start.year + 1) + timedelta(days=2)), INTERMEDIATE
        )
    )


def test_months_are_calendar_months_from_not_before() -> None:
    """One month from January 31 ends on February 28, so March 4 is past one month and three days."""
    start = datetime(2026, 1, 31, tzinfo=UTC)
    leaf = make_leaf(not_before=start, not_after=datetime(2026, 3, 4, tzinfo=UTC))
    now = datetime(2026, 2, 1, tzinfo=UTC)
    assert refused(answer(leaf, INTERMEDIATE), now=now, validity_months=1).reason == "validity_too_long"


def test_century_is_fine_when_the_policy_gives_no_validity() -> None:
    """Without a policy validity there is no length check, even for 100 years."""
    verify(answer(make_leaf(not_after=NOW + timedelta(days=36500)), INTERMEDIATE), validity_months=None)


# --- unknown_critical_extension -----------------------------------------------------------------------------------


def test_unknown_critical_extension_in_the_leaf_is_refused() -> None:
    """A leaf with a critical extension outside the understood list fails unknown_critical_extension."""
    extension = x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00")
    error = refused(answer(make_leaf(extensions=[(extension, True)]), INTERMEDIATE))
    assert error.reason == "unknown_critical_extension"
    assert UNKNOWN_OID.dotted_string in error.message


def test_precertificate_poison_is_an_unknown_critical_extension() -> None:
    """A CT precertificate (its critical poison extension) must never be merged."""
    leaf = make_leaf(extensions=[(x509.PrecertPoison(), True)])
    assert refused(answer(leaf, INTERMEDIATE)).reason == "unknown_critical_extension"


def test_unknown_critical_extension_in_a_chain_certificate_is_refused() -> None:
    """A chain certificate with an unknown critical extension fails unknown_critical_extension."""
    issuing = make_ca(
        "Corp Issuing",
        ROOT,
        subject=INTERMEDIATE.cert.subject,
        extensions=[(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)],
    )
    assert refused(answer(make_leaf(issuer=issuing), issuing, ROOT)).reason == "unknown_critical_extension"


def test_unknown_non_critical_extension_verifies() -> None:
    """A non-critical extension we do not know is no reason to refuse."""
    verify(answer(make_leaf(extensions=[(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), False)]), INTERMEDIATE))


def test_understood_critical_extensions_in_the_chain_verify() -> None:
    """Critical name constraints and policy constraints on a CA are understood and verify."""
    constrained = make_ca(
        "Constrained Issuing",
        ROOT,
        extensions=[
            (x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None), True),
            (x509.PolicyConstraints(require_explicit_policy=None, inhibit_policy_mapping=0), True),
        ],
    )
    verify(answer(make_leaf(issuer=constrained), constrained, ROOT), anchors=(ROOT.cert,))


# --- chain_invalid ------------------------------------------------------------------------------------------------

NOT_A_CA = make_ca("Not a CA", ROOT, is_ca=False)
NO_CERT_SIGN = make_ca("May not sign", ROOT, key_cert_sign=False)
EXPIRED_ISSUING = make_ca("Expired Issuing", ROOT, not_after=NOW - timedelta(days=1))
STRANGER = make_ca("Stranger")

CHAIN_FAILURES: list[tuple[str, Issued]] = [
    ("reversed", answer(make_leaf(), ROOT, INTERMEDIATE)),
    ("unrelated-certificate", answer(make_leaf(), STRANGER)),
    # Same issuer name, another key: the names link up but the signature does not verify.
    ("forged-issuer-name", answer(make_leaf(issuer=STRANGER, issuer_name=INTERMEDIATE.cert.subject), INTERMEDIATE)),
    ("not-a-ca", answer(make_leaf(issuer=NOT_A_CA), NOT_A_CA, ROOT)),
    ("no-key-cert-sign", answer(make_leaf(issuer=NO_CERT_SIGN), NO_CERT_SIGN, ROOT)),
    ("expired-ca", answer(make_leaf(issuer=EXPIRED_ISSUING), EXPIRED_ISSUING, ROOT)),
]


@pytest.mark.parametrize("issued", [i for _, i in CHAIN_FAILURES], ids=[n for n, _ in CHAIN_FAILURES])
def test_broken_chain_is_chain_invalid(issued: Issued) -> None:
    """A chain certificate that is not a signing CA valid now, or not the signer of the one before, is chain_invalid."""
    assert refused(issued, anchors=(ROOT.cert,)).reason == "chain_invalid"


# --- untrusted_issuer: the default anchor (the replaced version's issuer) -----------------------------------------

OTHER_ROOT = make_ca("Other Root")
OTHER_ISSUING = make_ca("Other Issuing", OTHER_ROOT)


def test_renewal_signed_by_another_ca_is_untrusted() -> None:
    """A well-formed answer from a CA other than the one that issued the replaced version fails untrusted_issuer."""
    error = refused(answer(make_leaf(issuer=OTHER_ISSUING), OTHER_ISSUING, OTHER_ROOT))
    assert error.reason == "untrusted_issuer"
    assert "Corp Issuing" in error.message
    assert "trust_anchor_path" in error.message


def test_ca_copying_the_issuers_name_and_key_id_is_untrusted() -> None:
    """A CA with the issuing CA's name and key identifier but another key is not the anchor: the signature decides."""
    impostor = make_ca(
        "Corp Issuing",
        subject=INTERMEDIATE.cert.subject,
        subject_key_id=INTERMEDIATE.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest,
    )
    assert refused(answer(make_leaf(issuer=impostor), impostor)).reason == "untrusted_issuer"


def test_new_intermediate_under_the_same_root_needs_an_anchor() -> None:
    """The default anchor is the issuing CA itself, so a new intermediate (even under the same root) is refused."""
    successor = make_ca("Corp Issuing 2", ROOT)
    assert refused(answer(make_leaf(issuer=successor), successor, ROOT)).reason == "untrusted_issuer"


def test_answer_without_chain_is_untrusted_and_says_how_to_fix_it() -> None:
    """Without a chain the leaf's signature cannot be checked; the message names the anchor options."""
    error = refused(Issued(pem(make_leaf())))
    assert error.reason == "untrusted_issuer"
    assert "cannot be checked" in error.message
    assert "trust_anchor_setting" in error.message


def test_unknown_replaced_certificate_without_anchors_is_untrusted() -> None:
    """With neither the replaced certificate nor a configured anchor nothing is trusted."""
    assert refused(HONEST, replaced=None).reason == "untrusted_issuer"


# --- untrusted_issuer: configured anchors (a planned CA rollover) -------------------------------------------------

ROLLOVER = answer(make_leaf(issuer=OTHER_ISSUING), OTHER_ISSUING)


def test_configured_root_accepts_a_planned_rollover() -> None:
    """A configured anchor that signed the last chain certificate makes another CA's answer verify."""
    verify(ROLLOVER, anchors=(OTHER_ROOT.cert,))


def test_configured_anchor_found_in_the_chain_verifies() -> None:
    """An anchor sent in the chain (same subject and key) ends the path there."""
    verify(answer(make_leaf(issuer=OTHER_ISSUING), OTHER_ISSUING, OTHER_ROOT), anchors=(OTHER_ROOT.cert,))


def test_configured_anchor_that_signed_a_chainless_leaf_verifies() -> None:
    """A leaf sent without a chain verifies when a configured anchor's key signed it."""
    verify(Issued(pem(make_leaf(issuer=OTHER_ISSUING))), anchors=(OTHER_ROOT.cert, OTHER_ISSUING.cert))


def test_chainless_leaf_no_anchor_signed_is_untrusted() -> None:
    """A leaf without chain that no configured anchor signed fails untrusted_issuer: its signature cannot be checked."""
    error = refused(Issued(pem(make_leaf(issuer=OTHER_ISSUING))), anchors=(OTHER_ROOT.cert,))
    assert error.reason == "untrusted_issuer"
    assert "cannot be checked" in error.message


def test_configured_anchors_replace_the_default() -> None:
    """With anchors configured, the old CA's answer is refused unless it chains to one of them."""
    assert refused(HONEST, anchors=(OTHER_ROOT.cert,)).reason == "untrusted_issuer"


def test_anchor_is_matched_by_key_not_by_name_alone() -> None:
    """A chain certificate that copies an anchor's name but not its key does not end the path at that anchor."""
    lookalike = make_ca("Other Root", subject=OTHER_ROOT.cert.subject)
    issuing = make_ca("Other Issuing", lookalike)
    assert refused(answer(make_leaf(issuer=issuing), issuing, lookalike), anchors=(OTHER_ROOT.cert,)).reason == (
        "untrusted_issuer"
    )


# --- messages -----------------------------------------------------------------------------------------------------

EVERY_FAILURE: list[Issued] = [
    answer(make_leaf(key=ec.generate_private_key(ec.SECP256R1())), INTERMEDIATE),
    answer(make_leaf(sans=[*SANS, x509.DNSName("*.evil.example")]), INTERMEDIATE),
    answer(make_leaf(ekus=[ExtendedKeyUsageOID.CODE_SIGNING]), INTERMEDIATE),
    answer(make_leaf(not_after=NOW + timedelta(days=36500)), INTERMEDIATE),
    answer(make_leaf(extensions=[(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)]), INTERMEDIATE),
    *(issued for _, issued in CHAIN_FAILURES),
    ROLLOVER,
    Issued(pem(make_leaf())),
]


@pytest.mark.parametrize("issued", EVERY_FAILURE)
def test_messages_carry_no_pem_and_stay_short(issued: Issued) -> None:
    """No verification message includes a PEM body, and each stays a readable length."""
    error = refused(issued)
    assert "BEGIN" not in error.message
    assert "MII" not in error.message
    assert len(error.message) < 700


def test_hostile_names_are_clipped_and_escaped_in_messages() -> None:
    """A CA's 300-character name with a line break shows clipped, on one line."""
    hostile = "a" * 300 + "\nevil"
    error = refused(answer(make_leaf(sans=[*SANS, x509.DNSName(hostile)]), INTERMEDIATE))
    assert "\n" not in error.message
    assert "a" * 100 not in error.message


# --- trust anchors from configuration (renewal.ca.anchors) -----------------------------------------------------------


def profile(**options: object) -> CAProfile:
    return CAProfile(name="corp", adapter="local", options=options)


def test_profile_without_anchor_options_has_no_anchors() -> None:
    """A profile naming no anchor gets none: verification uses the replaced version's issuer."""
    assert trust_anchors_for(profile(), {}) == ()


def test_trust_anchor_path_loads_every_certificate_in_the_file(tmp_path: Path) -> None:
    """trust_anchor_path gives every CA certificate of its PEM file, in order."""
    path = tmp_path / "anchors.pem"
    path.write_text(OTHER_ROOT.pem + ROOT.pem)
    assert trust_anchors_for(profile(trust_anchor_path=str(path)), {}) == (OTHER_ROOT.cert, ROOT.cert)


def test_trust_anchor_setting_accepts_literal_newline_escapes() -> None:
    """An app setting holding the PEM on one line with literal \\n escapes gives the anchor."""
    environ = {"CORP_ANCHOR": OTHER_ROOT.pem.replace("\n", "\\n")}
    assert trust_anchors_for(profile(trust_anchor_setting="CORP_ANCHOR"), environ) == (OTHER_ROOT.cert,)


def test_both_anchor_options_are_refused(tmp_path: Path) -> None:
    """Giving trust_anchor_path and trust_anchor_setting together is a configuration error."""
    with pytest.raises(ConfigurationError, match="not both"):
        trust_anchors_for(profile(trust_anchor_path="x.pem", trust_anchor_setting="X"), {"X": ROOT.pem})


def test_unreadable_anchor_file_names_the_option_not_the_path(tmp_path: Path) -> None:
    """A missing anchor file fails naming trust_anchor_path, without showing the path."""
    missing = str(tmp_path / "secret-location" / "anchor.pem")
    with pytest.raises(ConfigurationError) as caught:
        trust_anchors_for(profile(trust_anchor_path=missing), {})
    assert "trust_anchor_path" in caught.value.message
    assert "secret-location" not in caught.value.message


def test_anchor_setting_without_pem_names_the_option_not_its_content() -> None:
    """An anchor setting holding something that is not PEM fails naming the option, never echoing the content."""
    with pytest.raises(ConfigurationError) as caught:
        trust_anchors_for(profile(trust_anchor_setting="CORP_ANCHOR"), {"CORP_ANCHOR": "hunter2-not-a-pem"})
    assert "trust_anchor_setting" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_anchor_setting_that_is_missing_is_refused() -> None:
    """An anchor setting naming an app setting that is not there fails naming the option."""
    with pytest.raises(ConfigurationError, match="trust_anchor_setting"):
        trust_anchors_for(profile(trust_anchor_setting="NOT_THERE"), {})


def test_anchor_that_is_not_a_ca_is_refused(tmp_path: Path) -> None:
    """A configured anchor without basicConstraints CA:TRUE is a configuration error."""
    path = tmp_path / "anchor.pem"
    path.write_text(pem(REPLACED))
    with pytest.raises(ConfigurationError, match="not a CA"):
        trust_anchors_for(profile(trust_anchor_path=str(path)), {})


@dataclass(frozen=True, slots=True, kw_only=True)
class NoOptions:
    """An adapter's options class declaring nothing of its own."""


def test_adapters_reading_options_through_parse_options_accept_the_anchor_options() -> None:
    """parse_options always allows the common anchor options, which are the ones renewal.ca.anchors reads."""
    assert {TRUST_ANCHOR_PATH, TRUST_ANCHOR_SETTING} == COMMON_OPTIONS
    parse_options(NoOptions, profile(trust_anchor_path="a.pem", trust_anchor_setting="A"), {})


@pytest.mark.parametrize(
    "options",
    [
        {"adapter": "cfssl", "url": "http://127.0.0.1:1"},
        {"adapter": "acme", "directory_url": "http://127.0.0.1:1/dir", "dns_provider": "challtestsrv",
         "dns_options": {"management_url": "http://127.0.0.1:1"}},
        {"adapter": "vault", "url": "http://127.0.0.1:1", "role": "web", "token_setting": "VAULT_TOKEN"},
    ],
    ids=lambda options: str(options["adapter"]),
)  # fmt: skip
def test_adapters_with_their_own_option_lists_accept_the_anchor_options(options: dict[str, object]) -> None:
    """Each adapter builds from a profile that also names a trust anchor."""
    adapter, rest = str(options["adapter"]), {k: v for k, v in options.items() if k != "adapter"}
    spec = CAProfile("corp", adapter, {**rest, "trust_anchor_path": "a.pem"})
    assert adapter_for(spec, {"VAULT_TOKEN": "t"}) is not None


def test_local_adapter_accepts_the_anchor_options(tmp_path: Path) -> None:
    """The local CA adapter builds from a profile that also names a trust anchor setting."""
    options = {k: v for k, v in create_local_ca(tmp_path).profile_options().items() if k != "adapter"}
    spec = CAProfile("corp", "local", {**options, "trust_anchor_setting": "CORP_ANCHOR"})
    assert adapter_for(spec, {"CORP_ANCHOR": ROOT.pem}) is not None
