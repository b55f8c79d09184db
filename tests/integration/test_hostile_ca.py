"""A hostile CA, over Vault's PKI API on loopback and through the real ``vault`` adapter, never gets anything merged.

Each test seeds a certificate issued by the local CA, has the hostile CA answer the renewal's CSR with one rule
broken (signed with the local CA's own key unless the rule is about the issuer), and checks the whole flow: the
outcome is ``failed`` with that rule's reason, Key Vault holds no new version, no webhook announced a renewal, and
the pending operation is still there for a retry or a cancel.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes.hostile_ca import VIOLATIONS, HostileSigner, Violation, honest
from tests.fakes.vault_pki import FakeVault, running
from tests.integration.conftest import Stack


@pytest.fixture
def hostile(stack: Stack) -> Iterator[HostileSigner]:
    """The stack's ``corp`` profile pointed at a Vault fake whose signer is hostile (honest until told otherwise)."""
    signer = HostileSigner(stack.ca, clock=stack.now, violation=honest)
    # The Vault fake signs with whatever has LocalCA's submit; the hostile signer is one.
    with running(FakeVault(ca=signer)) as vault:  # type: ignore[arg-type]
        assert stack.env is not None
        stack.env.setenv("VAULT_TOKEN", vault.root_token)
        profile = {"adapter": "vault", "url": vault.url, "role": "web", "token_setting": "VAULT_TOKEN"}
        stack.env.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": profile}))
        yield signer


def test_honest_answer_through_the_hostile_fake_is_merged(stack: Stack, hostile: HostileSigner) -> None:
    """The control: the same fake without a violation renews, so every refusal below is the violation's doing."""
    stack.seed("web")

    stack.deliver(stack.near_expiry_event("web"))

    assert stack.recorder.last["status"] == "renewed", stack.recorder.last
    assert hostile.signed == 1
    assert len(stack.versions("web")) == 2
    [delivery] = stack.sink.deliveries
    assert json.loads(delivery.body)["data"]["new_version"] == stack.recorder.last["new_version"]


@pytest.mark.parametrize(
    ("violation", "reason"), list(VIOLATIONS.values()), ids=list(VIOLATIONS)
)  # fmt: skip
def test_violating_answer_fails_and_nothing_is_merged(
    stack: Stack, hostile: HostileSigner, violation: Violation, reason: str
) -> None:
    """An answer breaking one rule fails with that rule's reason: no version merged, no webhook, operation kept."""
    stack.seed("web")
    hostile.violation = violation
    stack.emulator.request_log.clear()

    stack.deliver(stack.near_expiry_event("web"))

    outcome = stack.recorder.last
    assert (outcome["status"], outcome["reason"]) == ("failed", reason), outcome
    assert hostile.signed == 1
    assert stack.emulator.request_log.count(operation="merge") == 0
    assert len(stack.versions("web")) == 1
    assert stack.sink.deliveries == ()
    assert stack.client.get_certificate_operation("web").status == "inProgress"
    assert "-----BEGIN" not in outcome["message"]


def test_resumed_renewal_reads_the_replaced_version_to_know_its_issuer(stack: Stack, hostile: HostileSigner) -> None:
    """Resumed from the pending placeholder, the flow reads the replaced version (one request) to learn the anchor:
    another CA's answer is still refused, and the right CA's answer then merges."""
    stack.seed("web")
    event = stack.near_expiry_event("web")
    hostile.violation = VIOLATIONS["unrelated-root"][0]
    stack.deliver(event)
    stack.emulator.request_log.clear()

    stack.deliver(event)

    assert (stack.recorder.last["status"], stack.recorder.last["reason"]) == ("failed", "untrusted_issuer")
    assert stack.emulator.request_log.count(operation="get_version") == 1
    assert stack.emulator.request_log.count(operation="merge") == 0
    hostile.violation = honest
    stack.deliver(event)
    assert stack.recorder.last["status"] == "renewed", stack.recorder.last
    assert len(stack.versions("web")) == 2
