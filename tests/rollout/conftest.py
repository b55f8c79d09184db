"""Shared pieces of the rollout tests: a clock the test moves, and a rollout row to start from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from renewal.ca import Issued, Pending, SigningRequest
from renewal.pure.rollout import Rollout, pushed


@dataclass
class Clock:
    """Now, as the test has it; ``advance`` moves it (nothing sleeps)."""

    now: datetime = field(default_factory=lambda: datetime(2027, 3, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


def a_rollout(
    *,
    target: str = "edge",
    targets: tuple[str, ...] = ("edge",),
    version: str = "v2",
    thumbprint: str = "ab" * 20,
    now: datetime = datetime(2027, 3, 1, 12, 0, tzinfo=UTC),
    deadline: timedelta = timedelta(minutes=15),
    probe: tuple[str, int, str | None] | None = ("127.0.0.1", 443, "www.corp.internal"),
    vault_name: str = "kv1",
    certificate_name: str = "web",
) -> Rollout:
    """A freshly pushed rollout of ``web`` version ``v2`` (replacing ``v1``) to ``target``."""
    return pushed(
        vault_name=vault_name,
        vault_url="https://127.0.0.1:1",
        certificate_name=certificate_name,
        target=target,
        kind="app_gateway",
        version=version,
        thumbprint=thumbprint,
        previous_version="v1",
        ca_profile="corp",
        targets=targets,
        tags={"env": "prod"},
        now=now,
        pickup_deadline=deadline,
        probe=probe,
    )


@dataclass
class FakeCA:
    """A CA adapter that can revoke: it records what it was asked, and raises what the test lines up."""

    revoked: list[str] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    def submit(self, request: SigningRequest) -> Issued | Pending:
        raise AssertionError("the rollout tests issue nothing")

    def revoke(self, certificate_pem: str, *, reason: str = "superseded") -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.revoked.append(certificate_pem)


@dataclass
class NonRevokingCA:
    """A CA adapter whose protocol has no revocation call (as AD CS web enrollment and EST)."""

    def submit(self, request: SigningRequest) -> Issued | Pending:
        raise AssertionError("the rollout tests issue nothing")
