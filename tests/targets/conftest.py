"""Fixtures for the deployment targets: the ARM fake on loopback HTTPS, a static token, and a client that waits
through a recorded sleep instead of the wall clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from renewal.shells.arm import ArmClient
from renewal.targets import ARM_CA_BUNDLE, ARM_ENDPOINT, NewVersion, arm_client_from_environ
from tests.fakes.arm_targets import ArmTargetsFake

TOKEN = "arm-token-for-target-tests"
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a1"
GROUP = "edge-rg"
VAULT_URL = "https://kv-corp.vault.azure.net"
THUMBPRINT = "a1" * 20
OLD_THUMBPRINT = "0f" * 20


class StaticCredential:
    """A TokenCredential that hands out one token and remembers the scopes asked for."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, 2**31)


class RecordedSleep:
    """Stands in for ``time.sleep``: remembers each wait, waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def resource_id(provider_path: str) -> str:
    """An ARM id in the test subscription and group."""
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/{provider_path}"


def new_version(name: str = "www", *, version: str = "v2", key_curve: str | None = None) -> NewVersion:
    """The new version of certificate ``name`` in the test vault."""
    return NewVersion(
        vault_name="kv-corp",
        vault_url=VAULT_URL,
        certificate_name=name,
        version=version,
        thumbprint=THUMBPRINT,
        key_curve=key_curve,
    )


@pytest.fixture
def arm_fake(tmp_path: Path) -> Iterator[ArmTargetsFake]:
    with ArmTargetsFake(tmp_path / "arm-tls", token=TOKEN) as fake:
        yield fake


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
def credential() -> StaticCredential:
    return StaticCredential()


@pytest.fixture
def arm(arm_fake: ArmTargetsFake, sleep: RecordedSleep, credential: StaticCredential) -> ArmClient:
    environ = {ARM_ENDPOINT: arm_fake.url, ARM_CA_BUNDLE: str(arm_fake.tls.ca_path)}
    return arm_client_from_environ(environ, credential=credential, sleep=sleep)
