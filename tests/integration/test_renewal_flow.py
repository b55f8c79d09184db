"""One renewal end to end, entering through function_app's Event Grid function, over loopback."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from standardwebhooks.webhooks import Webhook

import renewal
from renewal.errors import RetryableError
from tests.fakes.ca import GARBAGE, WRONG_KEY
from tests.integration.conftest import TOKEN, VAULT, WEBHOOK_SECRET, Stack


def _dns_names(certificate: x509.Certificate) -> set[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(extension.value.get_values_for_type(x509.DNSName))


def test_near_expiry_event_renews_with_three_keyvault_requests(stack: Stack) -> None:
    """A CertificateNearExpiry event yields a new version signed by the CA, in 3 authenticated requests."""
    before = stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.emulator.request_log.clear()

    stack.deliver(event)

    assert stack.recorder.last["status"] == "renewed"
    assert stack.authenticated_requests() == 3
    operations = [e.operation for e in stack.emulator.request_log if e.authenticated]
    assert operations == ["get", "create", "merge"]
    current = stack.client.get_certificate("web")
    after = x509.load_der_x509_certificate(bytes(current.cer))
    assert _dns_names(after) == _dns_names(before)
    assert after.serial_number != before.serial_number
    assert after.not_valid_after_utc > before.not_valid_after_utc
    assert stack.recorder.last["new_version"] == current.properties.version
    assert stack.recorder.last["previous_version"] == event["data"]["Version"]
    assert current.properties.tags["renewal-ca"] == "corp"
    assert current.properties.tags["renewal-by"] == (
        f"keyvault-private-ca-renewal;profile=corp;previous={event['data']['Version']}"
    )
    assert not {"renewal-previous-version", "renewal-ca-profile"} & set(current.properties.tags)


def test_renewed_version_keeps_its_key_inside_key_vault(stack: Stack) -> None:
    """The new leaf's key is the one Key Vault generated for the CSR; the app never sees a private key."""
    stack.seed("web")
    stack.deliver(stack.near_expiry_event("web"))
    current = stack.client.get_certificate("web")
    after = x509.load_der_x509_certificate(bytes(current.cer))
    vault_key = stack.emulator.vault(VAULT).private_key_of("web", current.properties.version)  # type: ignore[attr-defined]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert after.public_key().public_bytes(serialization.Encoding.DER, spki) == vault_key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )


def test_webhook_is_signed_and_describes_the_new_version(stack: Stack) -> None:
    """The sink receives one CloudEvent for the new version, with a Standard Webhooks signature that verifies."""
    stack.seed("web")
    stack.deliver(stack.near_expiry_event("web"))
    [delivery] = stack.sink.deliveries
    assert delivery.verified
    Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    event = json.loads(delivery.body)
    version = stack.client.get_certificate("web").properties.version
    assert event["specversion"] == "1.0"
    assert event["subject"] == "web"
    assert event["data"]["new_version"] == version
    assert event["data"]["secret_id"].endswith(f"/secrets/web/{version}")
    assert stack.recorder.last["deliveries"][0]["delivered"] is True


def test_duplicate_event_yields_one_new_version(stack: Stack) -> None:
    """Event Grid delivers at least once: the same event twice makes exactly one new version."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.deliver(event)
    stack.deliver(event)
    assert [o["status"] for o in stack.recorder.outcomes if o.get("certificate_name") == "web"] == [
        "renewed",
        "skipped",
    ]
    assert stack.recorder.last["reason"] == "already_renewed"
    assert len(stack.versions("web")) == 2
    assert len(stack.sink.deliveries) == 1


def test_event_for_an_old_version_is_skipped(stack: Stack) -> None:
    """A late event about a version that has since been replaced is skipped without creating anything."""
    stack.seed("web")
    old_event = stack.near_expiry_event("web")
    stack.deliver(stack.near_expiry_event("web"))
    stack.emulator.request_log.clear()
    stack.deliver(old_event)
    assert stack.recorder.last["status"] == "skipped"
    assert stack.recorder.last["reason"] == "already_renewed"
    assert [e.operation for e in stack.emulator.request_log if e.authenticated] == ["get"]


def test_vault_not_on_the_allow_list_gets_no_request_at_all(stack: Stack) -> None:
    """An event naming another vault is acknowledged and ignored, with nothing sent anywhere."""
    stack.seed("web")
    event = stack.near_expiry_event("web", vault="attacker")
    event["data"]["Id"] = "https://attacker.example.net/certificates/web/0123456789abcdef0123456789abcdef"
    stack.emulator.request_log.clear()
    stack.deliver(event)
    assert stack.recorder.last["status"] == "skipped"
    assert stack.recorder.last["reason"] == "vault_not_allowed"
    assert len(stack.emulator.request_log) == 0
    assert len(stack.sink.deliveries) == 0


def test_unmanaged_certificate_is_skipped(stack: Stack) -> None:
    """A certificate with no renewal-ca tag and no default profile is left alone."""
    stack.seed("other", tags={})
    stack.deliver(stack.near_expiry_event("other"))
    assert stack.recorder.last["reason"] == "not_managed"
    assert len(stack.versions("other")) == 1


def test_ca_answer_for_another_key_is_not_merged(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA certificate for another key fails verification: nothing merged, the pending operation kept."""
    monkeypatch.setenv(
        "RENEWAL_CA_PROFILES",
        json.dumps({"corp": {"adapter": WRONG_KEY, "ca_directory": str(stack.tmp / "ca")}}),
    )
    stack.seed("web")
    stack.emulator.request_log.clear()
    stack.deliver(stack.near_expiry_event("web"))
    assert stack.recorder.last["status"] == "failed"
    assert stack.recorder.last["reason"] == "key_mismatch"
    assert len(stack.versions("web")) == 1
    assert stack.client.get_certificate_operation("web").status == "inProgress"
    assert stack.emulator.request_log.count(operation="merge") == 0
    assert len(stack.sink.deliveries) == 0


def test_ca_answering_garbage_fails_cleanly(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA that answers something that is not a certificate ends in one failed outcome, nothing merged."""
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": {"adapter": GARBAGE}}))
    stack.seed("web")
    stack.emulator.request_log.clear()
    stack.deliver(stack.near_expiry_event("web"))
    assert stack.recorder.last["status"] == "failed"
    assert stack.recorder.last["reason"] == "unparsable_certificate"
    assert stack.emulator.request_log.count(operation="merge") == 0


@pytest.mark.parametrize(
    ("stack", "expected_operations"),
    [
        # Seeing only the placeholder, the resume reads the replaced version once: its issuer is the trust anchor.
        ("placeholder", ["get", "get_operation", "get_version", "merge"]),
        # The journal says a version is pending (SUBMIT): its CSR is read back, no create is tried for a 409.
        ("previous", ["get", "get_operation", "merge"]),
    ],
    indirect=["stack"],
)
def test_failed_renewal_resumes_its_pending_operation(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, expected_operations: list[str]
) -> None:
    """After a failure left the operation pending, a redelivery resumes it (placeholder seen, or Key Vault's 409
    when "get latest" answers with the previous version): one new version, with the key of the first CSR."""
    good_profiles = json.dumps({"corp": stack.ca.profile_options()})
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": {"adapter": GARBAGE}}))
    stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.deliver(event)
    csr = stack.client.get_certificate_operation("web").csr
    monkeypatch.setenv("RENEWAL_CA_PROFILES", good_profiles)
    stack.emulator.request_log.clear()

    stack.deliver(event)

    assert stack.recorder.last["status"] == "renewed"
    assert "resumed" in stack.recorder.last["message"]
    assert [e.operation for e in stack.emulator.request_log if e.authenticated] == expected_operations
    after = x509.load_der_x509_certificate(bytes(stack.client.get_certificate("web").cer))
    assert after.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == x509.load_der_x509_csr(bytes(csr)).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert len(stack.versions("web")) == 2


def test_webhook_endpoint_down_shows_in_the_outcome(stack: Stack) -> None:
    """A webhook receiver that is down does not undo the renewal; the outcome records the failed delivery."""
    stack.sink.down = True
    stack.seed("web")
    stack.deliver(stack.near_expiry_event("web"))
    outcome = stack.recorder.last
    assert outcome["status"] == "renewed"
    [delivery] = outcome["deliveries"]
    assert delivery["delivered"] is False
    assert delivery["attempts"] == 4
    assert len(stack.versions("web")) == 2


@pytest.mark.parametrize("retry_after", [None, 1])
def test_keyvault_throttling_is_survived(stack: Stack, retry_after: int | None) -> None:
    """Key Vault 429s, with and without Retry-After, are retried and the renewal completes."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.emulator.request_log.clear()
    stack.emulator.faults.script("create", 429, vault=VAULT, retry_after=retry_after)
    stack.emulator.faults.script("merge", 429, vault=VAULT, retry_after=retry_after)
    stack.deliver(event)
    assert stack.recorder.last["status"] == "renewed"
    assert stack.emulator.request_log.statuses(vault=VAULT, operation="create") == [429, 202]
    assert stack.emulator.request_log.statuses(vault=VAULT, operation="merge") == [429, 201]
    assert len(stack.versions("web")) == 2


def test_keyvault_5xx_is_survived(stack: Stack) -> None:
    """A transient 503 and 500 from Key Vault are retried within the invocation."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.emulator.faults.script("get", 503, vault=VAULT)
    stack.emulator.faults.script("merge", 500, vault=VAULT)
    stack.deliver(event)
    assert stack.recorder.last["status"] == "renewed"


def test_keyvault_outage_fails_transiently_and_a_redelivery_completes(stack: Stack) -> None:
    """Key Vault down past the retries: a failed outcome marked transient, raised for redelivery; then it renews."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.emulator.faults.script("get", 503, vault=VAULT, count=10)
    with pytest.raises(RetryableError):
        stack.deliver(event)
    assert stack.recorder.last["status"] == "failed"
    assert stack.recorder.last["reason"] == "keyvault_unavailable"
    stack.emulator.faults.clear()
    stack.deliver(event)
    assert stack.recorder.last["status"] == "renewed"


def test_malformed_event_is_recorded_not_raised(stack: Stack) -> None:
    """An event whose data cannot be read ends in one failed outcome, and the function returns normally."""
    event = {
        "id": "1",
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.KeyVault/vaults/kv1",
        "subject": "web",
        "eventType": "Microsoft.KeyVault.CertificateNearExpiry",
        "eventTime": "2026-11-27T00:00:00Z",
        "dataVersion": "1",
        "data": {"VaultName": "kv1", "ObjectType": "Certificate", "EXP": "not a number"},
    }
    stack.deliver(event)
    assert stack.recorder.last["status"] == "failed"
    assert stack.recorder.last["reason"] == "malformed_event"
    assert len(stack.emulator.request_log) == 0


def test_cloudevents_form_renews_too(stack: Stack) -> None:
    """The same event in the CloudEvents 1.0 form renews the certificate."""
    stack.seed("web")
    envelope = stack.near_expiry_event("web")
    cloud_event = {
        "specversion": "1.0",
        "id": envelope["id"],
        "source": envelope["topic"],
        "subject": envelope["subject"],
        "type": envelope["eventType"],
        "time": envelope["eventTime"],
        "data": envelope["data"],
    }
    outcome = renewal.handle_event(cloud_event)
    assert outcome.status == "renewed"


def test_no_secret_reaches_any_log_record(stack: Stack) -> None:
    """No PEM, CSR, certificate body, token or webhook secret appears in any log record at any level."""
    stack.seed("web")
    stack.deliver(stack.near_expiry_event("web"))
    current = stack.client.get_certificate("web")
    forbidden = [
        "-----BEGIN",
        "PRIVATE KEY",
        TOKEN,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        base64.b64encode(bytes(current.cer)).decode()[:48],
        base64.b64encode(bytes(stack.client.get_certificate_version("web", current.properties.version).cer)).decode()[
            100:148
        ],
    ]
    assert stack.recorder.outcomes, "the test saw no renewal log line"
    for record in stack.recorder.records:
        text = record.getMessage() + repr(getattr(record, "renewal_outcome", ""))
        for secret in forbidden:
            assert secret not in text, f"{record.name} logged something secret"


def test_certificate_key_vault_renews_itself_is_skipped(stack: Stack) -> None:
    """A Self-issued certificate is Key Vault's to renew: skipped, nothing created, even when tagged."""
    from azure.keyvault.certificates import CertificatePolicy

    stack.client.begin_create_certificate(
        "selfie", CertificatePolicy.get_default(), tags={"renewal-ca": "corp"}
    ).result()
    stack.emulator.request_log.clear()
    stack.deliver(stack.near_expiry_event("selfie"))
    assert stack.recorder.last["status"] == "skipped"
    assert stack.recorder.last["reason"] == "issuer_renews_itself"
    assert [e.operation for e in stack.emulator.request_log if e.authenticated] == ["get"]


def test_each_renewal_writes_exactly_one_log_line(stack: Stack) -> None:
    """The app logs one INFO-or-above line per renewal (its outcome); steps stay at DEBUG."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.recorder.records.clear()
    stack.deliver(event)
    app_lines = [r for r in stack.recorder.records if r.name.startswith("renewal") and r.levelno >= logging.INFO]
    assert len(app_lines) == 1
    assert app_lines[0].getMessage().startswith("renewal outcome=renewed reason=renewed vault=kv1 certificate=web")
    steps = [r.getMessage().split()[0] for r in stack.recorder.records if r.name == "renewal" and r.levelno == 10]
    assert steps == [
        "step=read",
        "step=decide",
        "step=begin",
        "step=submit",
        "step=verify",
        "step=merge",
    ]


def test_bad_configuration_is_one_failed_outcome_naming_the_setting(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed setting fails the invocation's renewal with a message naming it, and touches nothing."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    monkeypatch.setenv("RENEWAL_WEBHOOKS", "{not json")
    stack.emulator.request_log.clear()
    stack.deliver(event)
    assert stack.recorder.last["status"] == "failed"
    assert stack.recorder.last["reason"] == "bad_configuration"
    assert "RENEWAL_WEBHOOKS" in stack.recorder.last["message"]
    assert len(stack.emulator.request_log) == 0


def test_ca_that_needs_approval_leaves_the_renewal_pending(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA that defers issuance gives a pending outcome with its reference; nothing is merged yet."""
    options = {**stack.ca.profile_options(), "approval": "manual", "approval_dir": str(stack.tmp / "approvals")}
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": options}))
    stack.seed("web")
    stack.deliver(stack.near_expiry_event("web"))
    assert stack.recorder.last["status"] == "pending"
    assert stack.recorder.last["reason"] == "ca_pending"
    [held] = list((stack.tmp / "approvals").glob("*.csr.pem"))
    assert held.name.removesuffix(".csr.pem") in stack.recorder.last["message"]
    assert len(stack.versions("web")) == 1
    assert stack.client.get_certificate_operation("web").status == "inProgress"
