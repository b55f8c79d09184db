"""Step by fault: whatever goes wrong where, a renewal ends with one new version and every webhook delivered.

Each case injects one fault at one step, delivers the NearExpiry event, then lets the sweep run (as the timer
would) until the renewal is done. Crashes at every step boundary are in ``test_crash_resume.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable

import pytest

from renewal.ca import CAAdapter, CAProfile, Issued, Pending, SigningRequest
from renewal.errors import RetryableError
from tests.durability.conftest import Durable
from tests.fakes.ca import GarbageCA
from tests.fakes.counting_ca import CountingCA

KEYVAULT_SUCCESS = {"get": 200, "create": 202, "merge": 201}


class FlakyCA:
    """A CA that is down (a retryable error) the first time it is asked, then signs as ``inner`` does."""

    def __init__(self, inner: CAAdapter) -> None:
        self._inner = inner
        self.calls = 0

    def submit(self, request: SigningRequest) -> Issued | Pending:
        self.calls += 1
        if self.calls == 1:
            raise RetryableError("the CA answered 503", reason="ca_unavailable", retry_after=0)
        return self._inner.submit(request)


def _counting_ca(durable: Durable) -> CAAdapter:
    """The counting CA the ``corp`` profile names, as the runtime would build it."""
    options = json.loads(durable.stack.env_value("RENEWAL_CA_PROFILES"))["corp"]
    adapter = options.pop("adapter")
    return CountingCA.from_profile(CAProfile("corp", adapter, options), dict(os.environ))


def _inject(durable: Durable, monkeypatch: pytest.MonkeyPatch, step: str, fault: str) -> Callable[[], None]:
    """Inject ``fault`` at ``step``; return what takes it away again (after the event, before the sweeps)."""
    stack = durable.stack
    faults = stack.emulator.faults
    if step in KEYVAULT_SUCCESS:
        if fault == "429":
            faults.script(step, 429, vault="kv1", count=2)
        elif fault == "5xx":
            faults.script(step, 503, vault="kv1", count=50)  # outlasts every retry within the invocation
        elif fault == "timeout":
            monkeypatch.setenv("RENEWAL_KEYVAULT_TIMEOUT_SECONDS", "0.5")
            faults.script(step, 503, vault="kv1", delay=1.0)
        elif fault == "garbage":
            faults.script(step, KEYVAULT_SUCCESS[step], vault="kv1", body={"unexpected": "shape"})
        return faults.clear
    if step == "ca":
        durable.adapters["corp"] = FlakyCA(_counting_ca(durable)) if fault == "5xx" else GarbageCA()
        if fault == "garbage":
            return lambda: durable.adapters.pop("corp")
        return lambda: None
    if fault == "5xx":
        stack.sink.fail_next(8, status=503)
    elif fault == "down":
        stack.sink.down = True
    elif fault == "garbage":
        stack.sink.fail_next(4, status=302, headers={"Location": "http://127.0.0.1:9/"})

    def sink_up() -> None:
        stack.sink.down = False

    return sink_up


CASES = [
    *[(step, fault) for step in ("get", "create", "merge") for fault in ("429", "5xx", "timeout", "garbage")],
    ("ca", "5xx"),
    ("ca", "garbage"),
    ("webhook", "5xx"),
    ("webhook", "down"),
    ("webhook", "garbage"),
]


@pytest.mark.parametrize(("step", "fault"), CASES)
def test_renewal_completes_despite_the_fault(
    durable: Durable, monkeypatch: pytest.MonkeyPatch, step: str, fault: str
) -> None:
    """One fault at one step: the event, then the sweep, end with one new version and each webhook delivered once."""
    stack = durable.stack
    stack.seed("web")
    event = stack.near_expiry_event("web")
    clear = _inject(durable, monkeypatch, step, fault)

    with contextlib.suppress(RetryableError):  # transient: recorded, and raised so that Event Grid may redeliver
        durable.deliver(event)
    clear()
    if step == "ca" and fault == "garbage":
        durable.deliver(event)  # a permanent failure waits for the next event (or a manual renewal)
    for _ in range(3):
        durable.sweep()

    assert len(stack.versions("web")) == 2
    for endpoint in ("a", "b"):
        received = durable.deliveries_to(endpoint)
        assert [d.status for d in received].count(204) == 1, endpoint
        assert len({d.headers["webhook-id"] for d in received}) == 1, "every attempt carries the same webhook-id"
    record = durable.runtime().journal.get("kv1", "web")
    assert record is not None
    assert record.step == "done"
    if step in KEYVAULT_SUCCESS and step != "merge":
        assert len(durable.submissions()) <= 1
    if step == "merge":
        assert len(durable.submissions()) == 1, "the CA's answer was recorded, not asked for again"
