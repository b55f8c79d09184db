"""Credentials never leave their host: no client that carries a credential or a CSR follows a redirect
(docs/architecture.md §6).

Each CA adapter, the Azure DNS provider and the outcome topic are pointed at a loopback URL that answers 302 or 307
with a ``Location`` on a second loopback server that records everything it gets. Nothing may arrive there, the
error is permanent, and its message names only the target host. ACME's URLs must stay on the directory's host,
and a server certificate that does not verify is permanent too.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import spnego
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from renewal.ca import CAAdapter, CAProfile, SigningRequest, adapter_for
from renewal.ca.vault import VaultPKI
from renewal.dns.azure import AzureDns
from renewal.errors import ConfigurationError, PermanentError, RenewalError
from renewal.flow.runtime import build_runtime
from renewal.settings import Settings
from renewal.shells.keyvault import StaticTokenCredential
from renewal.shells.topic import OutcomeTopic
from tests.fakes.est import LoopbackTls
from tests.fakes.redirecting import (
    LEAK_PATH,
    LEAK_QUERY,
    LEAK_USERINFO,
    AcmeDirectory,
    Answer,
    LoopbackServer,
    Received,
    TlsFiles,
    redirect_to,
    tls_files,
)

TOKEN = "hvs.redirect-token-never-sent"
SECRET_ID = "approle-secret-id-never-sent"
JWT = "eyJ.managed-identity-jwt.never-sent"
PASSWORD = "Passw0rd-never-sent"
ENROLLMENT_CODE = "enrollment-code-never-sent"
CFSSL_KEY = "00112233445566778899aabbccddeeff"
TOPIC_KEY = "topic-access-key-never-sent"
USERNAME = "CORP\\svc-renewal"
SECRETS = (TOKEN, SECRET_ID, JWT, PASSWORD, ENROLLMENT_CODE, CFSSL_KEY, TOPIC_KEY)


@dataclass
class FakeAzureCredential:
    """Stands in for DefaultAzureCredential (the third-party seam that needs a real Azure identity)."""

    token: str

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self.token, 2**31)


@pytest.fixture(scope="module")
def signing_request() -> SigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redirect.devstack.test")]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("redirect.devstack.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return SigningRequest(csr.public_bytes(serialization.Encoding.DER), "kv", "redirect")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files(tmp_path_factory.mktemp("redirect-tls"))


@pytest.fixture(scope="module")
def client_tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    return LoopbackTls.create(tmp_path_factory.mktemp("redirect-client-tls"))


@pytest.fixture
def environ(client_tls: LoopbackTls) -> dict[str, str]:
    return {
        "VAULT_TOKEN": TOKEN,
        "VAULT_SECRET_ID": SECRET_ID,
        "PASSWORD": PASSWORD,
        "EJBCA_CODE": ENROLLMENT_CODE,
        "CLIENT_PEM": client_tls.client_pem,
        "CFSSL_KEY": CFSSL_KEY,
    }


@pytest.fixture
def recorder() -> Iterator[LoopbackServer]:
    """The host a Location names: it answers 200 to anything, and must receive nothing."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture(params=[302, 307])
def status(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def assert_refused(error: RenewalError, recorder: LoopbackServer, reason: str) -> None:
    """Nothing reached the recorder; the error is permanent with ``reason`` and names only the target host."""
    assert recorder.connections == 0
    assert recorder.received == []
    assert isinstance(error, PermanentError)
    assert error.reason == reason
    assert "127.0.0.1" in error.message
    for leak in (LEAK_PATH, LEAK_QUERY, *LEAK_USERINFO.split(":"), str(recorder.port), "://", *SECRETS):
        assert leak not in error.message


def _profile(adapter: str, **options: object) -> CAProfile:
    return CAProfile(f"redirect-{adapter}", adapter, options)


# Each case: how to configure the adapter at a URL with a CA bundle, and whether its redirecting URL is https.
AdapterFactory = Callable[[str, dict[str, str], str], CAAdapter]
ADAPTERS: dict[str, tuple[AdapterFactory, bool]] = {
    "vault-token": (
        lambda url, env, bundle: adapter_for(
            _profile("vault", url=url, role="web", token_setting="VAULT_TOKEN", ca_bundle_path=bundle), env
        ),
        False,
    ),
    "vault-approle": (
        lambda url, env, bundle: adapter_for(
            _profile(
                "vault",
                url=url,
                role="web",
                role_id="role-1234",
                secret_id_setting="VAULT_SECRET_ID",
                ca_bundle_path=bundle,
            ),
            env,
        ),
        False,
    ),
    "vault-azure": (
        lambda url, env, bundle: VaultPKI.from_profile(
            _profile("vault", url=url, role="web", azure_role="renewal-app", ca_bundle_path=bundle),
            env,
            credential=FakeAzureCredential(JWT),
        ),
        False,
    ),
    "ejbca": (
        lambda url, env, bundle: adapter_for(
            _profile(
                "ejbca",
                url=url,
                certificate_profile_name="TLSServer",
                end_entity_profile_name="KeyVault",
                certificate_authority_name="Corp Issuing CA 1",
                password_setting="EJBCA_CODE",
                client_pem_setting="CLIENT_PEM",
                ca_bundle_path=bundle,
            ),
            env,
        ),
        True,
    ),
    "est": (
        lambda url, env, bundle: adapter_for(
            _profile("est", url=url, username="renewal", password_setting="PASSWORD", ca_bundle_path=bundle), env
        ),
        True,
    ),
    "adcs-basic": (
        lambda url, env, bundle: adapter_for(
            _profile(
                "adcs",
                url=url,
                template="WebServer",
                auth="basic",
                username=USERNAME,
                password_setting="PASSWORD",
                ca_bundle_path=bundle,
            ),
            env,
        ),
        False,
    ),
    "cfssl": (
        lambda url, env, bundle: adapter_for(
            _profile("cfssl", url=url, auth_key_setting="CFSSL_KEY", ca_bundle_path=bundle), env
        ),
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(ADAPTERS))
def test_ca_redirect_is_refused_and_nothing_reaches_the_location(
    case: str,
    status: int,
    recorder: LoopbackServer,
    environ: dict[str, str],
    tls: TlsFiles,
    signing_request: SigningRequest,
) -> None:
    """A CA URL answering 302/307 ends permanent (ca_redirect_refused): its credentials and CSR go nowhere else."""
    factory, https = ADAPTERS[case]
    with LoopbackServer(redirect_to(recorder, status), tls=tls.server_context() if https else None) as ca:
        adapter = factory(ca.url, environ, str(tls.ca_path))
        with pytest.raises(PermanentError) as caught:
            adapter.submit(signing_request)
        assert len(ca.received) == 1
    assert_refused(caught.value, recorder, "ca_redirect_refused")


def _ntlm_then(redirect: Callable[[Received], Answer]) -> Callable[[Received], Answer]:
    """certsrv with NTLM: negotiate, challenge, and once the authenticate message checks out, ``redirect``."""
    acceptors: dict[tuple[str, int], Any] = {}

    def answer(request: Received) -> Answer:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.upper() != "NTLM" or not token:
            return Answer(401, {"WWW-Authenticate": "NTLM"})
        # NTLM authenticates the connection: the three legs come on one kept-alive connection (one peer port).
        acceptor = acceptors.get(request.peer)
        message = base64.b64decode(token)
        if acceptor is None:
            acceptor = acceptors[request.peer] = spnego.server(protocol="ntlm")
            return Answer(401, {"WWW-Authenticate": "NTLM " + base64.b64encode(acceptor.step(message) or b"").decode()})
        acceptor.step(message)  # raises unless the NTLMv2 response proves the password
        assert acceptor.complete
        return redirect(request)

    return answer


def test_adcs_ntlm_redirect_after_authenticating_is_refused(
    status: int,
    recorder: LoopbackServer,
    environ: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signing_request: SigningRequest,
) -> None:
    """A redirect answering the NTLM authenticate leg is refused: no NTLM exchange or CSR reaches the Location."""
    domain, _, user = USERNAME.rpartition("\\")
    (tmp_path / "ntlm-users").write_text(f"{domain}:{user}:{PASSWORD}\n")
    # pyspnego's NTLM acceptor reads its credential store from this variable (a third-party seam).
    monkeypatch.setenv("NTLM_USER_FILE", str(tmp_path / "ntlm-users"))
    with LoopbackServer(_ntlm_then(redirect_to(recorder, status))) as certsrv:
        profile = _profile(
            "adcs", url=certsrv.url, template="WebServer", auth="ntlm", username=USERNAME, password_setting="PASSWORD"
        )
        with pytest.raises(PermanentError) as caught:
            adapter_for(profile, environ).submit(signing_request)
        assert len(certsrv.received) == 3
    assert_refused(caught.value, recorder, "ca_redirect_refused")


def _acme(directory_url: str, **options: object) -> CAAdapter:
    profile = {
        "directory_url": directory_url,
        "dns_provider": "challtestsrv",
        # The flows here never reach the DNS: the fake's orders have no authorizations.
        "dns_options": {"management_url": "http://127.0.0.1:9"},
        "timeout_seconds": 5,
        **options,
    }
    return adapter_for(_profile("acme", **profile), {})


def test_acme_directory_redirect_is_refused(status: int, recorder: LoopbackServer) -> None:
    """A directory URL answering 302/307 ends permanent (ca_redirect_refused) with nothing sent to the Location."""
    with LoopbackServer(redirect_to(recorder, status)) as server, pytest.raises(PermanentError) as caught:
        _acme(f"{server.url}/directory").poll(f"{server.url}/order/1")
    assert_refused(caught.value, recorder, "ca_redirect_refused")


@pytest.mark.parametrize("path", ["/order/1", "/finalize/1", "/order", "/account"])
def test_acme_order_redirect_is_refused(
    path: str, status: int, recorder: LoopbackServer, signing_request: SigningRequest
) -> None:
    """An account, order or finalize URL answering 302/307 is refused: the JWS (and CSR) never reach the Location."""
    with AcmeDirectory(redirects={path: redirect_to(recorder, status)}) as acme:
        adapter = _acme(acme.directory_url)
        run: Callable[[], object] = (
            (lambda: adapter.poll(f"{acme.url}/order/1"))
            if path == "/order/1"
            else (lambda: adapter.submit(signing_request))
        )
        with pytest.raises(PermanentError) as caught:
            run()
        assert urls_requested(acme)[-1] == ("POST", path)
    assert_refused(caught.value, recorder, "ca_redirect_refused")


def urls_requested(acme: AcmeDirectory) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in acme.server.received]


@pytest.mark.parametrize("entry", ["newNonce", "newOrder", "newAccount", "keyChange", "renewalInfo"])
def test_acme_directory_entry_on_another_host_is_refused_before_any_request(
    entry: str, recorder: LoopbackServer, signing_request: SigningRequest
) -> None:
    """A directory entry on another host is refused (acme_url_refused) before anything is sent to that host."""
    # "localhost" and "127.0.0.1" are different host names, though both reach this machine.
    elsewhere = f"http://localhost:{recorder.port}/{entry}"
    with AcmeDirectory(entries={entry: elsewhere}) as acme:
        with pytest.raises(PermanentError) as caught:
            _acme(acme.directory_url).submit(signing_request)
        assert urls_requested(acme) == [("GET", "/directory")]
    assert recorder.connections == 0
    assert caught.value.reason == "acme_url_refused"
    assert "localhost" in caught.value.message
    assert str(recorder.port) not in caught.value.message


def test_acme_plain_http_url_from_an_https_directory_is_refused(
    tls: TlsFiles, recorder: LoopbackServer, signing_request: SigningRequest
) -> None:
    """An https directory handing out a plain http newNonce (even on its own host) is refused before using it."""
    with AcmeDirectory(
        entries={"newNonce": f"http://127.0.0.1:{recorder.port}/nonce"}, tls=tls.server_context()
    ) as acme:
        with pytest.raises(PermanentError) as caught:
            _acme(acme.directory_url, ca_bundle_path=str(tls.ca_path)).submit(signing_request)
        assert urls_requested(acme) == [("GET", "/directory")]
    assert recorder.connections == 0
    assert caught.value.reason == "acme_url_refused"
    assert "over http" in caught.value.message


@pytest.mark.parametrize("field", ["finalize", "authorizations", "location"])
def test_acme_order_url_on_another_host_is_refused_before_any_request(
    field: str, recorder: LoopbackServer, signing_request: SigningRequest
) -> None:
    """An order whose finalize, authorization or own URL is on another host is refused before anything goes there."""
    elsewhere = f"http://localhost:{recorder.port}/{field}"

    def order_elsewhere(request: Received) -> Answer:
        order = {
            "status": "ready",
            "identifiers": [],
            "authorizations": [elsewhere] if field == "authorizations" else [],
            "finalize": elsewhere if field == "finalize" else f"{acme.url}/finalize/1",
        }
        location = elsewhere if field == "location" else f"{acme.url}/order/1"
        return Answer.json(201, order, Location=location, **{"Replay-Nonce": "bm9uY2UtMQ"})

    with AcmeDirectory(redirects={"/order": order_elsewhere}) as acme, pytest.raises(PermanentError) as caught:
        _acme(acme.directory_url).submit(signing_request)
    assert recorder.connections == 0
    assert caught.value.reason == "acme_url_refused"
    assert "localhost" in caught.value.message
    assert str(recorder.port) not in caught.value.message


def test_acme_allowed_hosts_admits_a_listed_host(recorder: LoopbackServer, signing_request: SigningRequest) -> None:
    """With allowed_hosts naming it, a newNonce on another host is used; the order then goes on as usual."""
    with (
        AcmeDirectory() as nonces,
        AcmeDirectory(
            entries={"newNonce": f"http://localhost:{nonces.server.port}/nonce"}, rejected_order="rejectedIdentifier"
        ) as acme,
    ):
        with pytest.raises(PermanentError) as caught:
            _acme(acme.directory_url, allowed_hosts=["localhost"]).submit(signing_request)
        assert urls_requested(nonces) == [("HEAD", "/nonce")]
        assert ("POST", "/order") in urls_requested(acme)
    assert caught.value.reason == "acme_rejected_identifier"


@pytest.mark.parametrize("value", ["https://localhost", "localhost:8443", 7, "a/b"])
def test_acme_allowed_hosts_must_be_host_names(value: object) -> None:
    """allowed_hosts takes bare host names: a URL, a port, a path or a non-string is a configuration error."""
    with pytest.raises(ConfigurationError, match="allowed_hosts must be a list of host names"):
        _acme("https://acme.corp.example/directory", allowed_hosts=[value])


class ArmCredential:
    """An ARM TokenCredential handing out one token."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(TOKEN, 2**31)


def test_azure_dns_redirect_is_refused(status: int, recorder: LoopbackServer) -> None:
    """ARM answering 302/307 is permanent (dns_redirect_refused): the token and record set go nowhere else."""
    with LoopbackServer(redirect_to(recorder, status)) as arm:
        provider = AzureDns(
            subscription_id="00000000-0000-0000-0000-000000000001",
            resource_group="dns-rg",
            zone="corp.example",
            credential=ArmCredential(),
            arm_endpoint=arm.url,
        )
        with pytest.raises(PermanentError) as caught:
            provider.set_txt("_acme-challenge.www.corp.example", "value")
        assert len(arm.received) == 1
    assert_refused(caught.value, recorder, "dns_redirect_refused")


def test_topic_redirect_is_not_followed(status: int, tls: TlsFiles, tmp_path: Path) -> None:
    """The outcome topic answering 302/307 is a failed delivery naming only the target host; nothing goes there."""
    with (
        LoopbackServer(tls=tls.server_context()) as elsewhere,
        LoopbackServer(redirect_to(elsewhere, status), tls=tls.server_context()) as topic_server,
    ):
        topic = OutcomeTopic(f"{topic_server.url}/api/events", key=TOPIC_KEY, connection_verify=str(tls.ca_path))
        delivery = topic.publish({"type": "t", "source": "s", "id": "1", "data": {}}, webhook_id="msg_1")
        assert len(topic_server.received) == 1
        assert topic_server.received[0].headers["aeg-sas-key"] == TOPIC_KEY
    assert elsewhere.connections == 0
    assert not delivery.delivered
    assert delivery.status_code == status
    assert delivery.error is not None
    assert "redirecting to 127.0.0.1" in delivery.error
    for leak in (LEAK_PATH, LEAK_QUERY, *LEAK_USERINFO.split(":"), str(elsewhere.port), TOPIC_KEY):
        assert leak not in delivery.error


def test_static_token_is_refused_for_a_topic_off_loopback() -> None:
    """The development static token is never given to a real topic: OutcomeTopic refuses it, naming the setting."""
    with pytest.raises(ConfigurationError) as caught:
        OutcomeTopic("https://t.westeurope-1.eventgrid.azure.net/api/events", credential=StaticTokenCredential("t"))
    assert caught.value.setting == "RENEWAL_OUTCOME_TOPIC_ENDPOINT"


def test_runtime_builds_a_topic_off_loopback_without_the_static_token() -> None:
    """With the static token configured, a topic off loopback is built with DefaultAzureCredential, not the token."""
    settings = Settings.from_environ(
        {
            "RENEWAL_VAULTS": "kv1=https://127.0.0.1:8443",
            "RENEWAL_KEYVAULT_STATIC_TOKEN": "development-token",
            "RENEWAL_OUTCOME_TOPIC_ENDPOINT": "https://t.westeurope-1.eventgrid.azure.net/api/events",
        }
    )
    runtime = build_runtime(settings, journal=object())  # type: ignore[arg-type]
    assert isinstance(runtime.topic, OutcomeTopic)


# TLS: every adapter above, and ACME, against a server whose certificate does not verify.
TLS_CASES = [*sorted(ADAPTERS), "acme"]


@pytest.fixture(scope="module")
def other_names_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return tls_files(tmp_path_factory.mktemp("other-names-tls"), ("ca.corp.example",))


@pytest.mark.parametrize("fault", ["untrusted", "wrong-host-name"])
@pytest.mark.parametrize("case", TLS_CASES)
def test_tls_verification_failure_is_permanent(
    case: str,
    fault: str,
    tls: TlsFiles,
    client_tls: LoopbackTls,
    other_names_tls: TlsFiles,
    environ: dict[str, str],
    signing_request: SigningRequest,
) -> None:
    """A CA certificate the bundle does not trust, or issued for another host name, is permanent ca_tls_untrusted."""
    # untrusted: the server presents a certificate for 127.0.0.1 from a CA the bundle does not hold;
    # wrong host name: the bundle trusts the CA, but the certificate is for ca.corp.example.
    served, bundle = (tls, client_tls.ca_path) if fault == "untrusted" else (other_names_tls, other_names_tls.ca_path)
    with LoopbackServer(tls=served.server_context()) as server:
        if case == "acme":
            adapter = _acme(f"{server.url}/directory", ca_bundle_path=str(bundle))
        else:
            adapter = ADAPTERS[case][0](server.url, environ, str(bundle))
        with pytest.raises(PermanentError) as caught:
            adapter.submit(signing_request)
        assert server.received == []
    assert caught.value.reason == "ca_tls_untrusted"
    assert "127.0.0.1" in caught.value.message
    assert str(server.port) not in caught.value.message
