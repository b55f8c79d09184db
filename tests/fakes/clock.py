"""A clock a test moves, shared with the worker processes it starts: the wall clock plus an offset kept in a file.

The runtime reads it as its ``clock`` (tz-aware UTC), and so does the journal for claim expiry: a test passes a
claim, a retry's delay or a delivery's maximum age by advancing the clock, not by sleeping. Every process that
reads the same file sees the same offset; ``advance`` replaces the file at once, so no reader sees half of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["FileClock"]


@dataclass(frozen=True, slots=True)
class FileClock:
    """Now, as the test has it: ``datetime.now(UTC)`` plus the seconds written in ``path`` (none yet: zero).

    Attributes:
        path: the file holding the offset, in seconds.
    """

    path: Path

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset())

    def offset(self) -> float:
        """The seconds this clock is ahead of the wall clock."""
        try:
            return float(self.path.read_text() or 0)
        except FileNotFoundError:
            return 0.0

    def advance(self, seconds: float) -> None:
        """Move this clock (in every process that reads ``path``) ``seconds`` ahead."""
        draft = self.path.with_name(self.path.name + ".next")
        draft.write_text(repr(self.offset() + seconds))
        os.replace(draft, self.path)
