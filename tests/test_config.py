"""Config: settings are validated once; every error names the setting and never echoes a secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from renewal.config import Settings, VaultConfig, WebhookEndpoint
from renewal.errors import ConfigurationError

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
PEM_LOOKING = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END PRIVATE KEY-----"
BASE = {
    "RENEWAL_VAULTS": "kv1",
    "RENEWAL_CA_PROFILES": json.dumps({"corp": {"adapter": "local", "ca_key_setting": "CORP_CA_KEY"}}),
    "CORP_CA_KEY": PEM_LOOKING,
    "RENEWAL_WEBHOOKS": json.dumps({"deploy": {"url": "https://hooks.example/x", "secret_setting": "HOOK_SECRET"}}),
    "HOOK_SECRET": SECRET,
}


def env(**changes: str | None) -> dict[str, str]:
    result = dict(BASE)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def test_full_settings_are_read() -> None:
    """A complete environment yields vaults, profiles, default, webhooks and the dev-only settings."""
    settings = Settings.from_environ(
        env(
            RENEWAL_VAULTS=" kv1 , Lab-KV=https://127.0.0.1:8443/ ",
            RENEWAL_DEFAULT_CA_PROFILE="corp",
            RENEWAL_WEBHOOKS=json.dumps(
                {"deploy": {"url": "http://127.0.0.1:9000/hook", "secret_setting": "HOOK_SECRET", "tag": "env = prod"}}
            ),
        )
    )
    assert dict(settings.vaults) == {
        "kv1": VaultConfig("kv1", "https://kv1.vault.azure.net"),
        "lab-kv": VaultConfig("Lab-KV", "https://127.0.0.1:8443"),
    }
    assert settings.ca_profiles["corp"].adapter == "local"
    assert settings.ca_profiles["corp"].options == {"ca_key_setting": "CORP_CA_KEY"}
    assert settings.default_ca_profile == "corp"
    assert settings.webhooks == (WebhookEndpoint("deploy", "http://127.0.0.1:9000/hook", SECRET, ("env", "prod")),)
    assert settings.environ["CORP_CA_KEY"] == PEM_LOOKING


def test_optional_settings_may_be_absent() -> None:
    """Only RENEWAL_VAULTS is required."""
    settings = Settings.from_environ({"RENEWAL_VAULTS": "kv1"})
    assert (dict(settings.ca_profiles), settings.default_ca_profile, settings.webhooks) == ({}, None, ())


def test_static_token_allowed_when_every_vault_is_loopback(tmp_path: Path) -> None:
    """The dev-only static token and CA bundle are accepted for loopback vaults."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    settings = Settings.from_environ(
        {
            "RENEWAL_VAULTS": "kv1=https://127.0.0.1:8443,kv2=https://localhost:8444",
            "RENEWAL_KEYVAULT_STATIC_TOKEN": "dev-token",
            "RENEWAL_KEYVAULT_CA_BUNDLE": str(bundle),
        }
    )
    assert settings.keyvault_static_token == "dev-token"
    assert settings.keyvault_ca_bundle == str(bundle)


def test_repr_hides_secrets() -> None:
    """Neither the webhook secret, the static token nor the environment appears in repr."""
    settings = Settings.from_environ(
        env(RENEWAL_VAULTS="kv1=https://127.0.0.1:1", RENEWAL_KEYVAULT_STATIC_TOKEN="dev-token-value")
    )
    text = repr(settings)
    assert SECRET not in text
    assert "dev-token-value" not in text
    assert "TOPSECRET" not in text


BAD: list[tuple[str, dict[str, str], str]] = [
    ("vaults-missing", env(RENEWAL_VAULTS=None), "RENEWAL_VAULTS"),
    ("vaults-blank", env(RENEWAL_VAULTS=" , "), "RENEWAL_VAULTS"),
    ("vault-http", env(RENEWAL_VAULTS="kv1=http://kv1.vault.azure.net"), "RENEWAL_VAULTS"),
    ("vault-bad-name", env(RENEWAL_VAULTS="k"), "RENEWAL_VAULTS"),
    ("vault-twice", env(RENEWAL_VAULTS="kv1,KV1"), "RENEWAL_VAULTS"),
    ("vault-path", env(RENEWAL_VAULTS="kv1=https://kv1.vault.azure.net/secrets"), "RENEWAL_VAULTS"),
    ("vault-bad-port", env(RENEWAL_VAULTS="kv1=https://h:99999"), "RENEWAL_VAULTS"),
    ("profiles-not-json", env(RENEWAL_CA_PROFILES="{corp:"), "RENEWAL_CA_PROFILES"),
    ("profiles-a-list", env(RENEWAL_CA_PROFILES="[]"), "RENEWAL_CA_PROFILES"),
    ("profile-unknown-adapter", env(RENEWAL_CA_PROFILES='{"corp": {"adapter": "acme9"}}'), "RENEWAL_CA_PROFILES"),
    ("profile-no-adapter", env(RENEWAL_CA_PROFILES='{"corp": {}}'), "RENEWAL_CA_PROFILES"),
    ("profile-not-object", env(RENEWAL_CA_PROFILES='{"corp": "local"}'), "RENEWAL_CA_PROFILES"),
    ("secret-setting-missing", env(CORP_CA_KEY=None), "CORP_CA_KEY"),
    ("secret-setting-empty", env(CORP_CA_KEY="  "), "CORP_CA_KEY"),
    (
        "inline-pem",
        env(RENEWAL_CA_PROFILES=json.dumps({"corp": {"adapter": "local", "ca_key": PEM_LOOKING}})),
        "RENEWAL_CA_PROFILES",
    ),
    ("default-unknown", env(RENEWAL_DEFAULT_CA_PROFILE="nope"), "RENEWAL_DEFAULT_CA_PROFILE"),
    ("webhooks-not-json", env(RENEWAL_WEBHOOKS="nope"), "RENEWAL_WEBHOOKS"),
    (
        "webhook-http-remote",
        env(RENEWAL_WEBHOOKS=json.dumps({"d": {"url": "http://hooks.example/x", "secret_setting": "HOOK_SECRET"}})),
        "RENEWAL_WEBHOOKS",
    ),
    (
        "webhook-no-url",
        env(RENEWAL_WEBHOOKS=json.dumps({"d": {"secret_setting": "HOOK_SECRET"}})),
        "RENEWAL_WEBHOOKS",
    ),
    (
        "webhook-unknown-key",
        env(RENEWAL_WEBHOOKS=json.dumps({"d": {"url": "https://h/x", "secret_setting": "HOOK_SECRET", "secret": "x"}})),
        "RENEWAL_WEBHOOKS",
    ),
    (
        "webhook-bad-tag",
        env(RENEWAL_WEBHOOKS=json.dumps({"d": {"url": "https://h/x", "secret_setting": "HOOK_SECRET", "tag": "prod"}})),
        "RENEWAL_WEBHOOKS",
    ),
    ("webhook-secret-missing", env(HOOK_SECRET=None), "HOOK_SECRET"),
    ("webhook-secret-no-prefix", env(HOOK_SECRET=base64.b64encode(b"s" * 32).decode()), "HOOK_SECRET"),
    ("webhook-secret-not-base64", env(HOOK_SECRET="whsec_not*base64!"), "HOOK_SECRET"),
    ("webhook-secret-short", env(HOOK_SECRET="whsec_" + base64.b64encode(b"short").decode()), "HOOK_SECRET"),
    ("ca-bundle-missing", env(RENEWAL_KEYVAULT_CA_BUNDLE="/nonexistent/ca.pem"), "RENEWAL_KEYVAULT_CA_BUNDLE"),
    ("static-token-remote-vault", env(RENEWAL_KEYVAULT_STATIC_TOKEN="tok-secret"), "RENEWAL_KEYVAULT_STATIC_TOKEN"),
]


@pytest.mark.parametrize(("environ", "setting"), [(e, s) for _, e, s in BAD], ids=[n for n, _, _ in BAD])
def test_bad_settings_name_the_setting_and_hide_secrets(environ: dict[str, str], setting: str) -> None:
    """Each malformed setting raises ConfigurationError naming it, without any secret value in the message."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(environ)
    assert caught.value.setting == setting
    assert setting in str(caught.value)
    for secret in (SECRET, "TOPSECRET", "tok-secret", "not*base64", "s" * 32):
        assert secret not in str(caught.value)
