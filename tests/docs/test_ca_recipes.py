"""The CA recipes in docs/ca/: each page's profile is what its adapter reads, and reaches a CA on loopback.

A page's profile is a fenced ``json`` block whose every value is an object with an ``adapter`` (a
``RENEWAL_CA_PROFILES`` value); other JSON blocks (CFSSL's configuration) are not profiles. Against a CA only the
URL is replaced (and, for ACME, the DNS provider: Pebble validates against pebble-challtestsrv, not Azure DNS);
every other option stays as the page writes it, and the app settings it names hold the test CA's credentials.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.localca import LocalCAFiles, create_local_ca
from renewal.ca import CAAdapter, CAProfile, Issued, SigningRequest, adapter_for
from renewal.ca._options import COMMON_OPTIONS, parse_option_object, parse_options
from renewal.ca.acme import AcmeOptions
from renewal.ca.adcs import AdcsOptions
from renewal.ca.cfssl import CfsslOptions
from renewal.ca.ejbca import EjbcaOptions
from renewal.ca.est import EstOptions
from renewal.ca.local import LocalCA
from renewal.ca.vault import VaultOptions, VaultPKI
from renewal.dns import dns_provider_for
from renewal.dns.azure import AzureDnsOptions
from renewal.errors import ConfigurationError, PermanentError
from renewal.pure.verify import verify_issued
from renewal.settings import Settings
from tests.ca.servers import _running, challtestsrv, free_port, pebble_server, require_binary, server_tls
from tests.fakes import adcs, ejbca, est, vault_pki
from tests.fakes.est import LoopbackTls

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "ca"
OPTIONS: dict[str, type[Any]] = {
    "acme": AcmeOptions,
    "adcs": AdcsOptions,
    "cfssl": CfsslOptions,
    "ejbca": EjbcaOptions,
    "est": EstOptions,
    "vault": VaultOptions,
}
URL_OPTION = {"acme": "directory_url"}
NAMES = ("api.corp.example", "www.corp.example")
SERVER_AND_CLIENT_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH.dotted_string, ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string)
PASSWORD = "recipe-password-never-shown-5150"
_FENCED = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Example:
    """A profile a recipe page gives.

    Attributes:
        name: the profile's name.
        adapter: the adapter it names.
        options: the profile's options, ``adapter`` left out.
        text: the ``RENEWAL_CA_PROFILES`` value, as the page writes it.
    """

    name: str
    adapter: str
    options: dict[str, Any]
    text: str

    def profile(self, **replaced: object) -> CAProfile:
        """The profile, with ``replaced`` options instead of the page's."""
        return CAProfile(self.name, self.adapter, {**self.options, **replaced})

    def settings_named(self) -> dict[str, str]:
        """Option → the app setting it names, for every ``*_setting`` option."""
        return {key: value for key, value in self.options.items() if key.endswith("_setting")}


def page(adapter: str) -> str:
    return (RECIPES / f"{adapter}.md").read_text(encoding="utf-8")


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks in ``language``."""
    return [body for found, body in _FENCED.findall(text) if found == language]


def examples(adapter: str) -> list[Example]:
    """Every profile the page of ``adapter`` gives: each ``json`` block that is a ``RENEWAL_CA_PROFILES`` value."""
    found = []
    for body in fenced(page(adapter), "json"):
        value = json.loads(body)
        if value and all(isinstance(spec, dict) and "adapter" in spec for spec in value.values()):
            assert len(value) == 1, f"docs/ca/{adapter}.md: a profile block holds one profile"
            ((name, spec),) = value.items()
            found.append(Example(name, spec["adapter"], {k: v for k, v in spec.items() if k != "adapter"}, body))
    return found


def the_example(adapter: str) -> Example:
    return examples(adapter)[0]


def checked(adapter: CAAdapter, *secret_values: str) -> str:
    """What the adapter's ``check()`` answers (what ``renewal check`` prints); fails, never skips, without one."""
    check = getattr(adapter, "check", None)
    if check is None:
        pytest.fail(
            f"{type(adapter).__name__} has no check() yet: the recipe's profile was built against its CA on "
            "loopback, but `renewal check` has nothing to call (issue 14 §2: check(self) -> str)"
        )
    answer = check()
    assert isinstance(answer, str)
    assert answer.strip(), "check() answered nothing"
    for value in secret_values:
        assert value not in answer, "check() shows a secret"
    return answer


def _csr(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, names: tuple[str, ...]) -> bytes:
    """A CSR shaped like Key Vault's: CN the first SAN, DNS SANs, no other attribute."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    )
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def signing_request(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None, names: tuple[str, ...] = NAMES
) -> SigningRequest:
    """What the flow hands an adapter for a 3-month policy with Key Vault's default EKUs."""
    return SigningRequest(
        csr_der=_csr(key or ec.generate_private_key(ec.SECP256R1()), names),
        vault_name="kv-app1",
        certificate_name="api-corp",
        validity_months=3,
        key_usage=("digitalSignature", "keyEncipherment"),
        ekus=SERVER_AND_CLIENT_AUTH,
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    return LoopbackTls.create(tmp_path_factory.mktemp("recipes-tls"))


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("recipes-ca"))


@pytest.fixture(scope="module")
def signing(ca_files: LocalCAFiles) -> tuple[LocalCA, tuple[x509.Certificate, ...]]:
    """A CA for the fakes to sign with, and its chain (intermediate, root)."""
    key = serialization.load_pem_private_key(ca_files.issuing_key_path.read_bytes(), None)
    chain = tuple(x509.load_pem_x509_certificates(ca_files.chain_path.read_bytes()))
    return LocalCA(ca_certificate=chain[0], ca_key=key, chain=chain), chain  # type: ignore[arg-type]


def placeholder_environ(example: Example, tls: LoopbackTls) -> dict[str, str]:
    """Every setting the profile names, holding something of the right shape (a CA bundle holds certificates)."""
    pem = tls.ca_path.read_text()
    return {
        setting: pem if option == "ca_bundle_setting" else f"value-of-{setting.lower()}"
        for option, setting in example.settings_named().items()
    }


# The page and its profiles.


def test_the_index_links_every_recipe() -> None:
    """docs/ca/README.md links the page of every adapter that has one."""
    index = (RECIPES / "README.md").read_text(encoding="utf-8")
    for adapter in OPTIONS:
        assert f"]({adapter}.md)" in index, adapter


@pytest.mark.parametrize("adapter", sorted(OPTIONS))
def test_each_page_gives_a_profile_for_its_adapter(adapter: str) -> None:
    """Each page has at least one RENEWAL_CA_PROFILES block, and every one names the page's adapter."""
    found = examples(adapter)
    assert found, f"docs/ca/{adapter}.md has no profile block"
    assert {example.adapter for example in found} == {adapter}


@pytest.mark.parametrize("adapter", sorted(OPTIONS))
def test_the_profile_is_a_valid_app_setting(adapter: str, tls: LoopbackTls) -> None:
    """The block, pasted as RENEWAL_CA_PROFILES (and named the default), is read by the app's settings parser."""
    for example in examples(adapter):
        environ = {
            "RENEWAL_VAULTS": "kv-app1",
            "RENEWAL_CA_PROFILES": example.text,
            "RENEWAL_DEFAULT_CA_PROFILE": example.name,
            **placeholder_environ(example, tls),
        }
        settings = Settings.from_environ(environ)
        profile = settings.ca_profiles[example.name]
        assert profile.adapter == adapter
        assert dict(profile.options) == example.options


@pytest.mark.parametrize("adapter", sorted(OPTIONS))
def test_every_option_in_the_profile_is_one_the_adapter_reads(adapter: str, tls: LoopbackTls) -> None:
    """Each option is a field of the adapter's options class (or a common one), and the adapter's parser takes them."""
    declared = {option.name for option in fields(OPTIONS[adapter])} | COMMON_OPTIONS
    for example in examples(adapter):
        assert sorted(set(example.options) - declared) == []
        parse_options(OPTIONS[adapter], example.profile(), placeholder_environ(example, tls))


@pytest.mark.parametrize("adapter", sorted(OPTIONS))
def test_a_misspelt_option_is_refused_by_name(adapter: str, tls: LoopbackTls) -> None:
    """The parser is strict: the profile with one option misspelt does not build, and the error names the option."""
    example = the_example(adapter)
    url_option = URL_OPTION.get(adapter, "url")
    options = {k: v for k, v in example.options.items() if k != url_option} | {f"{url_option}s": "https://x.example"}
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(CAProfile(example.name, adapter, options), placeholder_environ(example, tls))
    assert caught.value.setting == "RENEWAL_CA_PROFILES"
    assert f"unknown option(s) {url_option}s" in caught.value.message


def test_the_acme_profiles_dns_options_are_the_azure_providers() -> None:
    """ACME's dns_options are Azure DNS's options, and the provider builds from them (no request is made)."""
    dns_options = the_example("acme").options["dns_options"]
    assert the_example("acme").options["dns_provider"] == "azure"
    assert set(dns_options) <= {option.name for option in fields(AzureDnsOptions)}
    parse_option_object(AzureDnsOptions, dns_options, {}, where="dns_options")
    dns_provider_for("azure", dns_options, {})


# Each page's server-side recipe says what the profile says.


def policies(text: str) -> list[dict[str, set[str]]]:
    """Each ``hcl`` block of a page as path → capabilities."""
    rule = re.compile(r'path "([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}')
    return [
        {path: set(re.findall(r'"([^"]+)"', capabilities)) for path, capabilities in rule.findall(block)}
        for block in fenced(text, "hcl")
    ]


def test_the_vault_policy_grants_the_profiles_sign_path_and_nothing_broader() -> None:
    """The policy grants update on {mount}/sign/{role} and read on the token's own lookup; revocation adds revoke."""
    mount, role = the_example("vault").options["mount"], the_example("vault").options["role"]
    base, revocation = policies(page("vault"))
    assert base == {f"{mount}/sign/{role}": {"update"}, "auth/token/lookup-self": {"read"}}
    assert revocation == {f"{mount}/revoke": {"update"}}


def test_the_vault_role_is_the_profiles_and_takes_the_names_from_the_csr() -> None:
    """The recipe writes the profile's role on the profile's mount, with the CSR's names and any key type."""
    example = the_example("vault")
    commands = "\n".join(fenced(page("vault"), "sh")).replace("\\\n", " ")
    (role,) = re.findall(rf"vault write {example.options['mount']}/roles/{example.options['role']} ([^\n]+)", commands)
    for setting in ("use_csr_common_name=true", "use_csr_sans=true", "key_type=any", "code_signing_flag=false"):
        assert setting in role.split()
    assert f"ttl={example.options['ttl']}" in role.split()


def test_the_adcs_and_ejbca_recipes_name_what_their_profiles_name() -> None:
    """The template, and EJBCA's profiles and CA, are set up under the names the profiles give."""
    assert f"Add-CATemplate -Name {the_example('adcs').options['template']}" in page("adcs")
    ejbca_page, options = page("ejbca"), the_example("ejbca").options
    for name in ("certificate_profile_name", "end_entity_profile_name", "certificate_authority_name"):
        assert f"`{options[name]}`" in ejbca_page.split("## Setting up EJBCA for it")[1], name


# Each profile against a CA on loopback.


@pytest.fixture
def vault(signing: tuple[LocalCA, tuple[x509.Certificate, ...]]) -> Iterator[vault_pki.FakeVault]:
    """Vault with the mount, role, AppRole role id and Azure auth role the page's profiles name."""
    options = the_example("vault").options
    (azure_role,) = {example.options["azure_role"] for example in examples("vault") if "azure_role" in example.options}
    fake = vault_pki.FakeVault(
        signing[0],
        mount=str(options["mount"]),
        roles={str(options["role"]): None},
        approle=(str(options["role_id"]), PASSWORD),
        azure=(str(azure_role), "eyJ.managed-identity-token"),
    )
    with vault_pki.running(fake):
        yield fake


@dataclass
class _ManagedIdentity:
    """Stands in for DefaultAzureCredential: the third-party seam that needs a real Azure identity."""

    @dataclass(frozen=True)
    class AccessToken:
        token: str
        expires_on: int

    def get_token(self, *scopes: str) -> _ManagedIdentity.AccessToken:
        assert scopes == ("https://management.azure.com/.default",)
        return self.AccessToken("eyJ.managed-identity-token", 2**31)


def test_the_vault_profiles_sign_and_check_against_vault(vault: vault_pki.FakeVault, tls: LoopbackTls) -> None:
    """Both Vault profiles (AppRole, Azure auth) log in, sign at the profile's mount and role, and check."""
    environ = {"VAULT_SECRET_ID": PASSWORD, "VAULT_TLS_CA": tls.ca_path.read_text()}
    sign = f"/v1/{vault.mount}/sign/{the_example('vault').options['role']}"
    for example in examples("vault"):
        adapter = VaultPKI.from_profile(example.profile(url=vault.url), environ, credential=_ManagedIdentity())
        assert isinstance(adapter.submit(signing_request()), Issued)
        checked(adapter, PASSWORD)
    logins = {r.path for r in vault.requests if r.path.startswith("/v1/auth/") and r.path.endswith("/login")}
    assert logins == {"/v1/auth/approle/login", "/v1/auth/azure/login"}
    assert [r.path for r in vault.requests if "/sign/" in r.path] == [sign, sign]


def test_every_vault_call_with_the_token_is_one_the_policy_grants(vault: vault_pki.FakeVault, tls: LoopbackTls) -> None:
    """Signing and check() use the base policy's paths alone; revoking, the revocation block's."""
    base, revocation = policies(page("vault"))
    capability = {"POST": "update", "PUT": "update", "GET": "read", "LIST": "list", "DELETE": "delete"}
    environ = {"VAULT_SECRET_ID": PASSWORD, "VAULT_TLS_CA": tls.ca_path.read_text()}
    adapter = VaultPKI.from_profile(the_example("vault").profile(url=vault.url), environ)
    answer = adapter.submit(signing_request())
    assert isinstance(answer, Issued)
    checked(adapter, PASSWORD)
    revoke = getattr(adapter, "revoke", None)
    if revoke is None:
        pytest.fail("VaultPKI has no revoke() yet (docs/ca/revocation.md): the revocation block cannot be checked")
    before = len(vault.requests)
    revoke(answer.leaf_pem)

    def calls(requests: list[vault_pki.RecordedRequest]) -> set[tuple[str, str]]:
        return {(r.path.removeprefix("/v1/"), capability[r.method]) for r in requests if "x-vault-token" in r.headers}

    renewing, revoking = calls(vault.requests[:before]), calls(vault.requests[before:])
    assert {path for path, _ in renewing} == set(base)
    assert all(need in base[path] for path, need in renewing)
    assert revoking
    assert all(need in revocation.get(path, set()) for path, need in revoking)


def test_the_adcs_profile_enrolls_and_checks_against_certsrv(
    signing: tuple[LocalCA, tuple[x509.Certificate, ...]],
    tls: LoopbackTls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The AD CS profile authenticates as its account (NTLM), enrolls with its template, and checks."""
    options = the_example("adcs").options
    fake = adcs.FakeCertsrv(
        signing[0], signing[1], str(options["username"]), PASSWORD, auth=str(options["auth"]),
        templates={str(options["template"]): "issue"},
    )  # fmt: skip
    # pyspnego's NTLM acceptor reads its credential store from this variable (a third-party seam).
    monkeypatch.setenv("NTLM_USER_FILE", str(fake.ntlm_user_file(tmp_path)))
    environ = {"ADCS_PASSWORD": PASSWORD, "ADCS_TLS_CA": tls.ca_path.read_text()}
    with adcs.running(fake):
        adapter = adapter_for(the_example("adcs").profile(url=fake.url), environ)
        assert isinstance(adapter.submit(signing_request()), Issued)
        assert fake.ntlm_negotiations >= 1
        assert {name.lower() for name in fake.authenticated} == {str(options["username"]).lower()}
        checked(adapter, PASSWORD)


def _passwordless_pfx(tls: LoopbackTls) -> str:
    """The client certificate as a Key Vault certificate's secret holds it: base64 PKCS#12 without a password."""
    data = tls.client_pem.encode()
    key = serialization.load_pem_private_key(data, None)
    certificate = x509.load_pem_x509_certificates(data)[0]
    pfx = pkcs12.serialize_key_and_certificates(b"ejbca-client", key, certificate, None, serialization.NoEncryption())  # type: ignore[arg-type]
    return base64.b64encode(pfx).decode()


def test_the_ejbca_profile_enrolls_and_checks_over_mutual_tls(
    signing: tuple[LocalCA, tuple[x509.Certificate, ...]], tls: LoopbackTls
) -> None:
    """The EJBCA profile presents its client certificate, enrolls with its profiles, CA and username, and checks."""
    options = the_example("ejbca").options
    fake = ejbca.FakeEjbca(
        signing[0], signing[1], tls, ca_name=str(options["certificate_authority_name"]),
        certificate_profiles=frozenset({str(options["certificate_profile_name"])}),
        end_entity_profiles=frozenset({str(options["end_entity_profile_name"])}),
    )  # fmt: skip
    environ = {
        "EJBCA_CLIENT_PFX": _passwordless_pfx(tls),
        "EJBCA_ENROLLMENT_CODE": PASSWORD,
        "EJBCA_TLS_CA": tls.ca_path.read_text(),
    }
    with ejbca.running(fake):
        adapter = adapter_for(the_example("ejbca").profile(url=fake.url), environ)
        assert isinstance(adapter.submit(signing_request()), Issued)
        assert fake.client_subjects == ["renewal-app"]
        assert fake.enrollments[0]["username"] == "keyvault-kv-app1-api-corp"
        checked(adapter, PASSWORD)


def test_the_est_profile_enrolls_and_checks_at_its_label(
    signing: tuple[LocalCA, tuple[x509.Certificate, ...]], tls: LoopbackTls
) -> None:
    """The EST profile authenticates with HTTP Basic, enrolls at its label, fetches /cacerts, and checks."""
    options = the_example("est").options
    fake = est.FakeEst(
        signing[0], signing[1], tls, basic=(str(options["username"]), PASSWORD),
        labels=frozenset({str(options["label"])}),
    )  # fmt: skip
    environ = {"EST_PASSWORD": PASSWORD, "EST_TLS_CA": tls.ca_path.read_text()}
    with est.running(fake):
        adapter = adapter_for(the_example("est").profile(url=fake.url), environ)
        assert isinstance(adapter.submit(signing_request()), Issued)
        label = options["label"]
        assert fake.paths[:2] == [f"/.well-known/est/{label}/simpleenroll", f"/.well-known/est/{label}/cacerts"]
        checked(adapter, PASSWORD)


@dataclass(frozen=True, slots=True)
class _Cfssl:
    url: str
    auth_key_hex: str
    ca: LocalCAFiles
    tls_ca_pem: str


@pytest.fixture(scope="module")
def cfssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Cfssl]:
    """A real ``cfssl serve`` over HTTPS with the configuration docs/ca/cfssl.md gives, and a fresh auth key."""
    binary = require_binary("cfssl")
    directory = tmp_path_factory.mktemp("recipes-cfssl")
    (config,) = (json.loads(body) for body in fenced(page("cfssl"), "json") if "signing" in json.loads(body))
    key = secrets.token_hex(16)
    for entry in config["auth_keys"].values():
        entry["key"] = key
    (directory / "config.json").write_text(json.dumps(config))
    ca = create_local_ca(directory / "ca", common_name="Recipe CFSSL Root")
    server = server_tls(directory / "tls")
    port = free_port()
    command = [
        binary, "serve", "-address", "127.0.0.1", "-port", str(port),
        "-ca", str(ca.issuing_cert_path), "-ca-key", str(ca.issuing_key_path),
        "-config", str(directory / "config.json"),
        "-tls-cert", str(server.cert_path), "-tls-key", str(server.key_path), "-loglevel", "2",
    ]  # fmt: skip
    with _running(command, [port], directory / "cfssl.log"):
        yield _Cfssl(f"https://127.0.0.1:{port}", key, ca, server.ca_path.read_text())


def _cfssl_environ(cfssl: _Cfssl) -> dict[str, str]:
    return {"CFSSL_AUTH_KEY": cfssl.auth_key_hex, "CFSSL_TLS_CA": cfssl.tls_ca_pem}


@pytest.mark.parametrize("key_type", ["RSA-2048", "RSA-4096", "EC-P-256", "EC-P-521"])
def test_the_cfssl_recipe_signs_what_the_verifier_accepts(cfssl: _Cfssl, key_type: str) -> None:
    """cfssl, configured as the page says, signs a Key Vault-shaped CSR into a leaf the app would merge."""
    curves = {"P-256": ec.SECP256R1(), "P-521": ec.SECP521R1()}
    kind, _, size = key_type.partition("-")
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=int(size))
        if kind == "RSA"
        else ec.generate_private_key(curves[size])
    )
    request = signing_request(key)
    answer = adapter_for(the_example("cfssl").profile(url=cfssl.url), _cfssl_environ(cfssl)).submit(request)
    assert isinstance(answer, Issued)
    root = x509.load_pem_x509_certificate(cfssl.ca.root_path.read_bytes())
    # The real cfssl stamps its own clock on the leaf: verify as of a minute into the leaf's validity.
    issued = x509.load_pem_x509_certificate(answer.leaf_pem.encode("ascii"))
    verify_issued(
        request.csr_der, answer, now=issued.not_valid_before_utc + timedelta(minutes=1),
        validity_months=request.validity_months, ekus=request.ekus, anchors=(root,),
    )  # fmt: skip


def test_the_cfssl_recipe_refuses_names_outside_its_whitelist_and_unkeyed_signing(cfssl: _Cfssl) -> None:
    """The page's name_whitelist refuses other domains (permanent), and without the auth key nothing is signed."""
    request = signing_request()
    with pytest.raises(PermanentError) as caught:
        adapter_for(the_example("cfssl").profile(url=cfssl.url), _cfssl_environ(cfssl)).submit(
            signing_request(names=("api.other.example",))
        )
    assert caught.value.reason == "cfssl_policy_violation"
    unkeyed = {k: v for k, v in the_example("cfssl").options.items() if k != "auth_key_setting"}
    with pytest.raises(PermanentError):
        adapter_for(CAProfile("corp-cfssl", "cfssl", unkeyed | {"url": cfssl.url}), _cfssl_environ(cfssl)).submit(
            request
        )


def test_the_cfssl_profile_checks_against_cfssl(cfssl: _Cfssl) -> None:
    """The CFSSL profile's check() reaches cfssl serve."""
    adapter = adapter_for(the_example("cfssl").profile(url=cfssl.url), _cfssl_environ(cfssl))
    checked(adapter, cfssl.auth_key_hex)


def test_the_acme_profile_orders_and_checks_against_pebble(tmp_path: Path) -> None:
    """The ACME profile registers with its EAB key at a Pebble that requires one, orders through dns-01, and checks."""
    example = the_example("acme")
    hmac_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    account_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with (
        challtestsrv(tmp_path) as dns,
        pebble_server(
            tmp_path / "pebble", dns, eab_required=True, eab_keys={str(example.options["eab_kid"]): hmac_key},
            validity_seconds=60 * 24 * 3600,
        ) as pebble,
    ):  # fmt: skip
        environ: Mapping[str, str] = {
            "ACME_ACCOUNT_KEY": account_key.decode(),
            "ACME_EAB_HMAC": hmac_key,
            "ACME_TLS_CA": pebble.tls_ca_path.read_text(),
        }
        profile = example.profile(
            directory_url=pebble.directory_url,
            dns_provider="challtestsrv",
            dns_options={"management_url": dns.management_url},
            propagation_seconds=0,
        )
        adapter = adapter_for(profile, environ)
        assert isinstance(adapter.submit(signing_request()), Issued)
        checked(adapter, hmac_key)
