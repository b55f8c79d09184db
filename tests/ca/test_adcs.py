"""The AD CS web enrollment adapter, against a loopback fake that answers with certsrv's pages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.localca import LocalCAFiles, create_local_ca
from renewal.ca import CAAdapter, CAProfile, Issued, Pending, SigningRequest, adapter_for
from renewal.ca.local import LocalCA
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.ca.contract import DeferringCAContract
from tests.fakes.adcs import FakeCertsrv, running

USERNAME = "CORP\\svc-renewal"
PASSWORD = "adcs-Passw0rd-never-logged"
ENVIRON = {"ADCS_PASSWORD": PASSWORD, "WRONG_PASSWORD": "wrong-Passw0rd-2"}


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("adcs-ca"))


def _fake(ca_files: LocalCAFiles, auth: str) -> FakeCertsrv:
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    chain = tuple(x509.load_pem_x509_certificates(ca_files.chain_path.read_bytes()))
    signing = LocalCA(ca_certificate=chain[0], ca_key=key, chain=chain)  # type: ignore[arg-type]
    return FakeCertsrv(signing, chain, USERNAME, PASSWORD, auth=auth)


@pytest.fixture
def certsrv(ca_files: LocalCAFiles) -> Iterator[FakeCertsrv]:
    with running(_fake(ca_files, "basic")) as fake:
        yield fake


@pytest.fixture
def ntlm_certsrv(ca_files: LocalCAFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCertsrv]:
    fake = _fake(ca_files, "ntlm")
    # pyspnego's NTLM acceptor reads its credential store from this variable (a third-party seam).
    monkeypatch.setenv("NTLM_USER_FILE", str(fake.ntlm_user_file(tmp_path)))
    with running(fake):
        yield fake


def _adcs_adapter(url: str, **options: object) -> CAAdapter:
    profile = {"url": url, "template": "WebServer", "auth": "basic", "username": USERNAME}
    profile |= {"password_setting": "ADCS_PASSWORD", **options}
    return adapter_for(CAProfile("corp-adcs", "adcs", profile), ENVIRON)


class TestAdcsContract(DeferringCAContract):
    """AD CS keeps the contract, including deferral through certificate manager approval."""

    @pytest.fixture
    def adapter(self, certsrv: FakeCertsrv) -> CAAdapter:
        return _adcs_adapter(certsrv.url)

    @pytest.fixture
    def rejecting_adapter(self, certsrv: FakeCertsrv) -> CAAdapter:
        return _adcs_adapter(certsrv.url, template="NoSuchTemplate")

    @pytest.fixture
    def unreachable_adapter(self, certsrv: FakeCertsrv) -> CAAdapter:
        certsrv.down = True
        return _adcs_adapter(certsrv.url)

    @pytest.fixture
    def deferring_adapter(self, certsrv: FakeCertsrv) -> CAAdapter:
        return _adcs_adapter(certsrv.url, template="ApprovedWebServer")

    @pytest.fixture
    def approve(self, certsrv: FakeCertsrv) -> Callable[[str], None]:
        return certsrv.approve


def test_issued_page_leads_to_certnew_cer_and_p7b(
    certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest
) -> None:
    """An issued answer is fetched as certnew.cer (leaf) and certnew.p7b (chain), the chain ordered leaf-up."""
    answer = _adcs_adapter(certsrv.url).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    assert certsrv.paths == ["/certsrv/certfnsh.asp", "/certsrv/certnew.cer", "/certsrv/certnew.p7b"]
    expected = [c.public_bytes(serialization.Encoding.PEM).decode() for c in certsrv.chain]
    assert list(answer.chain_pem) == expected


def test_denied_page_is_permanent_denied(certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest) -> None:
    """certsrv's "denied" page is PermanentError reason denied, carrying the disposition message."""
    with pytest.raises(PermanentError) as caught:
        _adcs_adapter(certsrv.url, template="NoSuchTemplate").submit(keyvault_signing_request)
    assert caught.value.reason == "denied"
    assert "Denied by Policy Module" in caught.value.message
    assert "<" not in caught.value.message


def test_pending_request_denied_by_a_manager_is_permanent(
    certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest
) -> None:
    """A pending request stays pending until a certificate manager denies it; polling then says denied."""
    adapter = _adcs_adapter(certsrv.url, template="ApprovedWebServer")
    pending = adapter.submit(keyvault_signing_request)
    assert isinstance(pending, Pending)
    assert pending.reference == "41"
    assert isinstance(adapter.poll("41"), Pending)
    certsrv.deny("41")
    with pytest.raises(PermanentError) as caught:
        adapter.poll("41")
    assert caught.value.reason == "denied"


def test_error_page_is_permanent_with_a_short_message(certsrv: FakeCertsrv) -> None:
    """An unknown request id gives certsrv's error page: permanent, short, without HTML."""
    with pytest.raises(PermanentError) as caught:
        _adcs_adapter(certsrv.url).poll("999")
    assert caught.value.reason == "ca_refused"
    assert "0x80070057" in caught.value.message
    assert len(caught.value.message) < 250


def test_poll_refuses_a_reference_that_is_not_a_request_id(certsrv: FakeCertsrv) -> None:
    """A reference that is not a request id is permanent, reason unknown_reference, and nothing is sent."""
    with pytest.raises(PermanentError) as caught:
        _adcs_adapter(certsrv.url).poll("../certsrv")
    assert caught.value.reason == "unknown_reference"
    assert certsrv.paths == []


def test_wrong_password_is_permanent_auth_failed(
    certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest
) -> None:
    """A 401 is permanent, reason auth_failed."""
    with pytest.raises(PermanentError) as caught:
        _adcs_adapter(certsrv.url, password_setting="WRONG_PASSWORD").submit(keyvault_signing_request)
    assert caught.value.reason == "auth_failed"


def test_ntlm_handshake_authenticates(ntlm_certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest) -> None:
    """With auth ntlm, the NTLM negotiate/challenge/authenticate exchange is verified by a real NTLM acceptor."""
    answer = _adcs_adapter(ntlm_certsrv.url, auth="ntlm").submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    assert ntlm_certsrv.ntlm_negotiations >= 1
    assert set(ntlm_certsrv.authenticated) == {USERNAME}


def test_ntlm_with_wrong_password_is_auth_failed(
    ntlm_certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest
) -> None:
    """NTLM with the wrong password ends in 401: permanent, reason auth_failed."""
    with pytest.raises(PermanentError) as caught:
        _adcs_adapter(ntlm_certsrv.url, auth="ntlm", password_setting="WRONG_PASSWORD").submit(keyvault_signing_request)
    assert caught.value.reason == "auth_failed"
    assert ntlm_certsrv.authenticated == []


def test_outage_is_retryable(certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest) -> None:
    """A 503 from IIS is retryable, reason ca_unavailable."""
    certsrv.down = True
    with pytest.raises(RetryableError) as caught:
        _adcs_adapter(certsrv.url).submit(keyvault_signing_request)
    assert caught.value.reason == "ca_unavailable"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"template": None}, "template"),
        ({"auth": "kerberos"}, "auth"),
        ({"username": None}, "username"),
        ({"url": "http://ca01.corp.example"}, "url"),
        ({"template": "WebServer\nSAN:dns=evil.example"}, "template"),
        ({"timeout": "fast"}, "timeout"),
    ],
)
def test_bad_options_name_the_profile_and_option(options: dict[str, object], named: str) -> None:
    """A malformed profile raises ConfigurationError naming the profile and the option."""
    profile = {"url": "https://ca01.corp.example", "template": "WebServer", "auth": "basic", "username": USERNAME}
    profile |= {"password_setting": "ADCS_PASSWORD", **options}
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(CAProfile("corp-adcs", "adcs", {k: v for k, v in profile.items() if v is not None}), ENVIRON)
    assert "corp-adcs" in caught.value.message
    assert named in caught.value.message


def test_no_secret_reaches_logs_or_errors(
    ntlm_certsrv: FakeCertsrv, keyvault_signing_request: SigningRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """The password appears in no log record (requests-ntlm included) and no exception message."""
    caplog.set_level(logging.DEBUG)
    _adcs_adapter(ntlm_certsrv.url, auth="ntlm").submit(keyvault_signing_request)
    with pytest.raises(PermanentError) as caught:
        _adcs_adapter(ntlm_certsrv.url, auth="ntlm", password_setting="WRONG_PASSWORD").submit(keyvault_signing_request)
    for secret in (PASSWORD, "wrong-Passw0rd-2", "BEGIN"):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
