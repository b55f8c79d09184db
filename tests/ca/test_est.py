"""The EST (RFC 7030) adapter, against a loopback HTTPS fake of an EST server."""

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
from tests.ca.contract import DeferringCAContract, poll_until_issued
from tests.fakes.est import FakeEst, LoopbackTls, running

PASSWORD = "est-password-never-logged-31337"


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("est-ca"))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    return LoopbackTls.create(tmp_path_factory.mktemp("est-tls"))


@pytest.fixture
def est(ca_files: LocalCAFiles, tls: LoopbackTls) -> Iterator[FakeEst]:
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    chain = tuple(x509.load_pem_x509_certificates(ca_files.chain_path.read_bytes()))
    signing = LocalCA(ca_certificate=chain[0], ca_key=key, chain=chain)  # type: ignore[arg-type]
    with running(FakeEst(signing, chain, tls, basic=("renewal", PASSWORD))) as fake:
        yield fake


def _environ(tls: LoopbackTls) -> dict[str, str]:
    return {
        "EST_PASSWORD": PASSWORD,
        "EST_CLIENT_PEM": tls.client_pem,
        "EST_CLIENT_PFX": tls.client_pfx_b64,
        "EST_CLIENT_PFX_PASSWORD": tls.client_pfx_password,
    }


def _est_adapter(est: FakeEst, **options: object) -> CAAdapter:
    basic = {"username": "renewal", "password_setting": "EST_PASSWORD"}
    profile = {"url": est.url, "label": "servers", "ca_bundle_path": str(est.tls.ca_path), **basic, **options}
    return adapter_for(CAProfile("appliance-est", "est", {k: v for k, v in profile.items() if v is not None}),
                       _environ(est.tls))  # fmt: skip


class TestEstContract(DeferringCAContract):
    """EST keeps the contract, including deferral through 202 + Retry-After."""

    @pytest.fixture
    def adapter(self, est: FakeEst) -> CAAdapter:
        return _est_adapter(est)

    @pytest.fixture
    def rejecting_adapter(self, est: FakeEst) -> CAAdapter:
        return _est_adapter(est, label="rejecting")

    @pytest.fixture
    def unreachable_adapter(self, est: FakeEst) -> CAAdapter:
        est.down = True
        return _est_adapter(est)

    @pytest.fixture
    def deferring_adapter(self, est: FakeEst) -> CAAdapter:
        est.hold = True
        return _est_adapter(est)

    @pytest.fixture
    def approve(self, est: FakeEst) -> Callable[[str], None]:
        return lambda reference: est.approve_all()


def test_enrolls_at_the_labelled_path_then_fetches_cacerts(
    est: FakeEst, keyvault_signing_request: SigningRequest
) -> None:
    """simpleenroll goes to /.well-known/est/{label}/, and the chain comes from the same label's /cacerts."""
    _est_adapter(est).submit(keyvault_signing_request)
    assert est.paths == ["/.well-known/est/servers/simpleenroll", "/.well-known/est/servers/cacerts"]


def test_reenroll_uses_simplereenroll(est: FakeEst, keyvault_signing_request: SigningRequest) -> None:
    """With reenroll, the request goes to simplereenroll; without a label, to the default CA path."""
    _est_adapter(est, reenroll=True, label=None).submit(keyvault_signing_request)
    assert est.paths[0] == "/.well-known/est/simplereenroll"


def test_cacerts_chain_is_ordered_nearest_issuer_first(
    est: FakeEst, ca_files: LocalCAFiles, keyvault_signing_request: SigningRequest
) -> None:
    """/cacerts lists the root first; the adapter returns the issuing CA first, then the root."""
    answer = _est_adapter(est).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    expected = [c.public_bytes(serialization.Encoding.PEM).decode() for c in est.ca_certificates]
    assert list(answer.chain_pem) == expected
    assert (
        x509.load_pem_x509_certificate(expected[0].encode()).subject
        != x509.load_pem_x509_certificate(expected[1].encode()).subject
    )


def test_202_is_pending_with_retry_after_and_a_reference_that_resubmits(
    est: FakeEst, keyvault_signing_request: SigningRequest
) -> None:
    """A 202 answer becomes Pending with the server's Retry-After; polling repeats the same CSR (§4.2.3)."""
    est.hold, est.retry_after = True, 7
    adapter = _est_adapter(est)
    first = adapter.submit(keyvault_signing_request)
    assert isinstance(first, Pending)
    assert first.retry_after == 7.0
    est.approve_all()
    answer = adapter.poll(first.reference)
    assert isinstance(answer, Issued)
    assert est.paths.count("/.well-known/est/servers/simpleenroll") == 2


def test_tls_client_certificate_from_a_pfx_setting(est: FakeEst, keyvault_signing_request: SigningRequest) -> None:
    """With a PKCS#12 client certificate (a Key Vault secret), the server sees it in the TLS handshake."""
    est.basic, est.require_client_certificate = None, True
    adapter = _est_adapter(
        est,
        username=None,
        password_setting=None,
        client_pfx_setting="EST_CLIENT_PFX",
        client_pfx_password_setting="EST_CLIENT_PFX_PASSWORD",
    )
    assert isinstance(poll_until_issued(adapter, adapter.submit(keyvault_signing_request)), Issued)
    assert est.client_subjects
    assert set(est.client_subjects) == {"renewal-app"}


def test_tls_client_certificate_from_a_pem_setting(est: FakeEst, keyvault_signing_request: SigningRequest) -> None:
    """A PEM client certificate and key work the same way."""
    est.basic, est.require_client_certificate = None, True
    adapter = _est_adapter(est, username=None, password_setting=None, client_pem_setting="EST_CLIENT_PEM")
    assert isinstance(adapter.submit(keyvault_signing_request), Issued)


def test_without_client_certificate_the_server_refuses(est: FakeEst, keyvault_signing_request: SigningRequest) -> None:
    """A server requiring a client certificate answers 401 to Basic alone: permanent, auth_failed."""
    est.require_client_certificate = True
    with pytest.raises(PermanentError) as caught:
        _est_adapter(est).submit(keyvault_signing_request)
    assert caught.value.reason == "auth_failed"


def test_wrong_password_is_permanent_auth_failed(
    est: FakeEst, keyvault_signing_request: SigningRequest, tmp_path: Path
) -> None:
    """A 401 for HTTP Basic is permanent, reason auth_failed."""
    adapter = adapter_for(
        CAProfile(
            "e",
            "est",
            {"url": est.url, "username": "renewal", "password_setting": "P", "ca_bundle_path": str(est.tls.ca_path)},
        ),
        {"P": "wrong-password"},
    )
    with pytest.raises(PermanentError) as caught:
        adapter.submit(keyvault_signing_request)
    assert caught.value.reason == "auth_failed"


def test_unknown_label_is_permanent(est: FakeEst, keyvault_signing_request: SigningRequest) -> None:
    """A 404 for an unknown CA label is permanent, reason unknown_label."""
    with pytest.raises(PermanentError) as caught:
        _est_adapter(est, label="nope").submit(keyvault_signing_request)
    assert caught.value.reason == "unknown_label"


def test_outage_is_retryable_and_untrusted_tls_is_permanent(
    est: FakeEst, keyvault_signing_request: SigningRequest
) -> None:
    """503 is retryable (ca_unavailable); without the private TLS CA the certificate check fails, which retrying
    cannot mend (ca_tls_untrusted)."""
    est.down = True
    with pytest.raises(RetryableError) as caught:
        _est_adapter(est).submit(keyvault_signing_request)
    assert caught.value.reason == "ca_unavailable"
    with pytest.raises(PermanentError) as untrusted:
        _est_adapter(est, ca_bundle_path=None).submit(keyvault_signing_request)
    assert untrusted.value.reason == "ca_tls_untrusted"


def test_poll_refuses_a_foreign_reference(est: FakeEst) -> None:
    """A reference that does not carry a CSR is permanent, reason unknown_reference."""
    with pytest.raises(PermanentError) as caught:
        _est_adapter(est).poll("not-a-reference")
    assert caught.value.reason == "unknown_reference"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": "https://est.example"}, "username"),
        ({"url": "https://est.example", "username": "u"}, "password_setting"),
        ({"url": "http://est.example", "username": "u", "password_setting": "EST_PASSWORD"}, "url"),
        ({"url": "https://e", "username": "u", "password_setting": "EST_PASSWORD", "label": "a/b"}, "label"),
        ({"url": "https://e", "username": "u", "password_setting": "EST_PASSWORD", "reenroll": "yes"}, "reenroll"),
        ({"url": "https://e", "client_pem_setting": "A", "client_pfx_setting": "B"}, "client_pfx_setting"),
    ],
)
def test_bad_options_name_the_profile_and_option(tls: LoopbackTls, options: dict[str, object], named: str) -> None:
    """A malformed profile raises ConfigurationError naming the profile and the option."""
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(CAProfile("appliance-est", "est", options), _environ(tls))
    assert "appliance-est" in caught.value.message
    assert named in caught.value.message


def test_unreadable_client_certificate_names_the_setting(tls: LoopbackTls) -> None:
    """A client certificate setting that is not PEM names that setting, not its value."""
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(CAProfile("e", "est", {"url": "https://e", "client_pem_setting": "BAD"}), {"BAD": "garbage-77"})
    assert caught.value.setting == "BAD"
    assert "garbage-77" not in str(caught.value)


def test_no_secret_reaches_logs_or_errors(
    est: FakeEst, keyvault_signing_request: SigningRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """The Basic password and the client key appear in no log record and no exception message."""
    caplog.set_level(logging.DEBUG)
    _est_adapter(est).submit(keyvault_signing_request)
    est.require_client_certificate = True
    with pytest.raises(PermanentError) as caught:
        _est_adapter(est).submit(keyvault_signing_request)
    key_line = est.tls.client_pem.split("-----BEGIN PRIVATE KEY-----")[1].split()[0]
    for secret in (PASSWORD, key_line, "BEGIN"):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
