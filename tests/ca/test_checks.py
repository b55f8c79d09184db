"""``check()`` on the adapters whose CA cannot revoke (EST, AD CS web enrollment, the local CA), and the refusal of
``revoke_superseded`` for them: a configuration error in plain words, never a pretended revocation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.localca import LocalCAFiles, create_local_ca
from renewal.ca import CAProfile, HealthChecked, RevokingCAAdapter, adapter_for
from renewal.ca.local import LocalCA
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.fakes.adcs import FakeCertsrv
from tests.fakes.adcs import running as adcs_running
from tests.fakes.est import FakeEst, LoopbackTls
from tests.fakes.est import running as est_running

PASSWORD = "check-password-never-logged-42"


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("check-ca"))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    return LoopbackTls.create(tmp_path_factory.mktemp("check-tls"))


def signing(ca_files: LocalCAFiles) -> tuple[LocalCA, tuple[x509.Certificate, ...]]:
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    chain = tuple(x509.load_pem_x509_certificates(ca_files.chain_path.read_bytes()))
    return LocalCA(ca_certificate=chain[0], ca_key=key, chain=chain), chain  # type: ignore[arg-type]


@pytest.fixture
def est(ca_files: LocalCAFiles, tls: LoopbackTls) -> Iterator[FakeEst]:
    ca, chain = signing(ca_files)
    with est_running(FakeEst(ca, chain, tls, basic=("renewal", PASSWORD))) as fake:
        yield fake


@pytest.fixture
def certsrv(ca_files: LocalCAFiles) -> Iterator[FakeCertsrv]:
    ca, chain = signing(ca_files)
    with adcs_running(FakeCertsrv(ca, chain, "CORP\\svc", PASSWORD, auth="basic")) as fake:
        yield fake


def est_profile(est: FakeEst, **extra: object) -> CAProfile:
    options = {"url": est.url, "ca_bundle_path": str(est.tls.ca_path), "username": "renewal"}
    return CAProfile("appliance-est", "est", {**options, "password_setting": "PASSWORD", **extra})


def adcs_profile(certsrv: FakeCertsrv, **extra: object) -> CAProfile:
    options = {"url": certsrv.url, "template": "WebServer", "auth": "basic", "username": "CORP\\svc"}
    return CAProfile("corp-adcs", "adcs", {**options, "password_setting": "PASSWORD", **extra})


def local_profile(ca_files: LocalCAFiles, **extra: object) -> CAProfile:
    options = {k: v for k, v in ca_files.profile_options().items() if k != "adapter"}
    return CAProfile("corp", "local", {**options, **extra})


def test_est_check_fetches_the_ca_certificates(est: FakeEst) -> None:
    """GET .../cacerts: the line counts the CA certificates; nothing is enrolled."""
    adapter = adapter_for(est_profile(est), {"PASSWORD": PASSWORD})
    assert isinstance(adapter, HealthChecked)
    assert not isinstance(adapter, RevokingCAAdapter)
    line = adapter.check()
    assert "CA certificate(s)" in line
    assert PASSWORD not in line


def test_est_check_is_retryable_when_the_server_is_down(est: FakeEst) -> None:
    """503: retryable."""
    est.down = True
    adapter = adapter_for(est_profile(est), {"PASSWORD": PASSWORD})
    assert isinstance(adapter, HealthChecked)
    with pytest.raises(RetryableError):
        adapter.check()


def test_adcs_check_opens_the_welcome_page_with_the_credentials(certsrv: FakeCertsrv) -> None:
    """GET /certsrv/ authenticated: the line names the template, never the password."""
    adapter = adapter_for(adcs_profile(certsrv), {"PASSWORD": PASSWORD})
    assert isinstance(adapter, HealthChecked)
    assert not isinstance(adapter, RevokingCAAdapter)
    line = adapter.check()
    assert "WebServer" in line
    assert PASSWORD not in line
    assert certsrv.paths == ["/certsrv/"]


def test_adcs_check_with_a_wrong_password_is_an_auth_failure(certsrv: FakeCertsrv) -> None:
    """401: permanent, auth_failed."""
    adapter = adapter_for(adcs_profile(certsrv), {"PASSWORD": "wrong-password-0"})
    assert isinstance(adapter, HealthChecked)
    with pytest.raises(PermanentError) as caught:
        adapter.check()
    assert caught.value.reason == "auth_failed"


def test_local_check_says_the_ca_loaded_and_until_when(ca_files: LocalCAFiles) -> None:
    """The CA certificate and key loaded: the line names the CA and its expiry."""
    adapter = adapter_for(local_profile(ca_files), {})
    assert isinstance(adapter, HealthChecked)
    assert "valid until" in adapter.check()


def test_local_check_refuses_an_expired_ca(ca_files: LocalCAFiles) -> None:
    """A CA certificate past its validity: permanent, ca_expired."""
    issuing = x509.load_pem_x509_certificate(ca_files.issuing_cert_path.read_bytes())
    later = issuing.not_valid_after_utc + timedelta(days=1)
    adapter = LocalCA.from_profile(local_profile(ca_files), {}, clock=lambda: later)
    with pytest.raises(PermanentError) as caught:
        adapter.check()
    assert caught.value.reason == "ca_expired"


def test_revoke_superseded_is_refused_where_the_ca_cannot_revoke(
    est: FakeEst, certsrv: FakeCertsrv, ca_files: LocalCAFiles
) -> None:
    """EST, AD CS web enrollment and the local CA have no revocation call: opting in is a configuration error
    that says so, naming the option."""
    for profile in (
        est_profile(est, revoke_superseded=True),
        adcs_profile(certsrv, revoke_superseded=True),
        local_profile(ca_files, revoke_superseded=True),
    ):
        with pytest.raises(ConfigurationError, match=r"option revoke_superseded: adapter \w+ cannot revoke"):
            adapter_for(profile, {"PASSWORD": PASSWORD})


def test_every_adapter_accepts_the_retirement_options(ca_files: LocalCAFiles) -> None:
    """retire_grace_hours (and revoke_superseded false) are common options: no adapter calls them unknown."""
    adapter_for(local_profile(ca_files, revoke_superseded=False, retire_grace_hours=12), {})
