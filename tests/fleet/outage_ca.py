"""The local CA behind a switch: while ``down_file`` exists it answers as a CA that is down (a retryable
error), at once, so that a test can fail a renewal transiently as often as it likes without waiting on retries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from renewal.ca import CAProfile, Issued, Pending, SigningRequest
from renewal.ca.local import LocalCA
from renewal.errors import RetryableError

__all__ = ["OUTAGE", "OutageCA"]

# The adapter name a profile gives to use it: an adapter of one's own, by module path.
OUTAGE = "tests.fleet.outage_ca:OutageCA"


class OutageCA:
    """A ``LocalCA`` that is unavailable while ``down_file`` exists."""

    def __init__(self, inner: LocalCA, down_file: Path) -> None:
        self._inner = inner
        self._down_file = down_file

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> OutageCA:
        options = dict(profile.options)
        down_file = Path(str(options.pop("down_file")))
        return cls(LocalCA.from_profile(CAProfile(profile.name, "local", options), environ), down_file)

    def submit(self, request: SigningRequest) -> Issued | Pending:
        self._check()
        return self._inner.submit(request)

    def poll(self, reference: str) -> Issued | Pending:
        self._check()
        return self._inner.poll(reference)

    def _check(self) -> None:
        if self._down_file.exists():
            raise RetryableError("the CA is down (a test's outage)", reason="ca_unavailable")
