"""The local stack for the status page's tests (see ``tests/stack.py``)."""

from tests.stack import VAULT, Stack, stack

__all__ = ["VAULT", "Stack", "stack"]
