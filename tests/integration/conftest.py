"""The local stack for the integration tests (see ``tests/stack.py``)."""

from tests.stack import NEAR_EXPIRY, TOKEN, VAULT, WEBHOOK_SECRET, OutcomeRecorder, Stack, stack

__all__ = ["NEAR_EXPIRY", "TOKEN", "VAULT", "WEBHOOK_SECRET", "OutcomeRecorder", "Stack", "stack"]
