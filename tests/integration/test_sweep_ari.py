"""ACME ARI (RFC 9773) feeding the sweep: the CA's suggested window can bring a renewal forward."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from cryptography.hazmat.primitives import serialization

import renewal
from renewal.ca.acme import ari_certificate_id
from tests.ca.servers import ChallTestServer, PebbleServer, acme_options, challtestsrv, pebble_server
from tests.fakes.ari import AriFake
from tests.integration.conftest import Stack


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestServer]:
    with challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as server:
        yield server


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, dns_server: ChallTestServer) -> Iterator[PebbleServer]:
    # Pebble's own default is five years; the seeded policy asks for 12 months.
    with pebble_server(tmp_path_factory.mktemp("pebble"), dns_server, validity_seconds=90 * 24 * 3600) as server:
        yield server


@pytest.fixture
def ari(pebble: PebbleServer) -> Iterator[AriFake]:
    """A directory offering renewalInfo in front of Pebble (which has none)."""
    upstream = requests.get(pebble.directory_url, verify=str(pebble.tls_ca_path), timeout=5).json()
    with AriFake(upstream) as fake:
        yield fake


@pytest.fixture
def ari_stack(stack: Stack, pebble: PebbleServer, ari: AriFake, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The ``corp`` profile ordering from Pebble through the ARI fake; moving the local CA's certificates to Pebble
    is a planned CA rollover, so Pebble's root is the profile's trust anchor."""
    anchor = stack.tmp / "pebble-root.pem"
    anchor.write_text(pebble.root_pem())
    options = acme_options(pebble, directory_url=ari.directory_url, trust_anchor_path=str(anchor))
    profile = {"adapter": "acme", **options}
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": profile}))
    return stack


def test_suggested_window_in_the_past_renews_a_young_certificate(ari_stack: Stack, ari: AriFake) -> None:
    """A certificate far from our own window is renewed when its CA's renewalInfo window has opened."""
    leaf = ari_stack.seed("young", days_old=5, days_left=80)
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    now = ari_stack.now()
    ari.windows[ari_certificate_id(pem)] = (now - timedelta(hours=1), now + timedelta(hours=5))

    report = renewal.run_sweep()

    assert report is not None
    assert [(o.certificate_name, o.status) for o in report.started] == [("young", "renewed")]
    assert len(ari_stack.versions("young")) == 2


def test_sweep_renewal_from_pebble_without_a_trust_anchor_is_refused(
    ari_stack: Stack, ari: AriFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without trust_anchor_path the sweep's renewal through Pebble fails untrusted_issuer and merges nothing."""
    profile = json.loads(ari_stack.env_value("RENEWAL_CA_PROFILES"))["corp"]
    del profile["trust_anchor_path"]
    monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": profile}))
    leaf = ari_stack.seed("young", days_old=5, days_left=80)
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    now = ari_stack.now()
    ari.windows[ari_certificate_id(pem)] = (now - timedelta(hours=1), now + timedelta(hours=5))

    report = renewal.run_sweep()

    assert report is not None
    assert [(o.certificate_name, o.status, o.reason) for o in report.started] == [
        ("young", "failed", "untrusted_issuer")
    ]
    assert len(ari_stack.versions("young")) == 1
    assert ari_stack.sink.deliveries == ()


def test_suggested_window_in_the_future_leaves_it_alone(ari_stack: Stack, ari: AriFake) -> None:
    """A renewalInfo window that has not opened yet (and ours neither) starts nothing."""
    leaf = ari_stack.seed("young", days_old=5, days_left=80)
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
    now = ari_stack.now()
    ari.windows[ari_certificate_id(pem)] = (now + timedelta(days=40), now + timedelta(days=41))

    report = renewal.run_sweep()

    assert report is not None
    assert report.started == []
    assert len(ari_stack.versions("young")) == 1
