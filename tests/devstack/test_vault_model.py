"""The vault model, driven through ``Vault.handle`` with an injected clock and an event collector."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from devstack.keyvault._types import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_NEAR_EXPIRY,
    CERTIFICATE_NEW_VERSION_CREATED,
    ApiRequest,
)
from devstack.keyvault._vault import OPERATIONS, Vault
from tests.devstack.vault_harness import BASE_URL, START, FakeClock, Harness, TestCA, b64, body_of, der

DAY = 86400
MSG_NOT_FOUND = (
    "A certificate with (name/id) {} was not found in this key vault. If you recently deleted this certificate you "
    "may be able to recover it using the correct recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)
MSG_KEY_MISMATCH = (
    "The public key of the end-entity certificate in the specified X.509 certificate content does not match the "
    "public part of the specified private key. Please check if certificate is valid."
)


@pytest.fixture
def kv() -> Harness:
    return Harness()


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


def merge(kv: Harness, ca: TestCA, name: str, *, lifetime: int = 365 * DAY, **extra: Any) -> dict[str, Any]:
    csr = kv.csr(name)
    now = int(kv.clock())
    leaf = ca.sign(csr, not_before=now - 60, not_after=now + lifetime)
    answer = kv.call("POST", f"/certificates/{name}/pending/merge", {"x5c": [b64(der(leaf)), b64(ca.der)], **extra})
    assert answer.status == 201, answer.body
    return body_of(answer)


def error_of(answer: Any) -> tuple[int, str, str]:
    body = body_of(answer)
    return answer.status, body["error"]["code"], body["error"]["message"]


# ------------------------------------------------------------------------------------------------ CSR per policy


def test_unknown_create_returns_pending_operation_with_exact_fields(kv: Harness) -> None:
    """Create with issuer Unknown answers 202 with Location, Retry-After 10 and the recorded operation keys."""
    answer = kv.create(
        "app",
        {"x509_props": {"subject": "CN=MyCert", "sans": {}}, "issuer": {"name": "Unknown", "cert_transparency": False}},
    )
    body = body_of(answer)
    assert answer.status == 202
    assert answer.headers["Retry-After"] == "10"
    assert (
        answer.headers["Location"]
        == f"{BASE_URL}/certificates/app/pending?api-version=2025-07-01&request_id={body['request_id']}"
    )
    assert list(body) == ["id", "issuer", "csr", "cancellation_requested", "status", "status_details", "request_id"]
    assert body["issuer"] == {"name": "Unknown"}
    assert body["status"] == "inProgress"
    assert body["status_details"] == "Pending certificate created. Please Perform Merge to complete the request."
    assert len(body["request_id"]) == 32
    int(body["request_id"], 16)


def test_default_csr_is_rsa_2048_sha256_with_recorded_extensions_in_order(kv: Harness) -> None:
    """The default CSR: RSA-2048, SHA-256, PrintableString CN, KeyUsage critical, EKU server+client, CA:FALSE."""
    kv.create("app", {"x509_props": {"subject": "CN=MyCert", "sans": {}}, "issuer": {"name": "Unknown"}})
    csr = kv.csr("app")
    assert csr.is_signature_valid
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    key = csr.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048
    # The recorded CSR starts with this subject: CN=MyCert as a PrintableString (tag 0x13).
    assert csr.subject.public_bytes() == base64.b64decode("MBExDzANBgNVBAMTBk15Q2VydA==")
    oids = [(e.oid, e.critical) for e in csr.extensions]
    assert oids == [
        (ExtensionOID.KEY_USAGE, True),
        (ExtensionOID.EXTENDED_KEY_USAGE, False),
        (ExtensionOID.BASIC_CONSTRAINTS, False),
    ]
    usage = csr.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment
    assert not usage.key_cert_sign
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert csr.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_csr_extension_der_matches_the_recorded_csr(kv: Harness) -> None:
    """The extensionRequest attribute is byte-identical to the one in the recorded Python merge CSR."""
    kv.create("app", {"x509_props": {"subject": "CN=MyCert", "sans": {}}, "issuer": {"name": "Unknown"}})
    mine = der_csr_tail(kv.csr("app"))
    recorded_csr = x509.load_der_x509_csr(base64.b64decode(RECORDED_MERGE_CSR))
    assert mine == der_csr_tail(recorded_csr)


RECORDED_MERGE_CSR = (
    "MIICoTCCAYkCAQAwETEPMA0GA1UEAxMGTXlDZXJ0MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2jo3Ky30FmxHPZ+OqOZsDeN/hzFPtlKCEZ"
    "tpHTAflI/AuDNCSu2xWikt374ve+pwt3GDXkqI5xSgHI+diU9KFSxRSDxWKaHqkHeH2YQqFeapjsSoAfo1OR7I4fetnaLRGh3cpd5qhLB1oyPpolE+9d5d"
    "EUDg6cPHcApkzwpQDLqQf1+uBXfVHxYXrpzP2FujdpiioOKlELHmk2uuT+e1pe5UPXhnmoz1yLnk125v/f5kTckcfEdExYieqWjbJYIzl67/DG/2JX6J8i"
    "fk9HpoubU6z+6vS37b0qAQ1qa7iwlaJLiZet78l6Q5r7WjgxLndVVf64VmBD3CaQJlIdsoHQIDAQABoEswSQYJKoZIhvcNAQkOMTwwOjAOBgNVHQ8BAf8E"
    "BAMCBaAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMAkGA1UdEwQCMAAwDQYJKoZIhvcNAQELBQADggEBAMUBDC5tGWYXdnCRmMvbXq8M1iolO2"
    "CFOYCMEGNFqMEBhcjXiO2rFxqI61oZYgKDJJ/NlpQ0LH+iLnbLWJ9S/41Y4yIoZ9XY6ZkZrCa4koVRxwQN4GbuLyc3un9qxvxCHANMT77eWVei/tFK6VyU"
    "rRnuesqzIm21nz7zePFap+WlLrVG91q71Hw4OoFWsFvLwjpJSsB6A4SfxzOmlhlfGbrpr3yLJ4rWXMFRwbQQde4xwiW2woYuJH45LfZ6YvYVd1Ht+Rehw1"
    "Wjr01xPNSli504FQJIuOPjTHS6AFhMUHn0iiTkJHHXlO3j0SR9wM+bFjiaAznA8hX539wUwBcYjcQ="
)


def der_csr_tail(csr: x509.CertificateSigningRequest) -> list[bytes]:
    """The DER of each requested extension, in order."""
    return [(e.oid.dotted_string, e.critical, e.value.public_bytes()) for e in csr.extensions]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key_props", "expected_type", "expected_size", "expected_props"),
    [
        ({"kty": "RSA", "key_size": 3072}, rsa.RSAPublicKey, 3072, {"kty": "RSA", "key_size": 3072}),
        ({"kty": "RSA-HSM", "key_size": 4096}, rsa.RSAPublicKey, 4096, {"kty": "RSA-HSM", "key_size": 4096}),
        ({"kty": "EC"}, ec.EllipticCurvePublicKey, 256, {"kty": "EC", "key_size": 256, "crv": "P-256"}),
        ({"kty": "EC-HSM", "crv": "P-384"}, ec.EllipticCurvePublicKey, 384, {"kty": "EC-HSM", "crv": "P-384"}),
        ({"kty": "EC", "crv": "P-521"}, ec.EllipticCurvePublicKey, 521, {"kty": "EC", "key_size": 521}),
    ],
)
def test_csr_key_follows_key_props(
    kv: Harness, key_props: dict[str, Any], expected_type: type, expected_size: int, expected_props: dict[str, Any]
) -> None:
    """The CSR key is generated per key_props (RSA 3072/4096, EC P-256/384/521, HSM kinds) and the policy echoes it."""
    answer = kv.create(
        "app", {"key_props": key_props, "x509_props": {"subject": "CN=app"}, "issuer": {"name": "Unknown"}}
    )
    assert answer.status == 202, answer.body
    csr = kv.csr("app")
    key = csr.public_key()
    assert isinstance(key, expected_type)
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    assert key.key_size == expected_size
    assert csr.is_signature_valid
    policy = body_of(kv.call("GET", "/certificates/app/policy"))
    assert expected_props.items() <= policy["key_props"].items()


def test_csr_carries_every_san_kind_after_eku_and_before_basic_constraints(kv: Harness) -> None:
    """DNS names, emails, UPNs, URIs and IPs from the policy go in a non-critical SAN, in the recorded slot."""
    sans = {
        "dns_names": ["app.contoso.internal", "www.contoso.internal"],
        "emails": ["ops@contoso.internal"],
        "upns": ["svc@contoso.internal"],
        "uris": ["spiffe://contoso/app"],
        "ipAddresses": ["10.0.0.1", "::1"],
    }
    kv.create(
        "app", {"x509_props": {"subject": "CN=app, O=Contoso, C=US", "sans": sans}, "issuer": {"name": "Unknown"}}
    )
    csr = kv.csr("app")
    assert [e.oid for e in csr.extensions] == [
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
    ]
    san_ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san_ext.critical is False
    san = san_ext.value
    assert san.get_values_for_type(x509.DNSName) == sans["dns_names"]
    assert san.get_values_for_type(x509.RFC822Name) == sans["emails"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == sans["uris"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1")]
    other = san.get_values_for_type(x509.OtherName)
    assert other[0].type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    assert other[0].value.endswith(b"svc@contoso.internal")
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "app"
    assert csr.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "US"
    # RFC 4514 order: the string names the most specific RDN first, DER holds it last.
    assert csr.subject.rdns[-1].get_attributes_for_oid(NameOID.COMMON_NAME)


def test_empty_subject_with_only_ip_sans_gives_critical_san(kv: Harness) -> None:
    """A policy with only sans.ipAddresses yields an empty subject and a critical SAN, as recorded."""
    answer = kv.create(
        "app", {"x509_props": {"sans": {"ipAddresses": ["10.0.0.1", "192.168.1.1"]}}, "issuer": {"name": "Unknown"}}
    )
    assert answer.status == 202, answer.body
    csr = kv.csr("app")
    assert len(csr.subject) == 0
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is True


def test_key_usage_is_normalised_sorted_and_put_in_the_csr(kv: Harness) -> None:
    """key_usage is stored in the service's spelling, sorted ("crlSign" -> "cRLSign"), and drives the CSR KeyUsage."""
    usage = ["crlSign", "dataEncipherment", "digitalSignature", "keyEncipherment", "keyAgreement", "keyCertSign"]
    kv.create("app", {"x509_props": {"subject": "CN=default", "key_usage": usage}, "issuer": {"name": "Unknown"}})
    policy = body_of(kv.call("GET", "/certificates/app/policy"))
    assert policy["x509_props"]["key_usage"] == [
        "cRLSign", "dataEncipherment", "digitalSignature", "keyAgreement", "keyCertSign", "keyEncipherment",
    ]  # fmt: skip
    value = kv.csr("app").extensions.get_extension_for_class(x509.KeyUsage).value
    assert value.crl_sign
    assert value.key_cert_sign
    assert value.key_agreement
    assert not value.content_commitment


def test_explicit_ekus_and_empty_ekus(kv: Harness) -> None:
    """Given EKUs replace the default; an empty list leaves the EKU extension out."""
    kv.create("a", {"x509_props": {"subject": "CN=a", "ekus": ["1.3.6.1.5.5.7.3.2"]}, "issuer": {"name": "Unknown"}})
    eku = kv.csr("a").extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    kv.create("b", {"x509_props": {"subject": "CN=b", "ekus": []}, "issuer": {"name": "Unknown"}})
    assert ExtensionOID.EXTENDED_KEY_USAGE not in [e.oid for e in kv.csr("b").extensions]


def test_policy_defaults_are_filled_as_the_service_does(kv: Harness) -> None:
    """Policy defaults: exportable RSA-2048, pkcs12, EKUs, key usage, 12 months, CA false, EmailContacts for Unknown."""
    kv.clock.now = 1774739258
    kv.create(
        "app",
        {"x509_props": {"subject": "CN=MyCert", "sans": {}}, "issuer": {"name": "Unknown", "cert_transparency": False}},
    )
    policy = body_of(kv.call("GET", "/certificates/app/policy"))
    assert policy == {
        "id": f"{BASE_URL}/certificates/app/policy",
        "key_props": {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False},
        "secret_props": {"contentType": "application/x-pkcs12"},
        "x509_props": {
            "subject": "CN=MyCert",
            "sans": {},
            "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
            "key_usage": ["digitalSignature", "keyEncipherment"],
            "validity_months": 12,
            "basic_constraints": {"ca": False},
        },
        "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}],
        "issuer": {"name": "Unknown", "cert_transparency": False},
        "attributes": {"enabled": True, "created": 1774739258, "updated": 1774739258},
    }


def test_self_issuer_defaults_to_auto_renew_and_omits_sans(kv: Harness) -> None:
    """Issuer Self gets an AutoRenew lifetime action; sans is echoed only when sent."""
    kv.create("app", {"x509_props": {"subject": "CN=DefaultPolicy"}, "issuer": {"name": "Self"}})
    policy = body_of(kv.call("GET", "/certificates/app/policy"))
    assert policy["lifetime_actions"][0]["action"] == {"action_type": "AutoRenew"}
    assert "sans" not in policy["x509_props"]
    assert policy["issuer"] == {"name": "Self"}


@pytest.mark.parametrize("subject", ["Self", "CN", "=x", "CN=a,,O=b", 'CN="open'])
def test_invalid_subject_answers_the_recorded_error(kv: Harness, subject: str) -> None:
    """A subject that is not a distinguished name answers 400 with the recorded text (trailing CRLF included)."""
    answer = kv.create("app", {"x509_props": {"subject": subject}, "issuer": {"name": "Unknown"}})
    assert error_of(answer) == (
        400,
        "BadParameter",
        "Property policy.x509_props has invalid value. Invalid X.500 distinguished name\r\n",
    )


@pytest.mark.parametrize(
    "policy",
    [
        {"key_props": {"kty": "RSA", "key_size": 1024}, "x509_props": {"subject": "CN=a"}},
        {"key_props": {"kty": "EC", "crv": "P-256K"}, "x509_props": {"subject": "CN=a"}},
        {"key_props": {"kty": "oct"}, "x509_props": {"subject": "CN=a"}},
        {"x509_props": {"subject": "CN=a", "key_usage": ["invalid"]}},
        {"x509_props": {"subject": "CN=a", "validity_months": "12"}},
        {"x509_props": {"subject": "CN=a", "sans": {"dns_names": "a.example"}}},
        {"x509_props": {"subject": "CN=a", "ekus": ["not-an-oid"]}},
        {"x509_props": {}},
        {"x509_props": {"subject": "CN=a"}, "secret_props": {"contentType": "text/plain"}},
        {"x509_props": {"subject": "CN=a"}, "lifetime_actions": [{"trigger": {}, "action": {"action_type": "Nope"}}]},
        {"x509_props": {"subject": "CN=a"}, "issuer": {"name": "NoSuchIssuer"}},
        {"x509_props": "CN=a"},
    ],
)
def test_unusable_policy_is_bad_parameter(kv: Harness, policy: dict[str, Any]) -> None:
    """Unsupported key props, key usages, types or issuers answer 400 BadParameter and create nothing."""
    answer = kv.create("app", policy)
    status, code, message = error_of(answer)
    assert (status, code) == (400, "BadParameter")
    assert message.startswith("Property ")
    assert kv.call("GET", "/certificates/app/").status == 404


# ------------------------------------------------------------------------------------------------ merge


def test_merge_with_matching_key_completes_the_operation(kv: Harness, ca: TestCA) -> None:
    """Merging a leaf for the pending key answers 201 with a new version, x5t, cer, nbf/exp from the leaf."""
    created = body_of(kv.create("app"))
    placeholder_id = body_of(kv.call("GET", "/certificates/app/"))["id"]
    kv.clock.advance(5)
    csr = kv.csr("app")
    leaf = ca.sign(csr, not_before=START - 60, not_after=START + 60)
    answer = kv.call("POST", "/certificates/app/pending/merge", {"x5c": [b64(der(leaf))]})
    body = body_of(answer)
    assert answer.status == 201
    assert answer.headers == {"Location": f"{BASE_URL}/certificates/app?api-version=2025-07-01"}
    version = body["id"].rsplit("/", 1)[1]
    assert body["id"] != placeholder_id
    assert len(version) == 32
    assert body["kid"] == f"{BASE_URL}/keys/app/{version}"
    assert body["sid"] == f"{BASE_URL}/secrets/app/{version}"
    assert body["cer"] == b64(der(leaf))
    expected_x5t = base64.urlsafe_b64encode(hashlib.sha1(der(leaf)).digest()).rstrip(b"=").decode()  # noqa: S324
    assert body["x5t"] == expected_x5t
    assert body["attributes"]["nbf"] == START - 60
    assert body["attributes"]["exp"] == START + 60
    assert body["attributes"]["enabled"] is True
    assert body["attributes"]["created"] == START + 5
    assert body["pending"] == {"id": f"{BASE_URL}/certificates/app/pending"}
    op = body_of(kv.call("GET", "/certificates/app/pending"))
    assert op["status"] == "completed"
    assert op["target"] == f"{BASE_URL}/certificates/app"
    assert "status_details" not in op
    assert op["request_id"] == created["request_id"]
    assert [(e.event_type, e.version, e.nbf, e.exp) for e in kv.events] == [
        (CERTIFICATE_NEW_VERSION_CREATED, version, START - 60, START + 60)
    ]


def test_merge_with_another_key_is_rejected_with_the_recorded_message(kv: Harness, ca: TestCA) -> None:
    """A leaf whose key is not the pending key answers 400 BadParameter with the recorded text; the op stays."""
    kv.create("app")
    other = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    leaf = ca.sign(other, not_before=START, not_after=START + DAY)
    answer = kv.call("POST", "/certificates/app/pending/merge", {"x5c": [b64(der(leaf))]})
    assert error_of(answer) == (400, "BadParameter", MSG_KEY_MISMATCH)
    assert body_of(kv.call("GET", "/certificates/app/pending"))["status"] == "inProgress"
    assert kv.events == []


def test_merge_without_pending_operation_is_pending_not_found(kv: Harness, ca: TestCA) -> None:
    """Merging a name with no pending operation answers 404 PendingCertificateNotFound."""
    answer = kv.call("POST", "/certificates/never-created/pending/merge", {"x5c": [b64(ca.der)]})
    assert error_of(answer) == (404, "PendingCertificateNotFound", "Pending Certificate not found: never-created")


def pem_text(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda leaf, ca: [b64(der(leaf)), b64(ca)], id="base64-der"),
        pytest.param(lambda leaf, ca: [b64(b64(der(leaf)).encode())], id="base64-of-base64-der"),
        pytest.param(lambda leaf, ca: [b64(pem_text(leaf))], id="base64-of-pem"),
        pytest.param(lambda leaf, ca: [b64(pem_text(leaf).split(b"\n", 1)[1])], id="base64-of-pem-without-header"),
        pytest.param(
            lambda leaf, ca: [
                b64(
                    pkcs7.serialize_certificates([x509.load_der_x509_certificate(ca), leaf], serialization.Encoding.DER)
                )
            ],
            id="base64-pkcs7-chain",
        ),
    ],
)
def test_merge_decodes_x5c_leniently(kv: Harness, ca: TestCA, encode: Any) -> None:
    """x5c items are accepted as base64 DER, base64 of base64 text, base64 of PEM (armour half-stripped) and PKCS#7."""
    kv.create("app")
    leaf = ca.sign(kv.csr("app"), not_before=START, not_after=START + DAY)
    answer = kv.call("POST", "/certificates/app/pending/merge", {"x5c": encode(leaf, ca.der)})
    assert answer.status == 201, answer.body
    assert body_of(answer)["cer"] == b64(der(leaf))


@pytest.mark.parametrize(
    "body",
    [{"x5c": []}, {"x5c": ["not base64 !"]}, {"x5c": [b64(b"garbage")]}, {"x5c": "MIIB"}, {"x5c": [1]}, {}],
)
def test_merge_with_unusable_x5c_is_bad_parameter(kv: Harness, body: dict[str, Any]) -> None:
    """An empty, non-list or undecodable x5c answers 400 BadParameter."""
    kv.create("app")
    status, code, _ = error_of(kv.call("POST", "/certificates/app/pending/merge", body))
    assert (status, code) == (400, "BadParameter")


def test_merge_applies_tags_and_attributes_from_the_body(kv: Harness, ca: TestCA) -> None:
    """Tags and attributes.enabled given to merge apply to the new version."""
    kv.create("app", tags={"from": "create"})
    body = merge(kv, ca, "app", tags={"from": "merge"}, attributes={"enabled": False})
    assert body["tags"] == {"from": "merge"}
    assert body["attributes"]["enabled"] is False


def test_create_tags_carry_to_placeholder_and_merged_version(kv: Harness, ca: TestCA) -> None:
    """Tags given on create show on the placeholder and on the version a merge makes."""
    kv.create("app", tags={"team": "web"})
    assert body_of(kv.call("GET", "/certificates/app/"))["tags"] == {"team": "web"}
    assert merge(kv, ca, "app")["tags"] == {"team": "web"}


def test_merge_after_completion_is_forbidden(kv: Harness, ca: TestCA) -> None:
    """A second merge on a completed operation answers 403 Forbidden."""
    kv.create("app")
    merge(kv, ca, "app")
    status, code, _ = error_of(kv.call("POST", "/certificates/app/pending/merge", {"x5c": [b64(ca.der)]}))
    assert (status, code) == (403, "Forbidden")


# ------------------------------------------------------------------------------------------------ conflicts, renewals


def test_create_and_import_while_in_progress_conflict(kv: Harness) -> None:
    """Create or import while the op is inProgress answers 409 Conflict with the recorded text."""
    kv.create("app")
    message = (
        "A new key vault certificate can not be created or imported while a pending key vault certificate's "
        "status is inProgress."
    )
    assert error_of(kv.create("app")) == (409, "Conflict", message)
    assert error_of(kv.call("POST", "/certificates/app/import", {"value": "x"})) == (409, "Conflict", message)


def test_renewal_create_without_policy_reuses_the_stored_policy(kv: Harness, ca: TestCA) -> None:
    """A create with an empty body on an existing certificate uses the stored policy; a first create needs one."""
    assert error_of(kv.call("POST", "/certificates/new/create", {}))[:2] == (400, "BadParameter")
    kv.create("app", {"x509_props": {"subject": "CN=renew.example"}, "issuer": {"name": "Unknown"}})
    merge(kv, ca, "app")
    answer = kv.call("POST", "/certificates/app/create")
    assert answer.status == 202, answer.body
    assert kv.csr("app").subject.rfc4514_string() == "CN=renew.example"


def test_reuse_key_renewal_keeps_the_key_and_default_makes_a_new_one(kv: Harness, ca: TestCA) -> None:
    """With reuse_key true a renewal's CSR carries the current key; otherwise a fresh key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    policy = {"key_props": {"reuse_key": True}, "x509_props": {"subject": "CN=a"}, "issuer": {"name": "Unknown"}}
    kv.create("a", policy)
    first = kv.csr("a").public_key().public_bytes(serialization.Encoding.DER, spki)
    merge(kv, ca, "a")
    kv.create("a", policy)
    assert kv.csr("a").public_key().public_bytes(serialization.Encoding.DER, spki) == first
    kv.create("b")
    first_b = kv.csr("b").public_key().public_bytes(serialization.Encoding.DER, spki)
    merge(kv, ca, "b")
    kv.create("b")
    assert kv.csr("b").public_key().public_bytes(serialization.Encoding.DER, spki) != first_b


# ------------------------------------------------------------------------------------------------ placeholder / latest


def test_first_pending_version_reads_as_disabled_placeholder(kv: Harness) -> None:
    """While the first version is pending, latest is a disabled placeholder with policy and pending link, no cer."""
    kv.create("app")
    body = body_of(kv.call("GET", "/certificates/app"))
    assert set(body) == {"id", "attributes", "policy", "pending"}
    assert body["attributes"]["enabled"] is False
    assert body["attributes"]["created"] == START
    assert body["pending"] == {"id": f"{BASE_URL}/certificates/app/pending"}
    version = body["id"].rsplit("/", 1)[1]
    versioned = body_of(kv.call("GET", f"/certificates/app/{version}"))
    assert set(versioned) == {"id", "attributes"}


@pytest.mark.parametrize(("mode", "expect_placeholder"), [("placeholder", True), ("previous", False)])
def test_latest_during_renewal_follows_the_switch(ca: TestCA, mode: Any, expect_placeholder: bool) -> None:
    """While a renewal is pending, latest is the placeholder by default or the previous version with "previous"."""
    kv = Harness(latest_while_pending=mode)
    kv.create("app")
    current = merge(kv, ca, "app")
    kv.create("app")
    latest = body_of(kv.call("GET", "/certificates/app/"))
    if expect_placeholder:
        assert latest["id"] != current["id"]
        assert "cer" not in latest
        assert latest["attributes"]["enabled"] is False
    else:
        assert latest["id"] == current["id"]
        assert latest["cer"] == current["cer"]
    assert latest["pending"] == {"id": f"{BASE_URL}/certificates/app/pending"}
    # Either way the completed version stays readable by id and is what the secret view serves.
    assert kv.call("GET", current["id"].removeprefix(BASE_URL)).status == 200
    assert body_of(kv.call("GET", "/secrets/app/"))["id"].endswith(current["id"].rsplit("/", 1)[1])


def test_list_hides_pending_only_certificates_unless_asked(kv: Harness) -> None:
    """GET /certificates lists a pending-only certificate only with includePending=true, with subject ""."""
    kv.create("pending-cert")
    kv.create("self-cert", {"x509_props": {"subject": "CN=s"}, "issuer": {"name": "Self"}})
    names = [item["id"] for item in body_of(kv.call("GET", "/certificates"))["value"]]
    assert names == [f"{BASE_URL}/certificates/self-cert"]
    listed = body_of(kv.call("GET", "/certificates", includePending="true"))["value"]
    assert [item["id"] for item in listed] == [
        f"{BASE_URL}/certificates/pending-cert",
        f"{BASE_URL}/certificates/self-cert",
    ]
    assert set(listed[0]) == {"id", "attributes", "subject"}
    assert listed[0]["attributes"]["enabled"] is False
    assert set(listed[1]) == {"id", "x5t", "attributes", "subject"}


# ------------------------------------------------------------------------------------------------ versions / reads


def test_self_create_completes_at_once_and_versions_accumulate(kv: Harness) -> None:
    """Issuer Self issues at once (create answers inProgress as recorded, reads say completed); versions accumulate."""
    policy = {"x509_props": {"subject": "CN=xyz"}, "issuer": {"name": "Self"}}
    first = body_of(kv.create("app", policy))
    assert first["status"] == "inProgress"
    assert first["status_details"].startswith("Pending certificate created. Certificate request is in progress.")
    op = body_of(kv.call("GET", "/certificates/app/pending"))
    assert op["status"] == "completed"
    assert op["target"] == f"{BASE_URL}/certificates/app"
    assert "status_details" not in op
    assert op["request_id"] == first["request_id"]
    kv.clock.advance(28)
    kv.create("app", policy)
    listed = body_of(kv.call("GET", "/certificates/app/versions"))
    assert listed["nextLink"] is None
    assert [item["attributes"]["created"] for item in listed["value"]] == [START, START + 28]
    assert all(set(item) == {"id", "x5t", "attributes", "subject"} for item in listed["value"])
    assert len(kv.events) == 2
    assert all(e.event_type == CERTIFICATE_NEW_VERSION_CREATED for e in kv.events)


def test_self_signed_certificate_matches_the_policy_and_clock(kv: Harness) -> None:
    """The self-signed leaf has nbf 10 minutes before creation, exp after validity_months, the policy's extensions."""
    kv.create(
        "app",
        {
            "x509_props": {"subject": "CN=xyz", "validity_months": 1, "sans": {"dns_names": ["x.test"]}},
            "issuer": {"name": "Self"},
        },
    )
    body = body_of(kv.call("GET", "/certificates/app/"))
    leaf = x509.load_der_x509_certificate(base64.b64decode(body["cer"]))
    assert int(leaf.not_valid_before_utc.timestamp()) == START - 600 == body["attributes"]["nbf"]
    assert int(leaf.not_valid_after_utc.timestamp()) == body["attributes"]["exp"]
    assert 28 * DAY <= body["attributes"]["exp"] - START <= 31 * DAY
    assert leaf.subject == leaf.issuer
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["x.test"]


def test_versioned_get_of_completed_version_has_subject_issuer_serial(kv: Harness) -> None:
    """A versioned GET of a completed version has no policy/pending but subject, issuer and uppercase serialnumber."""
    kv.create("app", {"x509_props": {"subject": "CN=xyz"}, "issuer": {"name": "Self"}})
    latest = body_of(kv.call("GET", "/certificates/app/"))
    version = body_of(kv.call("GET", latest["id"].removeprefix(BASE_URL)))
    assert set(version) == {"id", "kid", "sid", "x5t", "cer", "attributes", "subject", "issuer", "serialnumber"}
    leaf = x509.load_der_x509_certificate(base64.b64decode(latest["cer"]))
    assert version["subject"] == version["issuer"] == "CN=xyz"
    assert int(version["serialnumber"], 16) == leaf.serial_number
    assert version["serialnumber"] == version["serialnumber"].upper()


def test_unknown_certificate_and_version_are_certificate_not_found(kv: Harness) -> None:
    """An unknown name or version answers 404 CertificateNotFound with the long recorded text."""
    answer = kv.call("GET", "/certificates/cert-that-does-not-exist/")
    assert error_of(answer) == (404, "CertificateNotFound", MSG_NOT_FOUND.format("cert-that-does-not-exist"))
    kv.create("app", {"x509_props": {"subject": "CN=xyz"}, "issuer": {"name": "Self"}})
    status, code, _ = error_of(kv.call("GET", "/certificates/app/0123456789abcdef0123456789abcdef"))
    assert (status, code) == (404, "CertificateNotFound")


def test_list_pages_with_maxresults_and_absolute_next_link(kv: Harness) -> None:
    """maxresults pages the list; nextLink is an absolute URL to this vault that yields the next page."""
    for index in range(3):
        kv.create(f"c{index}", {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}})
    seen: list[str] = []
    page = body_of(kv.call("GET", "/certificates", maxresults="2"))
    while True:
        seen += [item["id"].rsplit("/", 1)[1] for item in page["value"]]
        if page["nextLink"] is None:
            break
        assert page["nextLink"].startswith(f"{BASE_URL}/certificates?")
        query = dict(part.split("=", 1) for part in page["nextLink"].split("?", 1)[1].split("&"))
        page = body_of(kv.call("GET", "/certificates", **query))
    assert seen == ["c0", "c1", "c2"]
    assert error_of(kv.call("GET", "/certificates", maxresults="26"))[:2] == (400, "BadParameter")
    assert error_of(kv.call("GET", "/certificates", maxresults="x"))[:2] == (400, "BadParameter")


# ------------------------------------------------------------------------------------------------ policy / update


def test_policy_patch_merges_members_and_bumps_updated(kv: Harness) -> None:
    """PATCH policy sets the given members, keeps the others, and bumps attributes.updated only."""
    kv.create("app", {"x509_props": {"subject": "CN=xyz", "ekus": []}, "issuer": {"name": "Self"}})
    kv.clock.advance(21)
    answer = kv.call("PATCH", "/certificates/app/policy", {"x509_props": {"subject": "CN=twa", "validity_months": 8}})
    policy = body_of(answer)
    assert answer.status == 200
    assert policy["x509_props"]["subject"] == "CN=twa"
    assert policy["x509_props"]["validity_months"] == 8
    assert policy["x509_props"]["ekus"] == []
    assert policy["issuer"] == {"name": "Self"}
    assert policy["attributes"]["created"] == START
    assert policy["attributes"]["updated"] == START + 21
    assert body_of(kv.call("GET", "/certificates/app/policy")) == policy
    assert error_of(kv.call("PATCH", "/certificates/app/policy", {"x509_props": {"subject": "nope"}}))[0] == 400


def test_update_properties_sets_enabled_and_replaces_tags(kv: Harness) -> None:
    """PATCH on the certificate sets attributes.enabled and replaces tags, bumping updated."""
    kv.create("app", {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}}, tags={"a": "1", "b": "2"})
    kv.clock.advance(7)
    body = body_of(kv.call("PATCH", "/certificates/app/", {"attributes": {"enabled": False}, "tags": {"c": "3"}}))
    assert body["attributes"]["enabled"] is False
    assert body["attributes"]["updated"] == START + 7
    assert body["tags"] == {"c": "3"}
    assert "policy" in body
    version = body["id"].rsplit("/", 1)[1]
    versioned = body_of(kv.call("PATCH", f"/certificates/app/{version}", {"tags": {}}))
    assert versioned["tags"] == {}
    assert "policy" not in versioned
    assert error_of(kv.call("PATCH", "/certificates/app/", {"tags": {"a": 1}}))[:2] == (400, "BadParameter")


# ------------------------------------------------------------------------------------------------ pending op


def test_cancel_then_delete_operation_as_recorded(kv: Harness) -> None:
    """Cancel answers inProgress with cancellation_requested, then reads cancelled; delete leaves the placeholder."""
    kv.create("app")
    cancel = kv.call("PATCH", "/certificates/app/pending", {"cancellation_requested": True})
    assert cancel.status == 200
    assert body_of(cancel)["cancellation_requested"] is True
    assert body_of(cancel)["status"] == "inProgress"
    read = kv.call("GET", "/certificates/app/pending")
    assert body_of(read)["status"] == "cancelled"
    assert "status_details" not in body_of(read)
    assert "Retry-After" not in read.headers
    assert error_of(kv.call("PATCH", "/certificates/app/pending", {"cancellation_requested": True}))[:2] == (
        403,
        "Forbidden",
    )
    deleted = kv.call("DELETE", "/certificates/app/pending")
    assert deleted.status == 200
    assert body_of(deleted)["status"] == "cancelled"
    assert error_of(kv.call("GET", "/certificates/app/pending")) == (
        404, "PendingCertificateNotFound", "Pending Certificate not found: app",
    )  # fmt: skip
    latest = body_of(kv.call("GET", "/certificates/app/"))
    assert set(latest) == {"id", "attributes", "policy"}
    assert latest["attributes"]["enabled"] is False
    assert kv.create("app").status == 202


def test_cancel_of_completed_operation_is_forbidden(kv: Harness) -> None:
    """Cancelling an operation that already completed answers 403 Forbidden (as .NET's live test expects)."""
    kv.create("app", {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}})
    assert error_of(kv.call("PATCH", "/certificates/app/pending", {"cancellation_requested": True}))[:2] == (
        403,
        "Forbidden",
    )
    assert error_of(kv.call("PATCH", "/certificates/app/pending", {}))[:2] == (400, "BadParameter")


def test_request_id_filter_on_get_operation(kv: Harness) -> None:
    """GET pending with the op's request_id answers it; with another id, 404 PendingCertificateNotFound."""
    request_id = body_of(kv.create("app"))["request_id"]
    answer = kv.call("GET", "/certificates/app/pending", request_id=request_id)
    assert answer.status == 200
    assert answer.headers == {"Retry-After": "10"}
    assert error_of(kv.call("GET", "/certificates/app/pending", request_id="0" * 32))[:2] == (
        404,
        "PendingCertificateNotFound",
    )


# ------------------------------------------------------------------------------------------------ soft delete


def test_soft_delete_recover_and_purge_cycle(kv: Harness) -> None:
    """Delete answers the DeletedCertificateBundle (+90 days); recover brings it back; purge answers 204."""
    kv.create("app", {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}})
    kv.clock.advance(19)
    deleted = body_of(kv.call("DELETE", "/certificates/app"))
    assert deleted["recoveryId"] == f"{BASE_URL}/deletedcertificates/app"
    assert deleted["deletedDate"] == START + 19
    assert deleted["scheduledPurgeDate"] == START + 19 + 90 * DAY
    assert deleted["attributes"]["recoveryLevel"] == "Recoverable+Purgeable"
    assert deleted["attributes"]["recoverableDays"] == 90
    assert error_of(kv.call("GET", "/certificates/app/")) == (404, "CertificateNotFound", MSG_NOT_FOUND.format("app"))
    assert body_of(kv.call("GET", "/deletedcertificates/app")) == deleted
    listed = body_of(kv.call("GET", "/deletedcertificates"))["value"]
    assert [item["recoveryId"] for item in listed] == [deleted["recoveryId"]]
    assert kv.create("app").status == 409
    recovered = kv.call("POST", "/deletedcertificates/app/recover")
    assert recovered.status == 200
    assert body_of(recovered)["id"] == deleted["id"]
    assert kv.call("GET", "/certificates/app/").status == 200
    kv.call("DELETE", "/certificates/app")
    purged = kv.call("DELETE", "/deletedcertificates/app")
    assert (purged.status, purged.body) == (204, None)
    assert error_of(kv.call("GET", "/deletedcertificates/app")) == (
        404,
        "CertificateNotFound",
        "Deleted Certificate not found: app",
    )
    assert error_of(kv.call("POST", "/deletedcertificates/app/recover")) == (
        404,
        "CertificateNotFound",
        MSG_NOT_FOUND.format("app"),
    )


# ------------------------------------------------------------------------------------------------ import


def make_leaf(key: Any, ca: TestCA, subject: str = "imported.example") -> x509.Certificate:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .sign(key, hashes.SHA256())
    )
    return ca.sign(csr, not_before=START - DAY, not_after=START + 90 * DAY)


@pytest.mark.parametrize(
    ("key_factory", "key_format"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), serialization.PrivateFormat.PKCS8),
        (
            lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            serialization.PrivateFormat.TraditionalOpenSSL,
        ),
        (lambda: ec.generate_private_key(ec.SECP384R1()), serialization.PrivateFormat.TraditionalOpenSSL),
    ],
    ids=["rsa-pkcs8", "rsa-pkcs1", "ec-sec1"],
)
def test_import_pem_certificate_and_key(kv: Harness, ca: TestCA, key_factory: Any, key_format: Any) -> None:
    """PEM import (PKCS#8, PKCS#1 or EC key, leaf and chain) answers 200 with a bundle and policy derived from it."""
    key = key_factory()
    leaf = make_leaf(key, ca)
    key_pem = key.private_bytes(serialization.Encoding.PEM, key_format, serialization.NoEncryption())
    text = (pem_text(leaf) + key_pem + pem_text(ca.certificate)).decode()
    answer = kv.call(
        "POST",
        "/certificates/imp/import",
        {"value": text, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}},
    )
    body = body_of(answer)
    assert answer.status == 200, body
    assert body["cer"] == b64(der(leaf))
    assert "pending" not in body
    assert body["policy"]["x509_props"]["subject"] == "CN=imported.example"
    assert body["policy"]["issuer"]["name"] == "Unknown"
    assert body["policy"]["lifetime_actions"][0]["action"]["action_type"] == "EmailContacts"
    assert body["policy"]["key_props"]["kty"] == ("RSA" if isinstance(key, rsa.RSAPrivateKey) else "EC")
    secret = body_of(kv.call("GET", "/secrets/imp/"))
    assert secret["contentType"] == "application/x-pem-file"
    assert secret["value"].count("BEGIN CERTIFICATE") == 2
    assert kv.events[-1].event_type == CERTIFICATE_NEW_VERSION_CREATED


@pytest.mark.parametrize("password", [None, "s3cret"])
def test_import_pkcs12_with_and_without_password(kv: Harness, ca: TestCA, password: str | None) -> None:
    """A base64 PFX imports with its password (or none); the wrong password answers 400 BadParameter."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = make_leaf(key, ca)
    encryption = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    pfx = pkcs12.serialize_key_and_certificates(b"x", key, leaf, [ca.certificate], encryption)
    body: dict[str, Any] = {"value": b64(pfx)}
    if password:
        status, code, message = error_of(kv.call("POST", "/certificates/imp/import", {**body, "pwd": "wrong"}))
        assert (status, code) == (400, "BadParameter")
        assert "password" in message
        body["pwd"] = password
    answer = kv.call("POST", "/certificates/imp/import", body)
    assert answer.status == 200, answer.body
    assert body_of(answer)["policy"]["secret_props"] == {"contentType": "application/x-pkcs12"}
    assert kv.vault.private_key_of("imp").private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    "value", ["", "not base64 at all!", b64(b"garbage"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]
)
def test_import_garbage_is_bad_parameter(kv: Harness, value: str) -> None:
    """Import of empty, non-base64, non-PFX or key-less content answers 400 BadParameter."""
    status, code, _ = error_of(kv.call("POST", "/certificates/imp/import", {"value": value}))
    assert (status, code) == (400, "BadParameter")


def test_import_with_key_of_another_certificate_is_rejected(kv: Harness, ca: TestCA) -> None:
    """A PEM whose key matches none of its certificates answers 400 BadParameter."""
    leaf = make_leaf(rsa.generate_private_key(public_exponent=65537, key_size=2048), ca)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert error_of(kv.call("POST", "/certificates/imp/import", {"value": (pem_text(leaf) + other).decode()}))[:2] == (
        400,
        "BadParameter",
    )


# ------------------------------------------------------------------------------------------------ secret view


def test_secret_view_is_a_passwordless_pkcs12_with_key_leaf_and_chain(kv: Harness, ca: TestCA) -> None:
    """GET /secrets/{name}/{version} answers a base64 PKCS#12 of key, leaf and chain, managed, with kid."""
    kv.create("app")
    merged = merge(kv, ca, "app")
    version = merged["id"].rsplit("/", 1)[1]
    answer = kv.call("GET", f"/secrets/app/{version}")
    secret = body_of(answer)
    assert answer.status == 200
    assert set(secret) == {"value", "contentType", "id", "attributes", "kid", "managed"}
    assert secret["id"] == f"{BASE_URL}/secrets/app/{version}"
    assert secret["kid"] == merged["kid"]
    assert secret["managed"] is True
    assert secret["contentType"] == "application/x-pkcs12"
    loaded = pkcs12.load_pkcs12(base64.b64decode(secret["value"]), None)
    assert loaded.cert is not None
    assert der(loaded.cert.certificate) == base64.b64decode(merged["cer"])
    assert [der(c.certificate) for c in loaded.additional_certs] == [ca.der]
    assert loaded.key is not None
    assert loaded.key.private_numbers() == kv.vault.private_key_of("app").private_numbers()  # type: ignore[union-attr]
    assert body_of(kv.call("GET", "/secrets/app"))["id"] == secret["id"]


def test_secret_view_pem_and_missing_versions(kv: Harness, ca: TestCA) -> None:
    """PEM content type gives key then certificates; a pending-only certificate has no secret (404)."""
    policy = {
        "secret_props": {"contentType": "application/x-pem-file"},
        "x509_props": {"subject": "CN=p"},
        "issuer": {"name": "Unknown"},
    }
    kv.create("pem", policy)
    assert error_of(kv.call("GET", "/secrets/pem/"))[:2] == (404, "SecretNotFound")
    merge(kv, ca, "pem")
    value = body_of(kv.call("GET", "/secrets/pem/"))["value"]
    assert value.startswith("-----BEGIN PRIVATE KEY-----")
    assert value.index("BEGIN CERTIFICATE") > value.index("END PRIVATE KEY")


def test_disabled_version_secret_is_forbidden(kv: Harness) -> None:
    """The secret of a disabled version answers 403 Forbidden."""
    kv.create("app", {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}}, attributes={"enabled": False})
    assert error_of(kv.call("GET", "/secrets/app/")) == (
        403,
        "Forbidden",
        "Operation get is not allowed on a disabled secret.",
    )


# ------------------------------------------------------------------------------------------------ events


def test_expiry_events_are_emitted_once_per_version_as_the_clock_moves(kv: Harness, ca: TestCA) -> None:
    """NearExpiry fires once within 30 days of exp, Expired once after exp; a new version starts over."""
    kv.create("app")
    merge(kv, ca, "app", lifetime=40 * DAY)
    kv.events.clear()
    assert kv.vault.emit_due_expiry_events() == 0
    kv.clock.advance(10 * DAY + 1)
    assert kv.vault.emit_due_expiry_events() == 1
    assert kv.vault.emit_due_expiry_events() == 0
    assert [e.event_type for e in kv.events] == [CERTIFICATE_NEAR_EXPIRY]
    kv.clock.advance(31 * DAY)
    assert kv.vault.emit_due_expiry_events() == 1
    assert kv.vault.emit_due_expiry_events() == 0
    assert [e.event_type for e in kv.events] == [CERTIFICATE_NEAR_EXPIRY, CERTIFICATE_EXPIRED]
    kv.create("app")
    fresh = merge(kv, ca, "app", lifetime=20 * DAY)
    assert kv.vault.emit_due_expiry_events() == 1
    assert kv.events[-1].event_type == CERTIFICATE_NEAR_EXPIRY
    assert kv.events[-1].version == fresh["id"].rsplit("/", 1)[1]


def test_event_for_builds_an_event_for_the_current_version(kv: Harness, ca: TestCA) -> None:
    """event_for describes the current completed version; it raises KeyError without one."""
    kv.create("app")
    with pytest.raises(KeyError):
        kv.vault.event_for("app", CERTIFICATE_NEAR_EXPIRY)
    merged = merge(kv, ca, "app")
    event = kv.vault.event_for("app", CERTIFICATE_NEAR_EXPIRY)
    assert (event.certificate_name, event.version, event.exp) == (
        "app",
        merged["id"].rsplit("/", 1)[1],
        merged["attributes"]["exp"],
    )
    with pytest.raises(KeyError):
        kv.vault.event_for("nope", CERTIFICATE_EXPIRED)


# ------------------------------------------------------------------------------------------------ snapshot


def test_snapshot_restore_round_trip_keeps_state_and_pending_key(kv: Harness, ca: TestCA) -> None:
    """A JSON round-trip of the snapshot restores versions, pending op, deleted certs and emitted-event memory."""
    kv.create("done")
    merge(kv, ca, "done", lifetime=10 * DAY)
    kv.vault.emit_due_expiry_events()
    kv.create("waiting", tags={"t": "1"})
    kv.create("gone", {"x509_props": {"subject": "CN=g"}, "issuer": {"name": "Self"}})
    kv.call("DELETE", "/certificates/gone")
    snapshot = json.loads(json.dumps(kv.vault.snapshot()))
    events: list[Any] = []
    restored = Vault.restore(snapshot, clock=kv.clock, emit=events.append)
    for path in (
        "/certificates/done/",
        "/certificates/waiting/",
        "/certificates/waiting/pending",
        "/deletedcertificates/gone",
    ):
        assert restored.handle(ApiRequest("GET", path)).body == kv.call("GET", path).body
    assert restored.emit_due_expiry_events() == 0
    csr = x509.load_der_x509_csr(base64.b64decode(body_of(kv.call("GET", "/certificates/waiting/pending"))["csr"]))
    leaf = ca.sign(csr, not_before=START, not_after=START + DAY)
    answer = restored.handle(
        ApiRequest(
            "POST",
            "/certificates/waiting/pending/merge",
            {},
            {"content-type": "application/json"},
            json.dumps({"x5c": [b64(der(leaf))]}).encode(),
        )
    )
    assert answer.status == 201
    assert len(events) == 1
    with pytest.raises(ValueError, match="snapshot"):
        Vault.restore({"format": 99}, clock=kv.clock, emit=events.append)


# ------------------------------------------------------------------------------------------------ bad input, routing


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [(b"{not json", "application/json"), (b"[1, 2]", "application/json"), (b"\xff\xfe", "application/json"),
     (b'{"policy": {}}', "text/plain"), (b'{"policy": {}}', "")],
)  # fmt: skip
def test_malformed_bodies_are_bad_parameter(kv: Harness, raw: bytes, content_type: str) -> None:
    """Bodies that are not a JSON object, or not sent as application/json, answer 400 BadParameter."""
    answer = kv.call("POST", "/certificates/app/create", raw=raw, content_type=content_type)
    assert error_of(answer)[:2] == (400, "BadParameter")
    assert "Retry-After" not in answer.headers


def test_json_content_type_with_charset_is_accepted(kv: Harness) -> None:
    """application/json with a charset parameter is JSON."""
    raw = json.dumps({"policy": {"x509_props": {"subject": "CN=a"}, "issuer": {"name": "Unknown"}}}).encode()
    assert (
        kv.call("POST", "/certificates/app/create", raw=raw, content_type="application/json; charset=utf-8").status
        == 202
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/certificates/app/create", {"policy": [], "tags": "x"}),
        ("POST", "/certificates/app/create", {"policy": {"x509_props": {"subject": "CN=a"}}, "tags": {"a": 1}}),
        (
            "POST",
            "/certificates/app/create",
            {"policy": {"x509_props": {"subject": "CN=a"}}, "attributes": {"enabled": "yes"}},
        ),
        (
            "POST",
            "/certificates/app/create",
            {"policy": {"key_props": {"key_size": "big"}, "x509_props": {"subject": "CN=a"}}},
        ),
        ("POST", "/certificates/app/import", {"value": 5}),
        ("POST", "/certificates/app/import", {"value": "x", "pwd": 5}),
        ("PATCH", "/certificates/app/pending", {"cancellation_requested": "yes"}),
        ("POST", "/certificates/restore", {"value": "AAAA"}),
        ("PUT", "/certificates/issuers/x", {"provider": 1}),
        ("PUT", "/certificates/contacts", {"contacts": "x"}),
    ],
)
def test_wrong_shapes_never_raise_and_are_client_errors(kv: Harness, method: str, path: str, body: Any) -> None:
    """Wrong JSON shapes answer a 4xx KeyVault error, never an exception or a 500."""
    kv.create("app", {"x509_props": {"subject": "CN=a"}, "issuer": {"name": "Self"}}) if "pending" in path else None
    answer = kv.call(method, path, body)
    assert 400 <= answer.status < 500
    assert set(body_of(answer)["error"]) == {"code", "message"}


def test_invalid_name_is_the_recorded_bad_parameter(kv: Harness) -> None:
    """A name outside ^[0-9a-zA-Z-]+$ answers 400 with the recorded text, on create and on reads."""
    expected = (400, "BadParameter", "The request URI contains an invalid name: create_invalid_certificate")
    assert error_of(kv.create("create_invalid_certificate")) == expected
    assert error_of(kv.call("GET", "/certificates/create_invalid_certificate/")) == expected


def test_unknown_paths_and_methods(kv: Harness) -> None:
    """An unrouted path is 404 NotFound, a wrong method on a known path is 405, both in the KeyVault error shape."""
    assert error_of(kv.call("GET", "/keys/x"))[:2] == (404, "NotFound")
    assert error_of(kv.call("GET", "/"))[:2] == (404, "NotFound")
    assert error_of(kv.call("GET", "/certificates/a/b/c/d"))[:2] == (404, "NotFound")
    assert error_of(kv.call("PUT", "/certificates/app/create", {}))[:2] == (405, "MethodNotAllowed")


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/certificates/a/create", "create"),
        ("GET", "/certificates/a/", "get"),
        ("GET", "/certificates/a", "get"),
        ("GET", "/certificates/a/0123456789abcdef0123456789abcdef", "get_version"),
        ("PATCH", "/certificates/a/", "update"),
        ("PATCH", "/certificates/a/0123", "update"),
        ("GET", "/certificates", "list"),
        ("GET", "/certificates/a/versions", "list_versions"),
        ("GET", "/certificates/a/policy", "get_policy"),
        ("PATCH", "/certificates/a/policy", "update_policy"),
        ("GET", "/certificates/a/pending", "get_operation"),
        ("PATCH", "/certificates/a/pending", "update_operation"),
        ("DELETE", "/certificates/a/pending", "delete_operation"),
        ("POST", "/certificates/a/pending/merge", "merge"),
        ("POST", "/certificates/a/import", "import"),
        ("DELETE", "/certificates/a", "delete"),
        ("GET", "/deletedcertificates", "list_deleted"),
        ("GET", "/deletedcertificates/a", "get_deleted"),
        ("POST", "/deletedcertificates/a/recover", "recover"),
        ("DELETE", "/deletedcertificates/a", "purge"),
        ("GET", "/secrets/a/0123", "get_secret"),
        ("GET", "/secrets/a/", "get_secret"),
        ("POST", "/certificates/a/backup", "backup"),
        ("POST", "/certificates/restore", "restore"),
        ("GET", "/certificates/issuers", "issuers"),
        ("PUT", "/certificates/issuers/i1", "issuers"),
        ("GET", "/certificates/contacts", "contacts"),
        ("GET", "/keys/a", "unknown"),
        ("PUT", "/certificates/a/create", "unknown"),
    ],
)
def test_operation_names(method: str, path: str, operation: str) -> None:
    """operation_of names every route with the agreed stable names."""
    vault = Vault(name="kv", base_url=BASE_URL, clock=FakeClock(), emit=lambda _event: None)
    assert vault.operation_of(ApiRequest(method, path)) == operation
    assert operation in OPERATIONS


def test_errors_never_carry_retry_after(kv: Harness) -> None:
    """Error answers carry no Retry-After (azure-core would retry them)."""
    kv.create("app")
    for answer in (kv.create("app"), kv.call("GET", "/certificates/nope/"), kv.call("GET", "/nope")):
        assert answer.status >= 400
        assert "Retry-After" not in answer.headers


# ---------------------------------------------------------------------------------------- backup, issuers, contacts


def test_backup_and_restore_round_trip(kv: Harness) -> None:
    """A backup blob restores the certificate after purge; restoring over an existing name is 409."""
    kv.create("app", {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}})
    before = body_of(kv.call("GET", "/certificates/app/"))
    blob = body_of(kv.call("POST", "/certificates/app/backup"))["value"]
    sealed = base64.urlsafe_b64decode(blob + "==").decode("latin-1")
    assert "PRIVATE" not in sealed
    assert kv.call("POST", "/certificates/restore", {"value": blob}).status == 409
    kv.call("DELETE", "/certificates/app")
    kv.call("DELETE", "/deletedcertificates/app")
    restored = kv.call("POST", "/certificates/restore", {"value": blob})
    assert restored.status == 200
    assert body_of(restored)["cer"] == before["cer"]


def test_issuers_and_contacts_crud(kv: Harness) -> None:
    """Issuers and contacts can be set, read, listed and deleted; the issuer password is never returned."""
    issuer = {"provider": "Test", "credentials": {"account_id": "keyvaultuser", "pwd": "p"}, "org_details": {"zip": 0}}
    body = body_of(kv.call("PUT", "/certificates/issuers/issuer01", issuer))
    assert body["credentials"] == {"account_id": "keyvaultuser"}
    assert body["attributes"]["enabled"] is True
    assert body_of(kv.call("GET", "/certificates/issuers/issuer01")) == body
    assert body_of(kv.call("GET", "/certificates/issuers"))["value"] == [{"id": body["id"], "provider": "Test"}]
    assert body_of(kv.call("PATCH", "/certificates/issuers/issuer01", {"provider": "Other"}))["provider"] == "Other"
    assert kv.call("DELETE", "/certificates/issuers/issuer01").status == 200
    assert kv.call("GET", "/certificates/issuers/issuer01").status == 404
    assert kv.call("GET", "/certificates/contacts").status == 404
    contacts = {"contacts": [{"email": "ops@example.com", "name": "Ops"}]}
    assert body_of(kv.call("PUT", "/certificates/contacts", contacts))["contacts"] == contacts["contacts"]
    assert kv.call("DELETE", "/certificates/contacts").status == 200
    assert kv.call("GET", "/certificates/contacts").status == 404


def test_named_issuer_op_stays_in_progress_and_refuses_merge(kv: Harness, ca: TestCA) -> None:
    """A create with a configured issuer stays inProgress with the issuer text; merge is 403 as documented."""
    kv.call("PUT", "/certificates/issuers/issuer01", {"provider": "Test"})
    op = body_of(kv.create("app", {"x509_props": {"subject": "CN=a"}, "issuer": {"name": "issuer01"}}))
    assert op["status"] == "inProgress"
    assert op["status_details"].startswith("Pending certificate created. Certificate request")
    status, code, message = error_of(kv.call("POST", "/certificates/app/pending/merge", {"x5c": [b64(ca.der)]}))
    assert (status, code) == (403, "Forbidden")
    assert "issuer : issuer01" in message


def test_names_are_case_insensitive_and_keep_their_spelling(kv: Harness) -> None:
    """A certificate is found whatever the case of its name, and ids keep the spelling it was created with."""
    kv.create("MyApp", {"x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}})
    body = body_of(kv.call("GET", "/certificates/myapp/"))
    assert body["id"].startswith(f"{BASE_URL}/certificates/MyApp/")


def test_reuse_key_is_ignored_when_the_key_type_changes(kv: Harness, ca: TestCA) -> None:
    """A renewal whose policy switched RSA to EC gets a fresh EC key even with reuse_key true."""
    kv.create("app")
    merge(kv, ca, "app")
    ec_policy = {
        "key_props": {"kty": "EC", "reuse_key": True},
        "x509_props": {"subject": "CN=a"},
        "issuer": {"name": "Unknown"},
    }
    assert kv.create("app", ec_policy).status == 202
    assert isinstance(kv.csr("app").public_key(), ec.EllipticCurvePublicKey)


def test_concurrent_requests_are_serialised_safely() -> None:
    """Requests from many threads at once all succeed and every version is kept."""
    kv = Harness()
    policy = {"key_props": {"kty": "EC"}, "x509_props": {"subject": "CN=x"}, "issuer": {"name": "Self"}}
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda i: kv.create(f"c{i % 4}", policy).status, range(32)))
    assert statuses == [202] * 32
    assert sum(len(body_of(kv.call("GET", f"/certificates/c{i}/versions"))["value"]) for i in range(4)) == 32
    assert len(kv.events) == 32


def test_policy_patch_can_switch_key_type(kv: Harness) -> None:
    """PATCH policy from EC to RSA drops the old curve and size, taking the RSA default size."""
    kv.create(
        "app",
        {"key_props": {"kty": "EC", "crv": "P-384"}, "x509_props": {"subject": "CN=a"}, "issuer": {"name": "Unknown"}},
    )
    answer = kv.call("PATCH", "/certificates/app/policy", {"key_props": {"kty": "RSA"}})
    assert answer.status == 200, answer.body
    assert body_of(answer)["key_props"] == {"exportable": True, "kty": "RSA", "key_size": 2048, "reuse_key": False}
