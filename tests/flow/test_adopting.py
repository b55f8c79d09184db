"""Adopting the app on an existing estate: observe mode changes nothing, and a renewed version carries its
owners' tags with at most one tag of the app's own."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from devstack.seed import seed_certificate
from renewal.errors import ConfigurationError
from renewal.flow.runtime import build_runtime
from renewal.settings import Settings
from tests.flow.test_steps import VAULT, Flow, ca, emulator, flow

__all__ = ["ca", "emulator", "flow"]


def _observing(flow: Flow) -> Flow:
    flow.settings = replace(flow.settings, observe=True)
    return flow


def test_observe_mode_reports_what_it_would_do_and_changes_nothing(flow: Flow) -> None:
    """A due certificate under observe mode: ``would_renew`` with the window, no create, no CA request."""
    _observing(flow)
    flow.emulator.request_log.clear()

    outcome = flow.run()

    assert (outcome.status, outcome.reason) == ("skipped", "would_renew")
    assert "CA profile 'corp'" in outcome.message
    assert "window opened" in outcome.message
    assert outcome.renews_from is not None
    assert outcome.renews_from <= flow.clock.now
    assert [e.operation for e in flow.emulator.request_log if e.authenticated] == ["get"]
    assert flow.versions() == 1
    assert flow.record.history[-1]["reason"] == "would_renew"


def test_a_certificate_tagged_to_act_is_renewed_while_the_app_observes(flow: Flow) -> None:
    """``renewal-observe=false`` on one certificate lets it act: the way to widen a trial one by one."""
    _observing(flow)
    flow.client.update_certificate_properties(flow.name, tags={"renewal-ca": "corp", "renewal-observe": "false"})

    assert flow.run().status == "renewed"
    assert flow.versions() == 2


def test_a_certificate_tagged_to_observe_is_held_while_the_app_acts(flow: Flow) -> None:
    flow.client.update_certificate_properties(flow.name, tags={"renewal-ca": "corp", "renewal-observe": "true"})

    assert flow.run().reason == "would_renew"
    assert flow.versions() == 1


def _seed_with_tags(flow: Flow, tags: dict[str, str]) -> None:
    flow.name = f"tagged-{uuid.uuid4().hex[:8]}"
    seed_certificate(
        flow.client,
        flow.name,
        flow.ca,
        dns_names=[f"{flow.name}.corp.internal"],
        not_before=flow.clock.now - timedelta(days=300),
        not_after=flow.clock.now + timedelta(days=20),
        tags=tags,
    )


def test_a_certificate_with_fourteen_tags_renews_and_gets_one_tag_of_ours(flow: Flow) -> None:
    """Key Vault allows 15 tags: the owners' 14 are carried unchanged and the app adds exactly one."""
    owners = {"renewal-ca": "corp", **{f"owner-{i}": f"value-{i}" for i in range(13)}}
    _seed_with_tags(flow, owners)
    previous = flow.client.get_certificate(flow.name).properties.version

    outcome = flow.run()

    assert outcome.status == "renewed", outcome
    tags = flow.client.get_certificate(flow.name).properties.tags
    assert {k: v for k, v in tags.items() if k != "renewal-by"} == owners
    assert tags["renewal-by"] == f"keyvault-private-ca-renewal;profile=corp;previous={previous}"


def test_a_certificate_using_all_fifteen_tags_renews_without_ours_and_says_so(flow: Flow) -> None:
    owners = {"renewal-ca": "corp", **{f"owner-{i}": f"value-{i}" for i in range(14)}}
    _seed_with_tags(flow, owners)

    outcome = flow.run()

    assert outcome.status == "renewed", outcome
    assert flow.client.get_certificate(flow.name).properties.tags == owners
    assert "carries no renewal-by tag" in outcome.message


def test_the_three_tags_of_earlier_releases_give_way_to_the_one(flow: Flow) -> None:
    """A version renewed by an earlier release carried three tags of ours; its renewal carries one."""
    legacy = {
        "renewal-ca": "corp",
        "renewal-by": "keyvault-private-ca-renewal",
        "renewal-ca-profile": "corp",
        "renewal-previous-version": "0" * 32,
    }
    _seed_with_tags(flow, legacy)

    assert flow.run().status == "renewed"
    tags = flow.client.get_certificate(flow.name).properties.tags
    assert set(tags) == {"renewal-ca", "renewal-by"}


def test_the_azure_sdk_loggers_stay_at_warning_unless_asked(flow: Flow) -> None:
    """The SDK's HTTP logging policy logs every request at INFO: noise that costs money in App Insights."""
    build_runtime(flow.settings, journal=flow.journal)
    assert logging.getLogger("azure").level == logging.WARNING
    asked = Settings.from_environ({**flow.settings.environ, "RENEWAL_SDK_LOG_LEVEL": "info"})
    build_runtime(asked, journal=flow.journal)
    assert logging.getLogger("azure").level == logging.INFO
    build_runtime(flow.settings, journal=flow.journal)


def test_observe_mode_is_a_setting_and_refuses_what_it_cannot_read() -> None:
    base = {"RENEWAL_VAULTS": f"{VAULT}=https://{VAULT}.vault.azure.net"}
    assert Settings.from_environ({**base, "RENEWAL_OBSERVE": "true"}).observe is True
    assert Settings.from_environ(base).observe is False
    with pytest.raises(ConfigurationError, match="RENEWAL_OBSERVE"):
        Settings.from_environ({**base, "RENEWAL_OBSERVE": "maybe"})
