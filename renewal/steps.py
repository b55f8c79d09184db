"""The renewal's persisted positions: where a renewal stands, declared once (the state machine is renewal.flow.renew).

Each is a point a crash can resume from; the journal stores it, the flow dispatches on it, the crash tests name it::

    BEGIN ──► SUBMIT ──► MERGE ──► DELIVER ──► DONE
                │  ▲
                ▼  │ (the CA deferred)
                POLL

- ``BEGIN``: nothing is under way; the next step reads Key Vault, decides, and has it create a version.
- ``SUBMIT``: a version is pending in Key Vault (its CSR's hash recorded); the next step asks the CA.
- ``POLL``: the CA deferred the request (its reference recorded); the next step asks it again.
- ``MERGE``: the CA's answer passed verification and is recorded; the next step merges it into Key Vault.
- ``DELIVER``: the version is merged and its notifications are in the outbox; the next step sends them.
- ``DONE``: the renewal finished; the next one starts at ``BEGIN``.

A failure is not a position: it is recorded on the record (``last_reason``, ``attempts``, ``next_attempt_at``)
and the renewal stays where it stood.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Step"]

# Positions the journal wrote before the steps were declared here, and where each resumes now.
_LEGACY = {
    "idle": "begin",
    "begun": "submit",
    "submitting": "submit",
    "pending_ca": "poll",
    "issued": "merge",
    "merged": "deliver",
    "failed": "begin",
}


class Step(StrEnum):
    """Where a renewal stands; see the module docstring."""

    BEGIN = "begin"
    SUBMIT = "submit"
    POLL = "poll"
    MERGE = "merge"
    DELIVER = "deliver"
    DONE = "done"

    @classmethod
    def stored(cls, text: str | None) -> Step:
        """The step a journal row names, reading rows written before these names too; unknown text is ``BEGIN``."""
        value = (text or "begin").strip().lower()
        try:
            return cls(_LEGACY.get(value, value))
        except ValueError:
            return cls.BEGIN

    @property
    def under_way(self) -> bool:
        """Whether a renewal holds state in Key Vault or the CA that must be carried on (not BEGIN, not DONE)."""
        return self not in (Step.BEGIN, Step.DONE)
