"""Intake: Key Vault events in every shape they come in, parsed once into a typed request."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from renewal.errors import PermanentError
from renewal.pure.intake import Ignored, RenewalRequest, parse_event
from renewal.settings import VaultConfig

EVENTS = Path(__file__).parent / "events"
VAULTS = {
    "sample-kv": VaultConfig(name="Sample-KV", url="https://sample-kv.vault.azure.net"),
    "kv1": VaultConfig(name="kv1", url="https://127.0.0.1:8443"),
}
NBF = datetime(2019, 5, 28, 22, 19, 40, tzinfo=UTC)
EXP = datetime(2021, 5, 24, 21, 8, 48, tzinfo=UTC)
VERSION = "ee059b2bb5bc48398a53b168c6cdcb10"


def eventgrid_sample() -> dict[str, object]:
    # Event Grid delivers an array; the trigger hands over one event of it.
    events = json.loads((EVENTS / "near-expiry.eventgrid.json").read_text())
    return dict(events[0])


def cloudevent_sample() -> dict[str, object]:
    return dict(json.loads((EVENTS / "near-expiry.cloudevent.json").read_text()))


def from_vault(name: str) -> dict[str, object]:
    envelope = eventgrid_sample() | {"topic": f"/subscriptions/x/providers/Microsoft.KeyVault/vaults/{name}"}
    return with_data(envelope, VaultName=name)


def with_data(envelope: dict[str, object], **changes: object) -> dict[str, object]:
    result = copy.deepcopy(envelope)
    data = result["data"]
    assert isinstance(data, dict)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return result


@pytest.mark.parametrize("load", [eventgrid_sample, cloudevent_sample], ids=["eventgrid", "cloudevents"])
def test_docs_samples_parse_to_the_same_request(load: object) -> None:
    """Key Vault's own sample (trailing-space key, leading-space value, string NBF/EXP) and the CloudEvents form
    both give the same request, with the configured vault name and URL."""
    assert callable(load)
    request = parse_event(load(), vaults=VAULTS)
    assert request == RenewalRequest(
        vault_name="Sample-KV",
        vault_url="https://sample-kv.vault.azure.net",
        certificate_name="newcert",
        version=VERSION,
        not_before=NBF,
        expires_on=EXP,
        event_type="Microsoft.KeyVault.CertificateNearExpiry",
        event_id="00eccf70-95a7-4e7c-8299-2eb17ee9ad64",
    )


def test_camelcase_sdk_data_in_an_eventgrid_envelope_parses() -> None:
    """The SDK models' camelCase data keys are read like the PascalCase ones."""
    envelope = eventgrid_sample()
    envelope["data"] = {
        "id": f"https://sample-kv.vault.azure.net/certificates/newcert/{VERSION}",
        "vaultName": "sample-kv",
        "objectType": "Certificate",
        "objectName": "newcert",
        "version": VERSION,
        "nbf": 1559081980,
        "exp": 1621890528.0,
    }
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert (request.certificate_name, request.version, request.expires_on) == ("newcert", VERSION, EXP)


def test_expired_event_is_handled() -> None:
    """CertificateExpired is handled like CertificateNearExpiry."""
    envelope = eventgrid_sample() | {"eventType": "Microsoft.KeyVault.CertificateExpired"}
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert request.event_type == "Microsoft.KeyVault.CertificateExpired"


def test_missing_nbf_exp_and_version_give_none() -> None:
    """NBF, EXP and Version are optional; missing or blank ones become None."""
    envelope = with_data(eventgrid_sample(), NBF=None, EXP="  ", Version=None)
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert (request.not_before, request.expires_on, request.version) == (None, None, None)


def test_vault_name_is_taken_from_the_topic_when_data_lacks_it() -> None:
    """Without data.VaultName, the vault comes from the topic's .../vaults/<name>."""
    envelope = with_data(eventgrid_sample(), VaultName=None)
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert request.vault_name == "Sample-KV"


def test_certificate_name_falls_back_to_the_subject() -> None:
    """Without data.ObjectName, the certificate is the event's subject."""
    envelope = with_data(eventgrid_sample(), **{"ObjectName ": None})
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert request.certificate_name == "newcert"


def test_forged_id_never_changes_the_vault_url() -> None:
    """An Id pointing at another host leaves the configured URL in place and is noted."""
    envelope = with_data(eventgrid_sample(), Id=f"https://attacker.example/certificates/newcert/{VERSION}")
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert request.vault_url == "https://sample-kv.vault.azure.net"
    assert any("attacker.example" in note for note in request.notes)


def test_matching_id_adds_no_note() -> None:
    """An Id on the configured host naming the same certificate is unremarkable."""
    request = parse_event(eventgrid_sample(), vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert request.notes == ()


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (
            eventgrid_sample() | {"eventType": "Microsoft.KeyVault.CertificateNewVersionCreated"},
            "unsupported_event_type",
        ),
        (
            eventgrid_sample() | {"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent"},
            "unsupported_event_type",
        ),
        (
            eventgrid_sample() | {"eventType": "Microsoft.KeyVault.SecretNearExpiry", "data": "not an object"},
            "unsupported_event_type",
        ),
        (with_data(eventgrid_sample(), ObjectType="Secret"), "not_a_certificate"),
        (from_vault("other-kv"), "vault_not_allowed"),
    ],
    ids=["new-version", "validation", "other-type-with-garbage-data", "secret", "other-vault"],
)
def test_events_not_ours_are_ignored(envelope: dict[str, object], reason: str) -> None:
    """Unhandled types, non-certificates and vaults off the allow-list are ignored with a reason."""
    result = parse_event(envelope, vaults=VAULTS)
    assert isinstance(result, Ignored)
    assert result.reason == reason


def test_vault_allow_list_is_case_insensitive() -> None:
    """A vault named in another case is still the configured one, reported in its configured case."""
    request = parse_event(with_data(eventgrid_sample(), VaultName="SAMPLE-kv"), vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert request.vault_name == "Sample-KV"


def test_vault_not_allowed_names_the_vault() -> None:
    """The ignored result says which vault was refused."""
    result = parse_event(from_vault("other-kv"), vaults=VAULTS)
    assert isinstance(result, Ignored)
    assert (result.vault_name, result.certificate_name) == ("other-kv", "newcert")


MALFORMED: list[tuple[str, object]] = [
    ("not-a-mapping", ["a", "list"]),
    ("no-type", {k: v for k, v in eventgrid_sample().items() if k != "eventType"}),
    ("type-not-string", eventgrid_sample() | {"eventType": 7}),
    ("data-missing", {k: v for k, v in eventgrid_sample().items() if k != "data"}),
    ("data-a-list", eventgrid_sample() | {"data": [1, 2]}),
    ("data-string-not-json", eventgrid_sample() | {"data": "{not json"}),
    ("no-certificate-name", with_data(eventgrid_sample(), **{"ObjectName ": None}) | {"subject": None}),
    ("bad-certificate-name", with_data(eventgrid_sample(), **{"ObjectName ": "../../etc"})),
    ("huge-certificate-name", with_data(eventgrid_sample(), **{"ObjectName ": "x" * 100_000})),
    ("name-not-string", with_data(eventgrid_sample(), **{"ObjectName ": {"a": 1}})),
    ("no-vault", {k: v for k, v in with_data(eventgrid_sample(), VaultName=None).items() if k != "topic"}),
    ("vault-disagrees-with-topic", with_data(eventgrid_sample(), VaultName="kv1")),
    ("exp-not-a-number", with_data(eventgrid_sample(), EXP="tomorrow")),
    ("exp-a-bool", with_data(eventgrid_sample(), EXP=True)),
    ("exp-a-list", with_data(eventgrid_sample(), EXP=[1])),
    ("exp-infinite", with_data(eventgrid_sample(), EXP="inf")),
    ("exp-nan", with_data(eventgrid_sample(), EXP="nan")),
    ("exp-out-of-range", with_data(eventgrid_sample(), EXP=10**20)),
    ("version-garbage", with_data(eventgrid_sample(), Version="../pending")),
    ("duplicate-folded-keys", with_data(eventgrid_sample(), objectname="other")),
    ("non-string-key", eventgrid_sample() | {1: "x"}),
]


@pytest.mark.parametrize("envelope", [case for _, case in MALFORMED], ids=[name for name, _ in MALFORMED])
def test_malformed_events_raise_malformed_event_only(envelope: object) -> None:
    """Every unreadable event raises PermanentError(malformed_event), never another exception type."""
    with pytest.raises(PermanentError) as caught:
        parse_event(envelope, vaults=VAULTS)  # type: ignore[arg-type]
    assert caught.value.reason == "malformed_event"
    assert len(caught.value.message) < 400


def test_malformed_message_does_not_echo_a_huge_value() -> None:
    """The error quotes at most a short excerpt of an offending value."""
    with pytest.raises(PermanentError) as caught:
        parse_event(with_data(eventgrid_sample(), **{"ObjectName ": "y" * 5000}), vaults=VAULTS)
    assert "y" * 100 not in caught.value.message


def test_data_given_as_json_string_is_read() -> None:
    """A publisher sending data as a JSON string is understood."""
    envelope = eventgrid_sample()
    envelope["data"] = json.dumps(envelope["data"])
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert request.certificate_name == "newcert"


def test_loopback_vault_from_topic_keeps_configured_url() -> None:
    """A devstack vault's request carries the configured loopback URL, port included."""
    envelope = eventgrid_sample() | {"topic": "/subscriptions/x/providers/Microsoft.KeyVault/vaults/kv1"}
    envelope = with_data(envelope, VaultName="kv1", Id=f"https://127.0.0.1:8443/certificates/newcert/{VERSION}")
    request = parse_event(envelope, vaults=VAULTS)
    assert isinstance(request, RenewalRequest)
    assert (request.vault_url, request.notes) == ("https://127.0.0.1:8443", ())


@pytest.mark.parametrize(
    "topic",
    [
        "/subscriptions/x",
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/kv1",
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/kv1",
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1/secrets/y",
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1?x=1",
    ],
    ids=["subscription-only", "storage-account", "managed-hsm", "vault-child", "query"],
)
def test_an_event_whose_topic_is_not_a_key_vault_is_ignored(topic: str) -> None:
    """Only Microsoft.KeyVault/vaults topics (or CloudEvents sources) are read; any other resource is ignored."""
    result = parse_event(with_data(eventgrid_sample(), VaultName="kv1") | {"topic": topic}, vaults=VAULTS)
    assert isinstance(result, Ignored)
    assert result.reason == "not_a_key_vault_event"


def test_a_cloud_event_whose_source_is_not_a_key_vault_is_ignored() -> None:
    """The CloudEvents source is held to the same rule as the Event Grid topic."""
    envelope = cloudevent_sample() | {"source": "/subscriptions/x/providers/Microsoft.Web/sites/kv1"}
    result = parse_event(envelope, vaults=VAULTS)
    assert isinstance(result, Ignored)
    assert result.reason == "not_a_key_vault_event"


@pytest.mark.parametrize(
    "name",
    ["newcert\u212a", "new cert", "n\u0435wcert", "newcert\x00"],
    ids=["kelvin", "inner-space", "cyrillic", "nul"],
)
def test_a_certificate_name_is_matched_whole_and_in_ascii(name: str) -> None:
    """A name with a non-ASCII lookalike, an inner space or a control character is not a Key Vault name."""
    with pytest.raises(PermanentError) as caught:
        parse_event(with_data(eventgrid_sample(), **{"ObjectName ": name}), vaults=VAULTS)
    assert caught.value.reason == "malformed_event"


def test_data_nested_too_deeply_is_malformed() -> None:
    """Event data given as a deeply nested JSON string is malformed, not a RecursionError."""
    envelope = eventgrid_sample() | {"data": "[" * 100_000 + "]" * 100_000}
    with pytest.raises(PermanentError) as caught:
        parse_event(envelope, vaults=VAULTS)
    assert caught.value.reason == "malformed_event"
