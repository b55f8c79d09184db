"""The CFSSL adapter against a real ``cfssl serve`` on loopback: the shared contract, authsign and sign, errors."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from renewal.ca import CAAdapter, CAProfile, DeferringCAAdapter, Issued, SigningRequest, adapter_for
from renewal.ca.cfssl import CfsslCA
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.ca.contract import CAAdapterContract, verify_against_its_own_chain
from tests.ca.servers import CfsslServer, cfssl_server, failing_server, free_port

AUTH_KEY_SETTING = "CFSSL_AUTH_KEY"


@pytest.fixture(scope="module")
def cfssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CfsslServer]:
    with cfssl_server(tmp_path_factory.mktemp("cfssl"), auth_key_hex=secrets.token_hex(16)) as server:
        yield server


def _adapter(options: Mapping[str, object], environ: dict[str, str] | None = None) -> CAAdapter:
    return adapter_for(CAProfile("corp-cfssl", "cfssl", options), environ or {})


def _authsign(server: CfsslServer, **extra: object) -> CAAdapter:
    options = {"url": server.url, "profile": "authed", "auth_key_setting": AUTH_KEY_SETTING, **extra}
    return _adapter(options, {AUTH_KEY_SETTING: server.auth_key_hex})


def _issuer_subject(answer: Issued) -> x509.Name:
    return x509.load_pem_x509_certificate(answer.leaf_pem.encode()).issuer


class TestCfsslContract(CAAdapterContract):
    """CFSSL keeps the contract through authsign; it cannot defer issuance."""

    @pytest.fixture
    def adapter(self, cfssl: CfsslServer) -> CAAdapter:
        return _authsign(cfssl)

    @pytest.fixture
    def rejecting_adapter(self, cfssl: CfsslServer) -> CAAdapter:
        options = {"url": cfssl.url, "profile": "authed", "auth_key_setting": AUTH_KEY_SETTING}
        return _adapter(options, {AUTH_KEY_SETTING: secrets.token_hex(16)})

    @pytest.fixture(params=["closed-port", "503"])
    def unreachable_adapter(self, request: pytest.FixtureRequest) -> Iterator[CAAdapter]:
        if request.param == "closed-port":
            yield _adapter({"url": f"http://127.0.0.1:{free_port()}", "timeout_seconds": 2})
        else:
            with failing_server(503) as url:
                yield _adapter({"url": url, "timeout_seconds": 2})


def test_authsign_is_signed_by_the_cfssl_ca_with_its_chain(
    cfssl: CfsslServer, keyvault_signing_request: SigningRequest
) -> None:
    """Authsign returns a leaf issued by the CA cfssl serves, and the chain is that CA's certificate from /info."""
    answer = _authsign(cfssl).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    issuing = x509.load_pem_x509_certificate(cfssl.ca.issuing_cert_path.read_bytes())
    assert _issuer_subject(answer) == issuing.subject
    assert [x509.load_pem_x509_certificate(pem.encode()) for pem in answer.chain_pem] == [issuing]


def test_sign_without_auth_key_uses_the_open_profile(
    cfssl: CfsslServer, keyvault_signing_request: SigningRequest
) -> None:
    """Without auth_key_setting the adapter calls /sign, which cfssl honours for a profile without auth key."""
    answer = _adapter({"url": cfssl.url, "profile": "open"}).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    verify_against_its_own_chain(keyvault_signing_request.csr_der, answer, now=datetime.now(UTC))


def test_sign_without_auth_key_on_an_authenticated_profile_is_unauthorized(
    cfssl: CfsslServer, keyvault_signing_request: SigningRequest
) -> None:
    """CFSSL refuses /sign for a profile that needs its auth key: permanent, reason cfssl_unauthorized."""
    with pytest.raises(PermanentError) as caught:
        _adapter({"url": cfssl.url, "profile": "authed"}).submit(keyvault_signing_request)
    assert caught.value.reason == "cfssl_unauthorized"


def test_wrong_auth_key_is_unauthorized_and_never_shown(
    cfssl: CfsslServer, keyvault_signing_request: SigningRequest
) -> None:
    """A wrong HMAC key is refused as cfssl_unauthorized, and the error text holds neither key."""
    wrong = secrets.token_hex(16)
    adapter = _adapter(
        {"url": cfssl.url, "profile": "authed", "auth_key_setting": AUTH_KEY_SETTING}, {AUTH_KEY_SETTING: wrong}
    )
    with pytest.raises(PermanentError) as caught:
        adapter.submit(keyvault_signing_request)
    assert caught.value.reason == "cfssl_unauthorized"
    assert wrong not in str(caught.value)
    assert cfssl.auth_key_hex not in str(caught.value)
    assert wrong not in repr(adapter)


def test_unreadable_csr_is_rejected_by_cfssl_as_permanent(cfssl: CfsslServer) -> None:
    """A CSR cfssl cannot decode is refused before signing: permanent, never retried."""
    request = SigningRequest(csr_der=b"\x30\x03\x02\x01\x00", vault_name="kv", certificate_name="broken")
    with pytest.raises(PermanentError):
        _authsign(cfssl).submit(request)


def test_chain_path_replaces_the_info_call(cfssl: CfsslServer, keyvault_signing_request: SigningRequest) -> None:
    """With chain_path the chain is the configured file (intermediate then root), in order."""
    answer = _authsign(cfssl, chain_path=str(cfssl.ca.chain_path)).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    expected = x509.load_pem_x509_certificates(cfssl.ca.chain_path.read_bytes())
    assert [x509.load_pem_x509_certificate(pem.encode()) for pem in answer.chain_pem] == expected
    verify_against_its_own_chain(keyvault_signing_request.csr_der, answer, now=datetime.now(UTC))


def test_503_is_retryable_with_the_servers_retry_after(keyvault_signing_request: SigningRequest) -> None:
    """An HTTP 503 becomes RetryableError cfssl_unavailable carrying the Retry-After seconds."""
    with failing_server(503, retry_after="42") as url, pytest.raises(RetryableError) as caught:
        _adapter({"url": url}).submit(keyvault_signing_request)
    assert caught.value.reason == "cfssl_unavailable"
    assert caught.value.retry_after == 42


def test_cfssl_never_defers_so_the_adapter_offers_no_poll(cfssl: CfsslServer) -> None:
    """There is no pending CFSSL request to poll: the adapter is not a DeferringCAAdapter, so nothing polls it."""
    assert not isinstance(_authsign(cfssl), DeferringCAAdapter)


@pytest.mark.parametrize(
    ("options", "environ", "setting"),
    [
        ({"profile": "x"}, {}, "RENEWAL_CA_PROFILES"),
        ({"url": "http://cfssl.corp.example:8888"}, {}, "RENEWAL_CA_PROFILES"),
        ({"url": "https://cfssl.example", "colour": "red"}, {}, "RENEWAL_CA_PROFILES"),
        ({"url": "https://cfssl.example", "auth_key_setting": "K"}, {"K": "not-hex"}, "K"),
        ({"url": "https://cfssl.example", "auth_key_setting": "K"}, {}, "RENEWAL_CA_PROFILES"),
        ({"url": "https://cfssl.example", "timeout_seconds": 0}, {}, "RENEWAL_CA_PROFILES"),
        ({"url": "https://cfssl.example", "chain_path": "/nonexistent/chain.pem"}, {}, "RENEWAL_CA_PROFILES"),
    ],
)
def test_bad_profile_options_name_the_setting_at_fault(
    options: dict[str, object], environ: dict[str, str], setting: str
) -> None:
    """Missing url, plain http off loopback, unknown options, a non-hex or missing key, bad numbers or files."""
    with pytest.raises(ConfigurationError) as caught:
        CfsslCA.from_profile(CAProfile("corp-cfssl", "cfssl", options), environ)
    assert caught.value.setting == setting
    assert "not-hex" not in str(caught.value)


def test_chain_path_must_hold_certificates(tmp_path: Path) -> None:
    """A chain_path file without PEM certificates is a configuration error."""
    chain = tmp_path / "chain.pem"
    chain.write_text("nothing here\n")
    with pytest.raises(ConfigurationError):
        CfsslCA.from_profile(CAProfile("c", "cfssl", {"url": "https://cfssl.example", "chain_path": str(chain)}), {})
