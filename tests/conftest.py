"""Fixtures every test folder may use: the session's Azurite (Azure Storage emulator, Table and Queue)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.azurite import Azurite, AzuriteMissingError


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's Table and Queue services, in memory, for the whole session (tests use their own tables and
    queues)."""
    try:
        emulator = Azurite().start()
    except AzuriteMissingError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (under CI=true a missing service is a failure)")
        pytest.skip(str(exc))
    try:
        yield emulator
    finally:
        emulator.stop()
