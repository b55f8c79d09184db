"""Twenty deliveries of one event at once, each in its own worker process."""

from __future__ import annotations

from tests.durability.conftest import Durable


def test_twenty_concurrent_deliveries_renew_once(durable: Durable) -> None:
    """One CSR submitted, one version merged, one delivery per endpoint, whatever the interleaving."""
    stack = durable.stack
    stack.seed("web")
    event = stack.near_expiry_event("web")
    stack.emulator.request_log.clear()

    codes, errors = durable.run_workers_together([event] * 20)

    assert codes == [0] * 20, errors
    assert len(stack.versions("web")) == 2
    assert len(durable.submissions()) == 1
    assert stack.emulator.request_log.statuses(vault="kv1", operation="create").count(202) == 1
    assert stack.emulator.request_log.statuses(vault="kv1", operation="merge") == [201]
    assert len(durable.deliveries_to("a")) == 1
    assert len(durable.deliveries_to("b")) == 1
