"""The entry points' runtime: built from the app settings once, and again only when something the app reads changes."""

from __future__ import annotations

from pathlib import Path

from devstack.azurite import Azurite
from renewal.flow.entry import current_runtime


def _environ(azurite: Azurite, **changes: str) -> dict[str, str]:
    return {
        "RENEWAL_VAULTS": "kv1=https://127.0.0.1:8443",
        "RENEWAL_KEYVAULT_STATIC_TOKEN": "entry-token",
        "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
        "UNRELATED_SETTING": "one",
        **changes,
    }


def test_the_same_settings_reuse_one_runtime(azurite: Azurite) -> None:
    """Two invocations with the same settings share one runtime, whatever else changed in the environment."""
    first = current_runtime(_environ(azurite))
    assert current_runtime(_environ(azurite, UNRELATED_SETTING="two")) is first


def test_a_changed_setting_or_named_secret_builds_a_new_runtime(azurite: Azurite, tmp_path: Path) -> None:
    """A changed app setting, a changed secret a setting names, or another journal gives a new runtime."""
    hook = {"RENEWAL_WEBHOOKS": '{"d": {"url": "https://h.example/x", "secret_setting": "HOOK"}}'}
    first = current_runtime(_environ(azurite, **hook, HOOK="whsec_" + "QUJD" * 8))
    secret_changed = current_runtime(_environ(azurite, **hook, HOOK="whsec_" + "REVG" * 8))
    assert secret_changed is not first
    table_changed = current_runtime(
        _environ(azurite, **hook, HOOK="whsec_" + "REVG" * 8, RENEWAL_JOURNAL_TABLE="other")
    )
    assert table_changed is not secret_changed
    assert current_runtime(_environ(azurite, **hook, HOOK="whsec_" + "REVG" * 8, RENEWAL_JOURNAL_TABLE="other")) is (
        table_changed
    )
