"""The local stack for the CLI's tests (see ``tests/stack.py``), and a way to run the CLI against it."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from renewal.cli import main
from tests.stack import TOKEN, VAULT, WEBHOOK_SECRET, Stack, stack

__all__ = ["TOKEN", "VAULT", "WEBHOOK_SECRET", "Run", "Stack", "run", "stack"]


@dataclass(frozen=True)
class Run:
    """One CLI run: its exit code and what it wrote."""

    code: int
    out: str
    err: str


@pytest.fixture
def run(stack: Stack) -> Callable[..., Run]:
    """Run ``renewal ARGS`` in-process with the stack's settings and the emulator's clock."""

    def invoke(*args: str, environ: dict[str, str] | None = None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            list(args),
            environ=dict(os.environ) if environ is None else environ,
            clock=stack.now,
            stdout=out,
            stderr=err,
        )
        return Run(code, out.getvalue(), err.getvalue())

    return invoke
