"""What importing the notifiers costs: the settings may read ``RENEWAL_NOTIFIERS`` without loading a shell, and
the routing (run on every outcome) loads no HTTP client and no ``smtplib``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import renewal.notify


def loaded_after(module: str, candidates: tuple[str, ...]) -> list[str]:
    code = f"import sys, {module}; print(' '.join(m for m in {candidates!r} if m in sys.modules))"
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.split()


def test_the_settings_can_read_the_notifiers_without_a_shell_or_a_client() -> None:
    """``renewal.notify._config`` is a value module, as ``renewal.settings`` is."""
    assert loaded_after("renewal.notify._config", ("renewal.shells", "renewal.flow", "requests", "smtplib")) == []


def test_routing_does_no_io() -> None:
    """Deciding who is told what imports the outbox row type, and nothing that talks to the network."""
    assert loaded_after("renewal.notify.routing", ("requests", "urllib3", "smtplib", "azure", "renewal.flow")) == []


@pytest.mark.parametrize("name", renewal.notify.__all__)
def test_every_public_name_resolves(name: str) -> None:
    """The package's lazy names are all there."""
    assert getattr(renewal.notify, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    """As for any module."""
    with pytest.raises(AttributeError):
        renewal.notify.nothing_here  # noqa: B018 - the attribute access is the test
