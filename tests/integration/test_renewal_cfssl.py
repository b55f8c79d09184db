"""One renewal end to end through function_app, signed by a real ``cfssl serve`` on loopback."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.ca.servers import CfsslServer, cfssl_server
from tests.integration.conftest import Stack


@pytest.fixture(scope="module")
def cfssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfsslServer]:
    with cfssl_server(tmp_path_factory.mktemp("cfssl"), auth_key_hex=secrets.token_hex(16)) as server:
        yield server


@pytest.fixture
def cfssl_stack(stack: Stack, cfssl: CfsslServer, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack with its ``corp`` profile pointing at cfssl's authenticated profile.

    The seeded certificates come from the local CA, so moving them to cfssl's CA is a planned CA rollover: the
    profile names cfssl's root as its trust anchor.
    """
    monkeypatch.setenv("CFSSL_AUTH_KEY", cfssl.auth_key_hex)
    profile = {
        "adapter": "cfssl",
        "url": cfssl.url,
        "profile": "authed",
        "auth_key_setting": "CFSSL_AUTH_KEY",
        "trust_anchor_path": str(cfssl.ca.root_path),
    }
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": profile}))
    return stack


def _dns_names(certificate: x509.Certificate) -> set[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(extension.value.get_values_for_type(x509.DNSName))


def test_near_expiry_event_renews_through_cfssl(cfssl_stack: Stack, cfssl: CfsslServer) -> None:
    """A NearExpiry event yields a new version issued by cfssl's CA, covering the SANs, and a delivered webhook."""
    before = cfssl_stack.seed("web")

    cfssl_stack.deliver(cfssl_stack.near_expiry_event("web"))

    assert cfssl_stack.recorder.last["status"] == "renewed", cfssl_stack.recorder.last
    current = cfssl_stack.client.get_certificate("web")
    after = x509.load_der_x509_certificate(bytes(current.cer))
    issuing = x509.load_pem_x509_certificate(cfssl.ca.issuing_cert_path.read_bytes())
    assert after.issuer == issuing.subject
    assert after.serial_number != before.serial_number
    assert _dns_names(after) == {"web.corp.internal", "www.web.corp.internal"}
    [delivery] = cfssl_stack.sink.deliveries
    assert delivery.verified
    assert json.loads(delivery.body)["data"]["new_version"] == current.properties.version


def test_rollover_to_cfssl_without_a_trust_anchor_is_refused(
    cfssl_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without trust_anchor_path, cfssl's answer for a local-CA certificate fails untrusted_issuer: nothing merged."""
    profile = json.loads(cfssl_stack.env_value("RENEWAL_CA_PROFILES"))["corp"]
    del profile["trust_anchor_path"]
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": profile}))
    cfssl_stack.seed("web")
    cfssl_stack.emulator.request_log.clear()

    cfssl_stack.deliver(cfssl_stack.near_expiry_event("web"))

    outcome = cfssl_stack.recorder.last
    assert (outcome["status"], outcome["reason"]) == ("failed", "untrusted_issuer"), outcome
    assert cfssl_stack.emulator.request_log.count(operation="merge") == 0
    assert len(cfssl_stack.versions("web")) == 1
    assert cfssl_stack.sink.deliveries == ()
    assert cfssl_stack.client.get_certificate_operation("web").status == "inProgress"


def test_renewal_logs_carry_no_auth_key_or_pem(cfssl_stack: Stack, cfssl: CfsslServer) -> None:
    """No log record of a CFSSL renewal holds the HMAC key or any PEM body."""
    cfssl_stack.seed("web")
    cfssl_stack.deliver(cfssl_stack.near_expiry_event("web"))
    assert cfssl_stack.recorder.last["status"] == "renewed"
    for record in cfssl_stack.recorder.records:
        text = record.getMessage() + repr(getattr(record, "renewal_outcome", ""))
        assert cfssl.auth_key_hex not in text, f"{record.name} logged the auth key"
        assert "-----BEGIN" not in text, f"{record.name} logged a PEM body"
