"""Seeding a fleet straight into the emulator's model: one emulator serving many vaults, certificates that the
SDK lists in pages of 25 with their validity and tags, read with their policy, and renew like any other."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.keyvault.certificates import CertificateOperation
from cryptography import x509

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles, create_local_ca
from devstack.seed import seed_fleet

VAULTS = [f"fleet{n:02d}" for n in range(6)]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[KeyVaultEmulator, LocalCAFiles]]:
    """An emulator with six vaults and a local CA."""
    ca = create_local_ca(tmp_path / "ca")
    with KeyVaultEmulator(state_dir=tmp_path / "kv", vaults=VAULTS, tick_interval=None) as emulator:
        yield emulator, ca


def test_one_emulator_serves_many_vaults_each_with_its_own_certificates(
    fleet: tuple[KeyVaultEmulator, LocalCAFiles],
) -> None:
    """Each of six vaults has its own URL and lists only the certificates seeded into it."""
    emulator, ca = fleet
    now = datetime.fromtimestamp(emulator.clock(), UTC)
    for index, vault in enumerate(VAULTS):
        names = [f"{vault}-c{n}" for n in range(index + 1)]
        seed_fleet(emulator, vault, names, ca, not_before=now - timedelta(days=1), not_after=now + timedelta(days=90))
    assert len(set(emulator.urls.values())) == len(VAULTS)
    for index, vault in enumerate(VAULTS):
        listed = [c.name for c in emulator.certificate_client(vault).list_properties_of_certificates()]
        assert sorted(listed) == sorted(f"{vault}-c{n}" for n in range(index + 1))


def test_a_seeded_fleet_is_listed_in_pages_of_25_with_validity_and_tags(
    fleet: tuple[KeyVaultEmulator, LocalCAFiles],
) -> None:
    """60 seeded certificates list in 3 requests, each with the expiry, not-before and tags it was seeded with."""
    emulator, ca = fleet
    now = datetime.fromtimestamp(emulator.clock(), UTC).replace(microsecond=0)
    names = [f"web{n:03d}" for n in range(60)]
    seeded = seed_fleet(
        emulator,
        "fleet00",
        names,
        ca,
        not_before=now - timedelta(days=10),
        not_after=now + timedelta(days=80),
        tags={"team": "payments"},
    )
    assert seeded == 60
    emulator.request_log.clear()
    listed = list(emulator.certificate_client("fleet00").list_properties_of_certificates())
    assert sorted(item.name for item in listed) == names
    assert {(item.not_before, item.expires_on) for item in listed} == {
        (now - timedelta(days=10), now + timedelta(days=80))
    }
    assert all(item.tags == {"team": "payments"} for item in listed)
    assert emulator.request_log.authenticated_requests(vault="fleet00", operation="list") == 3


def test_a_seeded_certificate_reads_like_one_made_by_create_and_merge(
    fleet: tuple[KeyVaultEmulator, LocalCAFiles],
) -> None:
    """Its policy is issuer Unknown with an EC P-256 key and its DNS name, and its leaf matches its key."""
    emulator, ca = fleet
    now = datetime.fromtimestamp(emulator.clock(), UTC)
    seed_fleet(emulator, "fleet01", ["api"], ca, not_before=now, not_after=now + timedelta(days=30))
    certificate = emulator.certificate_client("fleet01").get_certificate("api")
    assert certificate.policy is not None
    assert (certificate.policy.issuer_name, certificate.policy.key_curve_name) == ("Unknown", "P-256")
    assert certificate.policy.san_dns_names == ["api.fleet.internal"]
    leaf = x509.load_der_x509_certificate(bytes(certificate.cer or b""))
    key = emulator.vault("fleet01").private_key_of("api")  # type: ignore[attr-defined]
    assert leaf.public_key() == key.public_key()
    # A renewal of it begins like any other: a new version is pending, with its CSR.
    operation = emulator.certificate_client("fleet01").begin_create_certificate("api", certificate.policy).result()
    assert isinstance(operation, CertificateOperation)
    assert operation.csr


def test_seeding_emits_no_new_version_events(fleet: tuple[KeyVaultEmulator, LocalCAFiles]) -> None:
    """A seeded fleet does not flood the event subscribers with CertificateNewVersionCreated."""
    emulator, ca = fleet
    now = datetime.fromtimestamp(emulator.clock(), UTC)
    seed_fleet(emulator, "fleet02", ["a", "b"], ca, not_before=now, not_after=now + timedelta(days=300))
    assert emulator.events.published == []


def test_the_request_log_says_when_each_request_arrived(fleet: tuple[KeyVaultEmulator, LocalCAFiles]) -> None:
    """Entries carry a monotonic arrival time, in order, so requests per window can be counted."""
    emulator, _ = fleet
    client = emulator.certificate_client("fleet03")
    for _ in range(3):
        list(client.list_properties_of_certificates())
    times = [entry.received_at for entry in emulator.request_log.entries(vault="fleet03", authenticated=True)]
    assert len(times) == 3
    assert times == sorted(times)
    assert times[0] > 0
