"""Config: settings are validated once; every error names the setting and never echoes a secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from renewal.errors import ConfigurationError
from renewal.settings import Settings, VaultConfig, WebhookEndpoint

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
    # A missing secret setting is reported against the option that names it (the name may be a pasted secret).
    ("secret-setting-missing", env(CORP_CA_KEY=None), "RENEWAL_CA_PROFILES"),
    ("secret-setting-empty", env(CORP_CA_KEY="  "), "RENEWAL_CA_PROFILES"),
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
    ("webhook-secret-missing", env(HOOK_SECRET=None), "RENEWAL_WEBHOOKS"),
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


# --- names matched whole, in ASCII; values never echoed ------------------------------------------------------

PASTED = "hvs.CAESIJlWh3Vm0pastedbymistake"


@pytest.mark.parametrize(
    "vaults",
    ["app1\n", "kv1,app1\n", "\u212av1", "k\u212a1", "kv1,kv\u0131"],
    ids=["newline", "newline-second", "kelvin", "kelvin-inner", "dotless-i"],
)
def test_a_vault_name_is_ascii_and_matched_whole(vaults: str) -> None:
    """'app1\\n' and names with the Kelvin sign or other lookalikes are not vault names."""
    if vaults.endswith("\n"):
        vaults = vaults + "x"  # the list is trimmed as a whole; keep the newline inside the name
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(env(RENEWAL_VAULTS=vaults))
    assert caught.value.setting == "RENEWAL_VAULTS"


def test_two_vault_names_with_one_url_are_a_configuration_error() -> None:
    """Two vault names for the same URL would let one name stand for the other: refused."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(env(RENEWAL_VAULTS="a1b=https://127.0.0.1:8443,c2d=https://127.0.0.1:8443/"))
    assert "same URL" in caught.value.message


@pytest.mark.parametrize(
    "changes",
    [
        {"RENEWAL_VAULTS": PASTED},
        {"RENEWAL_VAULTS": f"kv1=https://{PASTED}@kv1.vault.azure.net"},
        {"RENEWAL_VAULTS": f"kv1=https://kv1.vault.azure.net/?{PASTED}"},
        {"RENEWAL_SWEEP_BUDGET_SECONDS": PASTED},
        {"RENEWAL_DEFAULT_CA_PROFILE": PASTED},
        {"RENEWAL_KEYVAULT_CA_BUNDLE": PASTED},
        {"RENEWAL_CA_PROFILES": json.dumps({"corp": {"adapter": "local", "ca_key_setting": PASTED}})},
        {"RENEWAL_WEBHOOKS": json.dumps({"deploy": {"url": "https://h.example", "secret_setting": PASTED}})},
        {"RENEWAL_SWEEP_SCHEDULE": PASTED},
    ],
    ids=[
        "vault-name",
        "vault-url-userinfo",
        "vault-url-query",
        "number",
        "default-profile",
        "bundle-path",
        "secret-setting-name",
        "webhook-secret-setting-name",
        "sweep-schedule",
    ],
)
def test_a_secret_pasted_where_a_name_belongs_is_never_printed_back(changes: dict[str, str]) -> None:
    """Configuration errors name the option, never its value."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(env(**changes))
    assert PASTED not in str(caught.value)
    assert PASTED[:12] not in str(caught.value)


@pytest.mark.parametrize("setting", ["RENEWAL_CA_PROFILES", "RENEWAL_WEBHOOKS"])
def test_json_nested_too_deeply_is_a_configuration_error(setting: str) -> None:
    """A JSON setting nested past the parser's limit is a ConfigurationError naming it, not a RecursionError."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_environ(env(**{setting: "[" * 100_000 + "]" * 100_000}))
    assert caught.value.setting == setting


@pytest.mark.parametrize(
    ("schedule", "minutes"),
    [
        ("0 */30 * * * *", 30),
        ("0 */5 * * * *", 5),
        ("0 0 */6 * * *", 360),
        ("*/10 * * * * *", 1 / 6),
        ("0 0 0 * * 1", 1440),
    ],
)
def test_the_sweep_interval_is_read_from_its_schedule(schedule: str, minutes: float) -> None:
    """RENEWAL_SWEEP_SCHEDULE gives the longest gap between two sweeps."""
    interval = Settings.from_environ(env(RENEWAL_SWEEP_SCHEDULE=schedule)).sweep_interval
    assert interval is not None
    assert interval.total_seconds() == pytest.approx(minutes * 60)


def test_every_configured_secret_is_known_for_scrubbing() -> None:
    """Values of settings named by *_setting options, webhook secrets, the static token and account keys."""
    settings = Settings.from_environ(
        env(
            RENEWAL_VAULTS="kv1=https://127.0.0.1:8443",
            RENEWAL_KEYVAULT_STATIC_TOKEN="static-dev-token-1",
            RENEWAL_JOURNAL_CONNECTION="AccountName=a;AccountKey=c2VjcmV0a2V5MTIz;TableEndpoint=http://127.0.0.1:1",
        )
    )
    assert {PEM_LOOKING, SECRET, "static-dev-token-1", "c2VjcmV0a2V5MTIz"} <= settings.secret_values
