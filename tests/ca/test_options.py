"""Options as data: ``parse_options`` reads a profile into an adapter's options class, and ``ca_bundle_setting``.

Every error names RENEWAL_CA_PROFILES, the profile and the option; none repeats a value, since a value (even a
setting's name or a path) may be a secret pasted in the wrong place. The ``ca_bundle_setting`` tests run each HTTPS
adapter against a loopback TLS server whose CA only that setting holds.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from renewal.ca import CAProfile, SigningRequest, adapter_for
from renewal.ca._options import Secret, parse_options
from renewal.ca.acme import AcmeOptions
from renewal.ca.est import EstOptions
from renewal.ca.local import LocalOptions
from renewal.ca.vault import VaultOptions
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from tests.fakes.est import LoopbackTls
from tests.fakes.loopback import LoopbackServer, Response

PASTED = "hvs.CAESIJ-pasted-secret-0815"
VAULT = {"url": "https://vault.corp.example", "role": "web", "token_setting": "VAULT_TOKEN"}
ENVIRON = {"VAULT_TOKEN": "token-value-4711"}


def _refusal(options_class: type[object], options: dict[str, object], environ: dict[str, str]) -> str:
    """The message of the ConfigurationError that parsing ``options`` for profile ``corp`` raises."""
    with pytest.raises(ConfigurationError) as caught:
        parse_options(options_class, CAProfile("corp", "vault", options), environ)
    assert caught.value.setting == "RENEWAL_CA_PROFILES"
    assert caught.value.message.startswith("setting RENEWAL_CA_PROFILES: profile 'corp': ")
    return caught.value.message


def test_a_profile_is_read_into_its_options_class_with_secrets_resolved() -> None:
    """Given options become typed fields, absent ones their defaults, and a *_setting option the setting's value."""
    options = parse_options(VaultOptions, CAProfile("corp", "vault", {**VAULT, "timeout": 5}), ENVIRON)
    assert options.url == "https://vault.corp.example"
    assert options.timeout == 5.0
    assert options.mount == "pki"
    assert options.token_setting == Secret("VAULT_TOKEN", "token-value-4711")


def test_a_secret_value_is_never_in_the_options_repr() -> None:
    """The options' repr shows the setting's name, never what it holds."""
    options = parse_options(VaultOptions, CAProfile("corp", "vault", VAULT), ENVIRON)
    assert "VAULT_TOKEN" in repr(options)
    assert "token-value-4711" not in repr(options)


def test_an_unknown_option_is_refused_by_name() -> None:
    """A key the options class does not declare is refused, naming it and the adapter."""
    message = _refusal(VaultOptions, {**VAULT, "tll": "1h"}, ENVIRON)
    assert "unknown option(s) tll for adapter vault" in message


def test_the_common_anchor_options_are_known_to_every_adapter() -> None:
    """trust_anchor_path and trust_anchor_setting are not the adapter's, yet never refused as unknown."""
    profile = CAProfile("corp", "vault", {**VAULT, "trust_anchor_path": "/nowhere.pem", "trust_anchor_setting": "X"})
    assert parse_options(VaultOptions, profile, ENVIRON).role == "web"


@pytest.mark.parametrize(
    ("options_class", "options", "named", "must"),
    [
        (VaultOptions, {**VAULT, "timeout": PASTED}, "timeout", "must be a positive number"),
        (VaultOptions, {**VAULT, "timeout": -3}, "timeout", "must be a positive number"),
        (VaultOptions, {**VAULT, "names_from_csr": PASTED}, "names_from_csr", "must be true or false"),
        (VaultOptions, {**VAULT, "role": [PASTED]}, "role", "must be a non-empty string"),
        (VaultOptions, {**VAULT, "url": f"https://{PASTED}@vault.example"}, "url", "must be an https URL"),
        (VaultOptions, {**VAULT, "token_setting": 7}, "token_setting", "must be the name of an app setting"),
        (VaultOptions, {**VAULT, "ca_bundle_path": f"/{PASTED}.pem"}, "ca_bundle_path", "must be the path of a"),
        (LocalOptions, {"ca_pfx_setting": "P", "validity_days": 1.5}, "validity_days", "must be a whole number"),
        (LocalOptions, {"ca_pfx_setting": "P", "approval": PASTED}, "approval", "must be 'auto' or 'manual'"),
        (AcmeOptions, {"directory_url": "https://a", "dns_provider": "x", "allowed_hosts": [PASTED + "/"]},
         "allowed_hosts", "must be a list of host names"),
        (AcmeOptions, {"directory_url": "https://a", "dns_provider": "x", "dns_options": PASTED},
         "dns_options", "must be a JSON object"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_type_names_the_option_and_never_the_value(
    options_class: type[object], options: dict[str, object], named: str, must: str
) -> None:
    """A value the option's type or check refuses names the option and what it must be, never the value."""
    message = _refusal(options_class, options, {"P": "unused"})
    assert f"option {named} {must}" in message
    assert PASTED not in message
    assert PASTED[:12] not in message


def test_a_missing_required_option_is_named() -> None:
    """An option without a default that the profile leaves out is named as required."""
    assert "option role is required" in _refusal(VaultOptions, {"url": "https://v", "token_setting": "T"}, {"T": "t"})


def test_json_null_counts_as_absent() -> None:
    """An option given as null gets its default, and a required one given as null is missing."""
    options = parse_options(VaultOptions, CAProfile("corp", "vault", {**VAULT, "mount": None}), ENVIRON)
    assert options.mount == "pki"
    assert "option role is required" in _refusal(VaultOptions, {**VAULT, "role": None}, ENVIRON)


def test_a_missing_secret_setting_names_the_option_and_never_the_setting() -> None:
    """A *_setting option naming an app setting that is not there names the option, not the name it holds."""
    message = _refusal(VaultOptions, {**VAULT, "token_setting": PASTED}, {})
    assert "option token_setting names an app setting that is missing or empty" in message
    assert PASTED not in message


def test_conditions_between_options_come_before_missing_secret_settings() -> None:
    """Two client certificates, neither of whose settings exists, are refused for being two."""
    options = {"url": "https://est.example", "client_pfx_setting": "A", "client_pem_setting": "B"}
    assert "give client_pfx_setting or client_pem_setting, not both" in _refusal(EstOptions, options, {})


def test_an_int_is_read_as_a_number_and_host_names_as_lower_case() -> None:
    """Seconds given as a whole number become a float; allowed_hosts are kept lower-cased."""
    profile = CAProfile(
        "corp", "acme", {"directory_url": "https://a", "dns_provider": "x", "allowed_hosts": ["CA.Corp.Example"]}
    )
    options = parse_options(AcmeOptions, profile, {})
    assert options.allowed_hosts == ("ca.corp.example",)
    assert isinstance(options.poll_timeout_seconds, float)


def test_dns_options_errors_name_the_profile_and_the_provider() -> None:
    """A bad azure dns_options key is refused by the same parser, naming the profile, the provider and the option."""
    dns_options = {"subscription_id": "s", "resource_group": "g", "zone": "z", "ttl_seconds": 0}
    profile = CAProfile("corp-acme", "acme", {"directory_url": "https://a", "dns_provider": "azure",
                                              "dns_options": dns_options})  # fmt: skip
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(profile, {})
    assert caught.value.setting == "RENEWAL_CA_PROFILES"
    assert "profile 'corp-acme': dns_options (azure): option ttl_seconds must be a whole number" in caught.value.message


# --- ca_bundle_setting ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    return LoopbackTls.create(tmp_path_factory.mktemp("bundle-tls"))


@pytest.fixture
def unavailable(tls: LoopbackTls) -> Iterator[LoopbackServer]:
    """An HTTPS server whose certificate chains to ``tls``' CA only, answering 503 to everything."""
    with LoopbackServer(lambda request: Response(503), tls=tls.server_context(client_certificates="none")) as server:
        yield server


def _environ(tls: LoopbackTls) -> dict[str, str]:
    # The bundle as a one-line app setting, with literal "\n" escapes.
    one_line = tls.ca_path.read_text().replace("\n", "\\n")
    return {"TLS_CA": one_line, "PASSWORD": "p", "CLIENT_PEM": tls.client_pem, "CFSSL_KEY": "00ff", "VAULT_TOKEN": "t"}


def _https_adapter(adapter: str, url: str, **bundle: str) -> CAProfile:
    options: dict[str, dict[str, object]] = {
        "acme": {"directory_url": f"{url}/directory", "dns_provider": "challtestsrv",
                 "dns_options": {"management_url": "http://127.0.0.1:9"}},
        "cfssl": {"url": url, "auth_key_setting": "CFSSL_KEY"},
        "vault": {"url": url, "role": "web", "token_setting": "VAULT_TOKEN"},
        "ejbca": {"url": url, "certificate_profile_name": "p", "end_entity_profile_name": "e",
                  "certificate_authority_name": "c", "client_pem_setting": "CLIENT_PEM"},
        "adcs": {"url": url, "template": "WebServer", "auth": "basic", "username": "u", "password_setting": "PASSWORD"},
        "est": {"url": url, "username": "u", "password_setting": "PASSWORD"},
    }  # fmt: skip
    return CAProfile(f"corp-{adapter}", adapter, {**options[adapter], **bundle})


HTTPS_ADAPTERS = ("acme", "adcs", "cfssl", "ejbca", "est", "vault")


@pytest.mark.parametrize("adapter", HTTPS_ADAPTERS)
def test_ca_bundle_setting_makes_the_adapter_trust_the_servers_ca(
    adapter: str, tls: LoopbackTls, unavailable: LoopbackServer, keyvault_signing_request: SigningRequest
) -> None:
    """With the CA's PEM in ca_bundle_setting (one line, "\\n" escaped) the handshake passes: 503 is retryable."""
    built = adapter_for(_https_adapter(adapter, unavailable.url, ca_bundle_setting="TLS_CA"), _environ(tls))
    with pytest.raises(RetryableError):
        built.submit(keyvault_signing_request)
    assert unavailable.requests


@pytest.mark.parametrize("adapter", HTTPS_ADAPTERS)
def test_without_the_bundle_the_same_server_is_untrusted(
    adapter: str, tls: LoopbackTls, unavailable: LoopbackServer, keyvault_signing_request: SigningRequest
) -> None:
    """The same adapter with the system trust refuses the server (ca_tls_untrusted) and sends it nothing."""
    built = adapter_for(_https_adapter(adapter, unavailable.url), _environ(tls))
    with pytest.raises(PermanentError) as caught:
        built.submit(keyvault_signing_request)
    assert caught.value.reason == "ca_tls_untrusted"
    assert unavailable.requests == []


def test_ca_bundle_path_and_ca_bundle_setting_together_are_refused(tls: LoopbackTls) -> None:
    """Giving the bundle both as a file and as a setting is a configuration error naming both options."""
    profile = _https_adapter("vault", "https://v", ca_bundle_path=str(tls.ca_path), ca_bundle_setting="TLS_CA")
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(profile, _environ(tls))
    assert caught.value.setting == "RENEWAL_CA_PROFILES"
    assert "give ca_bundle_path or ca_bundle_setting, not both" in caught.value.message


def test_ca_bundle_setting_without_certificates_is_refused_without_its_content(tls: LoopbackTls) -> None:
    """A bundle setting holding no PEM certificate names the option, never what the setting holds."""
    profile = _https_adapter("est", "https://e", ca_bundle_setting="TLS_CA")
    with pytest.raises(ConfigurationError) as caught:
        adapter_for(profile, {**_environ(tls), "TLS_CA": PASTED})
    assert "option ca_bundle_setting must be the name of an app setting holding PEM certificates" in str(caught.value)
    assert PASTED not in str(caught.value)
    assert "TLS_CA" not in str(caught.value)


def test_the_bundle_file_is_private_and_holds_only_the_certificates(
    tls: LoopbackTls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setting's certificates go to a 0600 file in a 0700 directory; a key pasted beside them does not."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    key = tls.client_pem[tls.client_pem.index("-----BEGIN PRIVATE KEY-----") :]
    environ = {**_environ(tls), "TLS_CA": tls.ca_path.read_text() + key}
    adapter_for(_https_adapter("est", "https://e", ca_bundle_setting="TLS_CA"), environ)
    (directory,) = tmp_path.iterdir()
    (bundle,) = directory.iterdir()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o600
    assert bundle.read_text() == tls.ca_path.read_text()
    assert "PRIVATE KEY" not in bundle.read_text()
