"""The Azure DNS provider for dns-01 against a loopback fake of ARM's record-set API, public and private zones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.credentials import AccessToken

from renewal.dns import DnsProvider, dns_provider_for
from renewal.dns.azure import AzureDns
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.ca.servers import free_port
from tests.fakes.arm_dns import API_VERSIONS, ArmDnsFake

TOKEN = "arm-token-for-tests"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
GROUP = "dns-rg"
ZONE = "corp.example"
NAME = "_acme-challenge.www.corp.example"


class StaticCredential:
    """A TokenCredential that hands out one token and remembers the scopes asked for."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, 2**31)


@pytest.fixture
def arm() -> Iterator[ArmDnsFake]:
    zones = {("dnsZones", SUBSCRIPTION, GROUP, ZONE), ("privateDnsZones", SUBSCRIPTION, GROUP, ZONE)}
    with ArmDnsFake(token=TOKEN, zones=zones) as fake:
        yield fake


def _provider(arm: ArmDnsFake, *, private: bool = False, credential: StaticCredential | None = None) -> AzureDns:
    return AzureDns(
        subscription_id=SUBSCRIPTION,
        resource_group=GROUP,
        zone=ZONE,
        private=private,
        credential=credential or StaticCredential(),
        arm_endpoint=arm.url,
    )


@pytest.mark.parametrize("kind", ["dnsZones", "privateDnsZones"])
def test_txt_value_is_written_with_the_bearer_token_and_api_version(arm: ArmDnsFake, kind: str) -> None:
    """set_txt PUTs the record set relative to the zone, with the identity's token and the zone type's api-version."""
    credential = StaticCredential()
    provider = _provider(arm, private=kind == "privateDnsZones", credential=credential)

    provider.set_txt(NAME, "value-1")

    assert arm.txt_values(kind, ZONE, "_acme-challenge.www") == ["value-1"]
    assert {request.api_version for request in arm.requests} == {API_VERSIONS[kind]}
    assert {request.authorization for request in arm.requests} == {f"Bearer {TOKEN}"}
    assert credential.scopes[0] == (f"{arm.url}/.default",)
    assert isinstance(provider, DnsProvider)


def test_values_accumulate_and_delete_removes_only_its_own(arm: ArmDnsFake) -> None:
    """Two values share a name (wildcard and base domain); deleting one keeps the other, the last deletes the set."""
    provider = _provider(arm)
    provider.set_txt(NAME, "value-1")
    provider.set_txt(NAME, "value-2")
    assert arm.txt_values("dnsZones", ZONE, "_acme-challenge.www") == ["value-1", "value-2"]

    provider.delete_txt(NAME, "value-1")
    assert arm.txt_values("dnsZones", ZONE, "_acme-challenge.www") == ["value-2"]

    provider.delete_txt(NAME, "value-2")
    assert ("dnsZones", ZONE, "_acme-challenge.www") not in arm.records
    assert arm.requests[-1].method == "DELETE"


def test_deleting_an_absent_record_is_not_an_error(arm: ArmDnsFake) -> None:
    """Cleanup after a failure may find nothing to delete: it does nothing and raises nothing."""
    _provider(arm, private=True).delete_txt(NAME, "never-set")
    assert [request.method for request in arm.requests] == ["GET"]


def test_write_that_loses_a_race_is_retried_on_a_fresh_read(arm: ArmDnsFake) -> None:
    """A 412 on the conditional PUT (someone changed the set) makes the provider read again and write again."""
    provider = _provider(arm)
    arm.fail_next(412, method="PUT")
    provider.set_txt(NAME, "value-1")
    assert arm.txt_values("dnsZones", ZONE, "_acme-challenge.www") == ["value-1"]
    assert [request.method for request in arm.requests] == ["GET", "PUT", "GET", "PUT"]


def test_zone_apex_is_addressed_as_at(arm: ArmDnsFake) -> None:
    """A name equal to the zone is the record set '@'."""
    _provider(arm).set_txt(ZONE, "apex")
    assert arm.txt_values("dnsZones", ZONE, "@") == ["apex"]


def test_name_outside_the_zone_is_permanent(arm: ArmDnsFake) -> None:
    """A challenge name the zone does not hold cannot be published: dns_name_outside_zone, and ARM is not called."""
    with pytest.raises(PermanentError) as caught:
        _provider(arm).set_txt("_acme-challenge.other.example", "value")
    assert caught.value.reason == "dns_name_outside_zone"
    assert arm.requests == []


@pytest.mark.parametrize(("private", "role"), [(False, "DNS Zone Contributor"), (True, "Private DNS Zone Contributor")])
def test_refused_token_is_unauthorized_and_names_the_role(arm: ArmDnsFake, private: bool, role: str) -> None:
    """ARM's 401 is permanent dns_unauthorized naming the role the identity needs, never the token."""
    with pytest.raises(PermanentError) as caught:
        _provider(arm, private=private, credential=StaticCredential("stolen-token")).set_txt(NAME, "value")
    assert caught.value.reason == "dns_unauthorized"
    assert role in str(caught.value)
    assert "stolen-token" not in str(caught.value)


def test_missing_zone_is_permanent(arm: ArmDnsFake) -> None:
    """A zone ARM does not know is dns_zone_not_found."""
    provider = AzureDns(
        subscription_id=SUBSCRIPTION,
        resource_group=GROUP,
        zone="nowhere.example",
        credential=StaticCredential(),
        arm_endpoint=arm.url,
    )
    with pytest.raises(PermanentError) as caught:
        provider.set_txt("_acme-challenge.nowhere.example", "value")
    assert caught.value.reason == "dns_zone_not_found"


def test_throttling_is_retryable_with_retry_after(arm: ArmDnsFake) -> None:
    """ARM's 429 is RetryableError dns_unavailable carrying Retry-After."""
    arm.fail_next(429, {"Retry-After": "13"})
    with pytest.raises(RetryableError) as caught:
        _provider(arm).set_txt(NAME, "value")
    assert caught.value.reason == "dns_unavailable"
    assert caught.value.retry_after == 13


def test_unreachable_arm_is_retryable() -> None:
    """No ARM listening is RetryableError dns_unreachable."""
    provider = AzureDns(
        subscription_id=SUBSCRIPTION,
        resource_group=GROUP,
        zone=ZONE,
        credential=StaticCredential(),
        arm_endpoint=f"http://127.0.0.1:{free_port()}",
        timeout_seconds=2,
    )
    with pytest.raises(RetryableError) as caught:
        provider.set_txt(NAME, "value")
    assert caught.value.reason == "dns_unreachable"


def test_registry_builds_the_azure_provider_from_options() -> None:
    """dns_provider 'azure' with its options builds an AzureDns on DefaultAzureCredential."""
    options = {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, "zone": ZONE, "private": True}
    assert isinstance(dns_provider_for("azure", options, {}), AzureDns)


@pytest.mark.parametrize(
    "options",
    [
        {"resource_group": GROUP, "zone": ZONE},
        {"subscription_id": SUBSCRIPTION, "zone": ZONE},
        {"subscription_id": SUBSCRIPTION, "resource_group": GROUP},
        {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, "zone": ZONE, "private": "yes"},
        {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, "zone": ZONE, "arm_endpoint": "http://arm.example"},
        {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, "zone": ZONE, "ttl_seconds": 0},
        {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, "zone": ZONE, "colour": "red"},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, object]) -> None:
    """A missing subscription, group or zone, a non-bool private, http ARM off loopback, bad TTL, unknown keys."""
    with pytest.raises(ConfigurationError) as caught:
        dns_provider_for("azure", options, {})
    assert caught.value.setting == "RENEWAL_CA_PROFILES"
