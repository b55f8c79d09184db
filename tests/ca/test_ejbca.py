"""The EJBCA REST adapter, against a loopback HTTPS fake of ``pkcs10enroll`` that requires a client certificate."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from devstack.localca import LocalCAFiles
from renewal._shared.http import new_session
from renewal.ca import CAAdapter, CAProfile, Issued, SigningRequest, adapter_for
from renewal.ca.ejbca import EjbcaCA
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.ca.contract import CAAdapterContract
from tests.fakes.ejbca import FakeEjbca
from tests.fakes.est import LoopbackTls

ENROLLMENT_CODE = "ejbca-enrollment-code-never-logged"


def _environ(tls: LoopbackTls) -> dict[str, str]:
    return {
        "EJBCA_CLIENT_PFX": tls.client_pfx_b64,
        "EJBCA_CLIENT_PFX_PASSWORD": tls.client_pfx_password,
        "EJBCA_CLIENT_PEM": tls.client_pem,
        "STRANGER_PEM": tls.stranger_pem,
        "EJBCA_CODE": ENROLLMENT_CODE,
    }


def _options(ejbca: FakeEjbca, **options: object) -> dict[str, object]:
    base: dict[str, object] = {
        "url": ejbca.url,
        "certificate_profile_name": "TLSServer",
        "end_entity_profile_name": "KeyVault",
        "certificate_authority_name": "Corp Issuing CA 1",
        "client_pfx_setting": "EJBCA_CLIENT_PFX",
        "client_pfx_password_setting": "EJBCA_CLIENT_PFX_PASSWORD",
        "ca_bundle_path": str(ejbca.tls.ca_path),
    }
    return {k: v for k, v in {**base, **options}.items() if v is not None}


def _ejbca_adapter(ejbca: FakeEjbca, **options: object) -> CAAdapter:
    return adapter_for(CAProfile("corp-ejbca", "ejbca", _options(ejbca, **options)), _environ(ejbca.tls))


class TestEjbcaContract(CAAdapterContract):
    """EJBCA keeps the contract; pkcs10enroll cannot defer issuance."""

    @pytest.fixture
    def adapter(self, ejbca: FakeEjbca) -> CAAdapter:
        return _ejbca_adapter(ejbca)

    @pytest.fixture
    def rejecting_adapter(self, ejbca: FakeEjbca) -> CAAdapter:
        return _ejbca_adapter(ejbca, certificate_profile_name="NoSuchProfile")

    @pytest.fixture
    def unreachable_adapter(self, ejbca: FakeEjbca) -> CAAdapter:
        ejbca.down = True
        return _ejbca_adapter(ejbca)


def test_enrollment_carries_the_profile_fields_and_the_username(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest
) -> None:
    """The request names the profiles, the CA, include_chain and a username made from the Key Vault names."""
    _ejbca_adapter(ejbca, username_template="kv-{vault}-{certificate}", password_setting="EJBCA_CODE").submit(
        keyvault_signing_request
    )
    assert ejbca.enrollments == [
        {
            "certificate_profile_name": "TLSServer",
            "end_entity_profile_name": "KeyVault",
            "certificate_authority_name": "Corp Issuing CA 1",
            "username": "kv-contract-contract-cert",
            "include_chain": True,
        }
    ]
    assert ejbca.client_subjects == ["renewal-app"]


def test_chain_is_ordered_nearest_issuer_first(ejbca: FakeEjbca, keyvault_signing_request: SigningRequest) -> None:
    """EJBCA's certificate_chain (root first here) comes back issuing CA first."""
    answer = _ejbca_adapter(ejbca).submit(keyvault_signing_request)
    assert isinstance(answer, Issued)
    assert list(answer.chain_pem) == [c.public_bytes(serialization.Encoding.PEM).decode() for c in ejbca.chain]


def test_without_include_chain_the_chain_comes_from_chain_path(
    ejbca: FakeEjbca, ca_files: LocalCAFiles, keyvault_signing_request: SigningRequest
) -> None:
    """With include_chain false, EJBCA sends no chain and the configured chain_path supplies it."""
    answer = _ejbca_adapter(ejbca, include_chain=False, chain_path=str(ca_files.chain_path)).submit(
        keyvault_signing_request
    )
    assert isinstance(answer, Issued)
    assert len(answer.chain_pem) == 2
    assert ejbca.enrollments[0]["include_chain"] is False


def test_pem_client_certificate_works_too(ejbca: FakeEjbca, keyvault_signing_request: SigningRequest) -> None:
    """A PEM client certificate and key from client_pem_setting authenticate like the PKCS#12."""
    adapter = _ejbca_adapter(
        ejbca, client_pfx_setting=None, client_pfx_password_setting=None, client_pem_setting="EJBCA_CLIENT_PEM"
    )
    assert isinstance(adapter.submit(keyvault_signing_request), Issued)


def test_without_client_certificate_the_fake_refuses(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest
) -> None:
    """A connection without a client certificate gets EJBCA's 403: permanent, permission_denied."""
    adapter = EjbcaCA(
        url=ejbca.url,
        certificate_profile_name="TLSServer",
        end_entity_profile_name="KeyVault",
        certificate_authority_name="Corp Issuing CA 1",
        session=new_session(None),
        verify=str(ejbca.tls.ca_path),
    )
    with pytest.raises(PermanentError) as caught:
        adapter.submit(keyvault_signing_request)
    assert caught.value.reason == "permission_denied"
    assert "Not authorized" in caught.value.message


def test_client_certificate_from_another_ca_fails_the_handshake(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest
) -> None:
    """A client certificate the server does not trust fails TLS; nothing is enrolled."""
    adapter = _ejbca_adapter(
        ejbca, client_pfx_setting=None, client_pfx_password_setting=None, client_pem_setting="STRANGER_PEM"
    )
    with pytest.raises(RetryableError):
        adapter.submit(keyvault_signing_request)
    assert ejbca.enrollments == []


def test_unknown_ca_is_permanent(ejbca: FakeEjbca, keyvault_signing_request: SigningRequest) -> None:
    """EJBCA's 404 for an unknown CA is permanent, reason unknown_profile, with EJBCA's message."""
    with pytest.raises(PermanentError) as caught:
        _ejbca_adapter(ejbca, certificate_authority_name="Nope CA").submit(keyvault_signing_request)
    assert caught.value.reason == "unknown_profile"
    assert "doesn't exist" in caught.value.message


def test_outage_is_retryable(ejbca: FakeEjbca, keyvault_signing_request: SigningRequest) -> None:
    """EJBCA's 503 is retryable, reason ca_unavailable."""
    ejbca.down = True
    with pytest.raises(RetryableError) as caught:
        _ejbca_adapter(ejbca).submit(keyvault_signing_request)
    assert caught.value.reason == "ca_unavailable"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"certificate_profile_name": None}, "certificate_profile_name"),
        ({"client_pfx_setting": None, "client_pfx_password_setting": None}, "client_pfx_setting"),
        ({"username_template": "{vault}-{thumbprint}"}, "username_template"),
        ({"include_chain": False}, "chain_path"),
        ({"chain_path": "/nope/chain.pem"}, "chain_path"),
        ({"url": "http://ejbca.corp.example"}, "url"),
    ],
)
def test_bad_options_name_the_profile_and_option(ejbca: FakeEjbca, options: dict[str, object], named: str) -> None:
    """A malformed profile raises ConfigurationError naming the profile and the option."""
    with pytest.raises(ConfigurationError) as caught:
        _ejbca_adapter(ejbca, **options)
    assert "corp-ejbca" in caught.value.message
    assert named in caught.value.message


def test_wrong_pfx_password_names_the_setting(ejbca: FakeEjbca) -> None:
    """A PKCS#12 that does not open names its setting, and shows neither the password nor the data."""
    environ = {**_environ(ejbca.tls), "EJBCA_CLIENT_PFX_PASSWORD": "wrong-pfx-password"}
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(CAProfile("corp-ejbca", "ejbca", _options(ejbca)), environ)
    assert caught.value.setting == "EJBCA_CLIENT_PFX"
    assert "wrong-pfx-password" not in str(caught.value)


def test_client_key_never_stays_on_disk(ejbca: FakeEjbca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client key file used to load the TLS context is gone once the adapter is built."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _ejbca_adapter(ejbca)
    assert list(tmp_path.iterdir()) == []


def test_no_secret_reaches_logs_or_errors(
    ejbca: FakeEjbca, keyvault_signing_request: SigningRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """The enrollment code, the PKCS#12 password and the client key appear in no log record or error."""
    caplog.set_level(logging.DEBUG)
    _ejbca_adapter(ejbca, password_setting="EJBCA_CODE").submit(keyvault_signing_request)
    with pytest.raises(PermanentError) as caught:
        _ejbca_adapter(ejbca, password_setting="EJBCA_CODE", certificate_authority_name="X").submit(
            keyvault_signing_request
        )
    key_line = ejbca.tls.client_pem.split("-----BEGIN PRIVATE KEY-----")[1].split()[0]
    for secret in (ENROLLMENT_CODE, ejbca.tls.client_pfx_password, key_line, "BEGIN"):
        assert secret not in caplog.text
        assert secret not in str(caught.value)
