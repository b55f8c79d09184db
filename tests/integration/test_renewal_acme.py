"""One renewal end to end through function_app, ordered from a real Pebble with dns-01 through challtestsrv."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.ca.servers import ChallTestServer, PebbleServer, challtestsrv, pebble_server, txt_records
from tests.integration.conftest import Stack

EAB_KID = "renewal-e2e"
EAB_HMAC = secrets.token_urlsafe(32)
# Pebble's own default is five years; the seeded policy asks for 12 months.
PEBBLE_VALIDITY_SECONDS = 90 * 24 * 3600


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestServer]:
    with challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as server:
        yield server


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, dns_server: ChallTestServer) -> Iterator[PebbleServer]:
    directory: Path = tmp_path_factory.mktemp("pebble")
    with pebble_server(
        directory,
        dns_server,
        eab_required=True,
        eab_keys={EAB_KID: EAB_HMAC},
        validity_seconds=PEBBLE_VALIDITY_SECONDS,
    ) as server:
        yield server


@pytest.fixture
def acme_stack(stack: Stack, pebble: PebbleServer, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack with its ``corp`` profile ordering from Pebble, with an account key and EAB from app settings.

    The seeded certificates come from the local CA, so moving them to Pebble is a planned CA rollover: the profile
    names Pebble's root as its trust anchor.
    """
    anchor = stack.tmp / "pebble-root.pem"
    anchor.write_text(pebble.root_pem())
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    monkeypatch.setenv("ACME_ACCOUNT_KEY", pem.decode())
    monkeypatch.setenv("ACME_EAB_HMAC", EAB_HMAC)
    profile = {
        "adapter": "acme",
        "directory_url": pebble.directory_url,
        "ca_bundle_path": str(pebble.tls_ca_path),
        "account_key_setting": "ACME_ACCOUNT_KEY",
        "contact_email": "pki@corp.example",
        "eab_kid": EAB_KID,
        "eab_hmac_key_setting": "ACME_EAB_HMAC",
        "dns_provider": "challtestsrv",
        "dns_options": {"management_url": pebble.challtestsrv.management_url},
        "poll_timeout_seconds": 15,
        "timeout_seconds": 5,
        "trust_anchor_path": str(anchor),
    }
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": profile}))
    return stack


def _dns_names(certificate: x509.Certificate) -> set[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(extension.value.get_values_for_type(x509.DNSName))


def test_near_expiry_event_renews_through_pebble(acme_stack: Stack, pebble: PebbleServer) -> None:
    """A NearExpiry event yields a new version issued by Pebble for the same SANs, and a delivered webhook."""
    before = acme_stack.seed("web")

    acme_stack.deliver(acme_stack.near_expiry_event("web"))

    assert acme_stack.recorder.last["status"] == "renewed", acme_stack.recorder.last
    current = acme_stack.client.get_certificate("web")
    after = x509.load_der_x509_certificate(bytes(current.cer))
    assert "Pebble" in after.issuer.rfc4514_string()
    assert after.issuer != before.issuer
    assert _dns_names(after) == {"web.corp.internal", "www.web.corp.internal"}
    for name in _dns_names(after):
        assert txt_records(pebble.challtestsrv.dns_address, f"_acme-challenge.{name}") == []
    [delivery] = acme_stack.sink.deliveries
    assert delivery.verified
    assert json.loads(delivery.body)["data"]["new_version"] == current.properties.version


def test_rollover_to_pebble_without_a_trust_anchor_is_refused(
    acme_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without trust_anchor_path, Pebble's answer for a local-CA certificate fails untrusted_issuer: nothing merged."""
    profile = json.loads(acme_stack.env_value("RENEWAL_CA_PROFILES"))["corp"]
    del profile["trust_anchor_path"]
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": profile}))
    acme_stack.seed("web")
    acme_stack.emulator.request_log.clear()

    acme_stack.deliver(acme_stack.near_expiry_event("web"))

    outcome = acme_stack.recorder.last
    assert (outcome["status"], outcome["reason"]) == ("failed", "untrusted_issuer"), outcome
    assert acme_stack.emulator.request_log.count(operation="merge") == 0
    assert len(acme_stack.versions("web")) == 1
    assert acme_stack.sink.deliveries == ()
    assert acme_stack.client.get_certificate_operation("web").status == "inProgress"


def test_renewal_logs_carry_no_pem_account_key_or_eab_key(acme_stack: Stack) -> None:
    """No log record of an ACME renewal, at any level, holds a PEM body, the account key or the EAB HMAC key."""
    acme_stack.seed("web")
    acme_stack.deliver(acme_stack.near_expiry_event("web"))
    assert acme_stack.recorder.last["status"] == "renewed"
    for record in acme_stack.recorder.records:
        text = record.getMessage() + repr(getattr(record, "renewal_outcome", ""))
        assert "-----BEGIN" not in text, f"{record.name} logged a PEM body"
        assert EAB_HMAC not in text, f"{record.name} logged the EAB key"
