"""Fixtures shared by the notifier tests: the Teams workflow and Slack webhook fakes on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.chat_webhooks import FakeSlackWebhook, FakeTeamsWorkflow


@pytest.fixture
def teams() -> Iterator[FakeTeamsWorkflow]:
    with FakeTeamsWorkflow() as fake:
        yield fake


@pytest.fixture
def slack() -> Iterator[FakeSlackWebhook]:
    with FakeSlackWebhook() as fake:
        yield fake
