"""ARI (RFC 9773) in the ACME adapter: the certificate id, the suggested window, and ``replaces`` on new orders.

Pebble 2.4 has no ``renewalInfo``, so a loopback fake directory adds it in front of a real Pebble.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from renewal.ca import CAProfile, Issued, SigningRequest
from renewal.ca.acme import AcmeCA, ari_certificate_id
from renewal.errors import PermanentError
from tests.ca.conftest import CONTRACT_DNS_NAMES
from tests.ca.servers import PebbleServer, acme_options
from tests.fakes.ari import AriFake


@pytest.fixture(scope="module")
def previous_leaf(pebble: PebbleServer, keyvault_signing_request: SigningRequest) -> str:
    """A certificate Pebble issued, standing for the one a renewal replaces."""
    answer = AcmeCA.from_profile(CAProfile("acme", "acme", acme_options(pebble)), {}).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    return answer.leaf_pem


def _fake(pebble: PebbleServer, *, record_new_orders: bool = False) -> AriFake:
    upstream = requests.get(pebble.directory_url, verify=str(pebble.tls_ca_path), timeout=5).json()
    return AriFake(upstream, record_new_orders=record_new_orders)


def _adapter(pebble: PebbleServer, directory_url: str) -> AcmeCA:
    return AcmeCA.from_profile(CAProfile("acme", "acme", acme_options(pebble, directory_url=directory_url)), {})


def _certificate(serial: int, key_identifier: bytes | None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.devstack.test")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if key_identifier is not None:
        aki = x509.AuthorityKeyIdentifier(key_identifier, None, None)
        builder = builder.add_extension(aki, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_certificate_id_matches_the_rfc_9773_example() -> None:
    """RFC 9773 §4.1's example: keyIdentifier 69:88:5B:... and serial 00:87:65:43:21 give aYhba4dG....AIdlQyE."""
    key_identifier = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert ari_certificate_id(_certificate(0x87654321, key_identifier)) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_certificate_id_keeps_no_leading_zero_when_the_high_bit_is_clear() -> None:
    """A serial whose first byte is below 0x80 is encoded without a zero byte (DER INTEGER content octets)."""
    assert ari_certificate_id(_certificate(0x12345678, b"\x01\x02")) == "AQI.EjRWeA"


def test_certificate_without_authority_key_identifier_has_no_id() -> None:
    """Without an AKI keyIdentifier there is no ARI id: None, and the caller goes without ARI."""
    assert ari_certificate_id(_certificate(1, None)) is None


def test_suggested_window_is_read_from_renewal_info(pebble: PebbleServer, previous_leaf: str) -> None:
    """suggested_window GETs <renewalInfo>/<id> without authentication and returns the window in UTC."""
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    end = start + timedelta(days=2)
    certificate_id = ari_certificate_id(previous_leaf)
    assert certificate_id is not None
    with _fake(pebble) as fake:
        fake.windows[certificate_id] = (start, end)
        assert _adapter(pebble, fake.directory_url).suggested_window(previous_leaf) == (start, end)
    assert fake.renewal_info_requests == [(certificate_id, "")]


def test_suggested_window_is_none_without_renewal_info(pebble: PebbleServer, previous_leaf: str) -> None:
    """A directory without renewalInfo (Pebble 2.4) has no suggested window: None."""
    assert _adapter(pebble, pebble.directory_url).suggested_window(previous_leaf) is None


def test_unknown_certificate_window_is_a_permanent_error(pebble: PebbleServer, previous_leaf: str) -> None:
    """renewalInfo answering 404 for a certificate the CA does not know is permanent for that certificate."""
    with _fake(pebble) as fake, pytest.raises(PermanentError):
        _adapter(pebble, fake.directory_url).suggested_window(previous_leaf)


def test_order_for_a_renewal_carries_replaces(
    pebble: PebbleServer, previous_leaf: str, keyvault_signing_request: SigningRequest
) -> None:
    """submit_replacing puts the previous certificate's ARI id in the newOrder payload's replaces."""
    with _fake(pebble, record_new_orders=True) as fake, pytest.raises(PermanentError) as caught:
        _adapter(pebble, fake.directory_url).submit_replacing(keyvault_signing_request, previous_leaf)
    assert caught.value.reason == "acme_malformed"  # the fake refuses every order after recording it
    [order] = fake.new_orders
    assert order["replaces"] == ari_certificate_id(previous_leaf)
    assert {identifier["value"] for identifier in order["identifiers"]} == set(CONTRACT_DNS_NAMES)


def test_plain_submit_sends_no_replaces(pebble: PebbleServer, keyvault_signing_request: SigningRequest) -> None:
    """submit (the protocol method) orders without replaces even where ARI is offered."""
    with _fake(pebble, record_new_orders=True) as fake, pytest.raises(PermanentError):
        _adapter(pebble, fake.directory_url).submit(keyvault_signing_request)
    [order] = fake.new_orders
    assert "replaces" not in order


def test_replacing_without_renewal_info_orders_as_usual(
    pebble: PebbleServer, previous_leaf: str, keyvault_signing_request: SigningRequest
) -> None:
    """Against a directory without renewalInfo, submit_replacing leaves replaces out and Pebble issues."""
    answer = _adapter(pebble, pebble.directory_url).submit_replacing(keyvault_signing_request, previous_leaf)
    assert isinstance(answer, Issued)
