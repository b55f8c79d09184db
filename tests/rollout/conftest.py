"""Shared pieces of the rollout tests: a clock the test moves, a rollout row to start from, an endpoint that
switches certificates, and the Key Vault emulator and local CA the tests against the emulator (here and in
``tests/integration``) share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles, create_local_ca
from renewal.ca import Issued, Pending, SigningRequest
from renewal.pure.rollout import Rollout, pushed
from tests.fakes.tls_switch import ServedCertificate, TlsSwitch, served_certificate


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


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultEmulator]:
    """The emulator every test of a module shares (each seeds its own certificate)."""
    with KeyVaultEmulator(state_dir=tmp_path_factory.mktemp("kv"), vaults=["kv1"], tick_interval=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("ca"))


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


@pytest.fixture(scope="module")
def old() -> ServedCertificate:
    return served_certificate("old.corp.internal")


@pytest.fixture(scope="module")
def new() -> ServedCertificate:
    return served_certificate("new.corp.internal")


@pytest.fixture
def switching(old: ServedCertificate) -> Iterator[TlsSwitch]:
    """An endpoint serving the old certificate until the test switches it."""
    with TlsSwitch(old) as server:
        yield server
