"""The local CA, counting what it is asked: each ``submit`` appends the CSR's hash to a file.

Crash and concurrency tests run workers in separate processes; a file appended with O_APPEND is how they all
report to the test which CSRs reached the CA, and how often.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from renewal.ca import CAProfile, Issued, Pending, SigningRequest
from renewal.ca.local import LocalCA

__all__ = ["COUNTING", "CountingCA", "submissions"]

# The adapter name a profile gives to use it: an adapter of one's own, by module path.
COUNTING = "tests.fakes.counting_ca:CountingCA"


class CountingCA:
    """A ``LocalCA`` whose submissions are counted in ``count_file``."""

    def __init__(self, inner: LocalCA, count_file: Path) -> None:
        self._inner = inner
        self._count_file = count_file

    @classmethod
    def from_profile(cls, profile: CAProfile, environ: Mapping[str, str]) -> CountingCA:
        options = dict(profile.options)
        count_file = Path(str(options.pop("count_file")))
        return cls(LocalCA.from_profile(CAProfile(profile.name, "local", options), environ), count_file)

    def submit(self, request: SigningRequest) -> Issued | Pending:
        line = (hashlib.sha256(request.csr_der).hexdigest() + "\n").encode()
        descriptor = os.open(self._count_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line)
        finally:
            os.close(descriptor)
        return self._inner.submit(request)

    def poll(self, reference: str) -> Issued | Pending:
        return self._inner.poll(reference)


def submissions(count_file: Path) -> list[str]:
    """The CSR hashes submitted so far, in order."""
    return count_file.read_text().split() if count_file.exists() else []
