"""The local stack for the integration tests (see ``tests/stack.py``), and the Key Vault emulator and local CA the
rollout tests share (see ``tests/rollout/conftest.py``)."""

from tests.rollout.conftest import ca_files, emulator
from tests.stack import NEAR_EXPIRY, TOKEN, VAULT, WEBHOOK_SECRET, OutcomeRecorder, Stack, stack

__all__ = [
    "NEAR_EXPIRY",
    "TOKEN",
    "VAULT",
    "WEBHOOK_SECRET",
    "OutcomeRecorder",
    "Stack",
    "ca_files",
    "emulator",
    "stack",
]
