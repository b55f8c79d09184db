"""The renewal's state machine, step by step: each step's one save, where a crash leaves the record, and how the
next run goes on from there.

Fast: the journal is the in-memory one (the same contract as Table Storage, tests/shells), the clock is the
test's, the local CA runs in-process; Key Vault is the emulator over HTTPS with the real SDK, started once.
A "crash" is a checkpoint that raises: the renewal stops right after that step's save, its claim still held.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles, create_local_ca
from devstack.seed import seed_certificate
from renewal.ca import CAProfile, Issued, Pending, SigningRequest
from renewal.ca.local import LocalCA
from renewal.flow.renew import renew
from renewal.flow.runtime import Runtime, build_runtime
from renewal.outcome import Outcome
from renewal.pure.intake import on_demand_request
from renewal.settings import Settings
from renewal.steps import Step
from renewal.testing import InMemoryJournal

VAULT = "kv1"
TOKEN = "flow-token"


class Crash(BaseException):
    """What a killed worker leaves: nothing after this point runs (BaseException: the flow does not catch it)."""


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2027, 3, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Flow:
    """One certificate, the app's settings, and a way to run the renewal as a worker would."""

    emulator: KeyVaultEmulator
    ca: LocalCAFiles
    settings: Settings
    clock: Clock
    journal: InMemoryJournal
    name: str
    adapters: dict[str, Any] = field(default_factory=dict)
    reached: list[str] = field(default_factory=list)

    def runtime(self, *, crash_at: str | None = None, worker: str = "worker-a") -> Runtime:
        def checkpoint(step: str) -> None:
            self.reached.append(step)
            if step == crash_at:
                raise Crash(step)

        return build_runtime(
            self.settings,
            adapters=self.adapters or {"corp": self.local_ca()},
            clock=self.clock,
            journal=self.journal,
            checkpoint=checkpoint,
            worker_id=worker,
        )

    def local_ca(self) -> LocalCA:
        options = {k: v for k, v in self.ca.profile_options().items() if k != "adapter"}
        return LocalCA.from_profile(CAProfile("corp", "local", options), {}, clock=self.clock)

    def run(self, *, crash_at: str | None = None, worker: str = "worker-a") -> Outcome:
        request = on_demand_request(self.settings.vaults[VAULT], self.name, trigger="sweep")
        return renew(request, self.runtime(crash_at=crash_at, worker=worker))

    def crash_at(self, step: str) -> None:
        with pytest.raises(Crash):
            self.run(crash_at=step)
        # The dead worker's claim lapses before anyone else may go on.
        self.clock.advance(timedelta(seconds=self.settings.claim_seconds + 1))

    @property
    def record(self) -> Any:
        record = self.journal.get(VAULT, self.name)
        assert record is not None
        return record

    @property
    def client(self) -> Any:
        return self.emulator.certificate_client(VAULT)

    def versions(self) -> int:
        return len(list(self.client.list_properties_of_certificate_versions(self.name)))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultEmulator]:
    with KeyVaultEmulator(state_dir=tmp_path_factory.mktemp("kv"), vaults=[VAULT], tick_interval=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCAFiles:
    return create_local_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def flow(emulator: KeyVaultEmulator, ca: LocalCAFiles) -> Flow:
    """A due certificate (issued by the local CA 300 days ago, 20 days left) and the app set up for it."""
    clock = Clock(datetime.fromtimestamp(emulator.clock(), UTC))
    name = f"web-{uuid.uuid4().hex[:8]}"
    seed_certificate(
        emulator.certificate_client(VAULT),
        name,
        ca,
        dns_names=[f"{name}.corp.internal"],
        not_before=clock.now - timedelta(days=300),
        not_after=clock.now + timedelta(days=20),
        tags={"renewal-ca": "corp"},
    )
    settings = Settings.from_environ(
        {
            "RENEWAL_VAULTS": f"{VAULT}={emulator.url(VAULT)}",
            "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
            "RENEWAL_KEYVAULT_STATIC_TOKEN": TOKEN,
            "RENEWAL_CA_PROFILES": json.dumps({"corp": ca.profile_options()}),
            "RENEWAL_CLAIM_SECONDS": "60",
        }
    )
    journal = InMemoryJournal(clock=lambda: clock().timestamp(), claim_seconds=settings.claim_seconds)
    return Flow(emulator, ca, settings, clock, journal, name)


def test_a_renewal_passes_every_step_once_in_order(flow: Flow) -> None:
    """Begin, submit, merge and deliver each end with their checkpoint, once, and the record ends DONE."""
    outcome = flow.run()
    assert (outcome.status, outcome.reason) == ("renewed", "renewed")
    assert flow.reached == [Step.BEGIN, Step.SUBMIT, Step.MERGE, Step.DELIVER]
    assert flow.record.step == Step.DONE
    assert flow.versions() == 2


def test_begin_records_the_csr_of_the_version_key_vault_created(flow: Flow) -> None:
    """After BEGIN the record is at SUBMIT with the pending operation's CSR hash, and nothing of the CA yet."""
    flow.crash_at(Step.BEGIN)
    record = flow.record
    operation = flow.client.get_certificate_operation(flow.name)
    assert record.step == Step.SUBMIT
    assert record.csr_sha256 == hashlib.sha256(bytes(operation.csr)).hexdigest()
    assert (record.ca_reference, record.issued_leaf_pem, record.issued_chain) == (None, None, ())


def test_a_crash_after_begin_resumes_with_the_same_csr(flow: Flow) -> None:
    """The next run reuses the pending operation (no second create) and merges a leaf for its key."""
    flow.crash_at(Step.BEGIN)
    csr = x509.load_der_x509_csr(bytes(flow.client.get_certificate_operation(flow.name).csr))
    flow.emulator.request_log.clear()

    outcome = flow.run(worker="worker-b")

    assert outcome.status == "renewed"
    assert flow.emulator.request_log.count(operation="create") == 0
    leaf = x509.load_der_x509_certificate(bytes(flow.client.get_certificate(flow.name).cer))
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(serialization.Encoding.DER, spki) == csr.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )
    assert flow.versions() == 2


def test_submit_records_only_a_verified_answer(flow: Flow) -> None:
    """After SUBMIT the record holds the CA's leaf and its chain as a list, and is at MERGE."""
    flow.crash_at(Step.SUBMIT)
    record = flow.record
    assert record.step == Step.MERGE
    assert record.issued_leaf_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert len(record.issued_chain) == 2  # the intermediate, then the root


class CountingCA:
    """Signs with the local CA and counts what it was asked."""

    def __init__(self, inner: LocalCA) -> None:
        self.inner, self.submitted = inner, 0

    def submit(self, request: SigningRequest) -> Issued | Pending:
        self.submitted += 1
        return self.inner.submit(request)


def test_a_crash_after_submit_merges_without_asking_the_ca_again(flow: Flow) -> None:
    """The recorded answer is merged by the next run; the CA is asked once in all."""
    ca = CountingCA(flow.local_ca())
    flow.adapters = {"corp": ca}
    flow.crash_at(Step.SUBMIT)

    assert flow.run(worker="worker-b").status == "renewed"

    assert ca.submitted == 1
    assert flow.versions() == 2


def test_a_crash_after_merge_delivers_without_merging_twice(flow: Flow) -> None:
    """After MERGE the version is in Key Vault and the record at DELIVER; the next run only delivers."""
    flow.crash_at(Step.MERGE)
    assert flow.record.step == Step.DELIVER
    assert flow.versions() == 2
    flow.emulator.request_log.clear()

    assert flow.run(worker="worker-b").status == "renewed"

    assert flow.emulator.request_log.count(operation="merge") == 0
    assert flow.record.step == Step.DONE


def test_a_merge_the_journal_missed_is_found_in_key_vault(flow: Flow) -> None:
    """A crash between Key Vault's merge and the journal's save: the next run sees the tagged version and delivers."""
    flow.crash_at(Step.SUBMIT)
    record = flow.record
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in (record.issued_leaf_pem, *record.issued_chain)]
    der = serialization.Encoding.DER
    tags = {"renewal-ca": "corp", "renewal-previous-version": record.previous_version}
    flow.client.merge_certificate(flow.name, [c.public_bytes(der) for c in chain], tags=tags)
    flow.emulator.request_log.clear()

    outcome = flow.run(worker="worker-b")

    assert outcome.status == "renewed"
    assert flow.emulator.request_log.count(operation="merge") == 0
    assert flow.versions() == 2


def test_a_pending_operation_that_vanished_starts_over(flow: Flow) -> None:
    """Someone deleted the pending operation after BEGIN: the next run creates a new version and renews."""
    flow.crash_at(Step.BEGIN)
    flow.client.delete_certificate_operation(flow.name)

    assert flow.run(worker="worker-b").status == "renewed"

    assert flow.versions() == 2


class Deferring:
    """A CA that holds each request until approved, then signs with the local CA."""

    def __init__(self, inner: LocalCA) -> None:
        self.inner, self.approved = inner, False
        self.request: SigningRequest | None = None

    def submit(self, request: SigningRequest) -> Issued | Pending:
        self.request = request
        return Pending("ref-1", retry_after=30)

    def poll(self, reference: str) -> Issued | Pending:
        assert reference == "ref-1"
        assert self.request is not None
        return self.inner.submit(self.request) if self.approved else Pending(reference)


def test_a_deferring_ca_parks_the_renewal_at_poll_until_it_issues(flow: Flow) -> None:
    """Pending at the CA records its reference and a poll time; the next runs poll, and merge once issued."""
    ca = Deferring(flow.local_ca())
    flow.adapters = {"corp": ca}

    first = flow.run()
    assert (first.status, first.reason) == ("pending", "ca_pending")
    record = flow.record
    assert (record.step, record.ca_reference) == (Step.POLL, "ref-1")
    assert record.next_attempt_at == pytest.approx((flow.clock.now + timedelta(seconds=30)).timestamp())
    assert flow.run().status == "pending"
    ca.approved = True

    assert flow.run().status == "renewed"
    assert flow.reached[-3:] == [Step.POLL, Step.MERGE, Step.DELIVER]


class WrongKey:
    """A CA that answers a certificate for another key (same names, signed by the local CA)."""

    def __init__(self, inner: LocalCA) -> None:
        self.inner = inner

    def submit(self, request: SigningRequest) -> Issued | Pending:
        asked = x509.load_der_x509_csr(request.csr_der)
        names = asked.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        other = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(asked.subject)
            .add_extension(names, critical=False)
            .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        )
        der = other.public_bytes(serialization.Encoding.DER)
        return self.inner.submit(SigningRequest(der, request.vault_name, request.certificate_name))


def test_a_failed_verification_records_the_failure_and_nothing_of_the_answer(flow: Flow) -> None:
    """The answer is checked before it is recorded: the record stays at SUBMIT, with the reason and no leaf."""
    flow.adapters = {"corp": WrongKey(flow.local_ca())}

    outcome = flow.run()

    assert (outcome.status, outcome.reason, outcome.retryable) == ("failed", "key_mismatch", False)
    record = flow.record
    assert (record.step, record.issued_leaf_pem, record.last_reason, record.attempts) == (
        Step.SUBMIT,
        None,
        "key_mismatch",
        1,
    )
    assert record.next_attempt_at is None  # permanent: no retry time
    assert flow.versions() == 1


class Down:
    """A CA that is down."""

    def submit(self, request: SigningRequest) -> Issued | Pending:
        from renewal.errors import RetryableError

        raise RetryableError("the CA answered 503", reason="ca_unavailable", retry_after=90)


def test_a_transient_failure_gets_a_retry_time_by_its_type_and_stays_at_its_step(flow: Flow) -> None:
    """A CA outage is retryable: the record keeps its step and gets a next attempt no sooner than Retry-After."""
    flow.adapters = {"corp": Down()}

    outcome = flow.run()

    assert (outcome.status, outcome.reason, outcome.retryable) == ("failed", "ca_unavailable", True)
    record = flow.record
    assert record.step == Step.SUBMIT
    assert record.next_attempt_at >= (flow.clock.now + timedelta(seconds=90)).timestamp()


def test_a_legacy_journal_step_resumes_from_its_new_name() -> None:
    """Rows written before the steps were declared (begun, pending_ca, issued, merged) resume where they meant."""
    assert [Step.stored(s) for s in ("idle", "begun", "submitting", "pending_ca", "issued", "merged", "done")] == [
        Step.BEGIN,
        Step.SUBMIT,
        Step.SUBMIT,
        Step.POLL,
        Step.MERGE,
        Step.DELIVER,
        Step.DONE,
    ]
