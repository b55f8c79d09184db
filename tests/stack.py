"""The whole local stack for tests that go in through ``function_app``: Key Vault emulator, local CA, webhook
sink, Azurite for the journal. Test folders import the ``stack`` fixture from here in their ``conftest.py``."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from devstack.azurite import Azurite
from devstack.functions_host import event_grid_event, user_function
from devstack.keyvault import KeyVaultEmulator
from devstack.localca import LocalCAFiles, create_local_ca
from devstack.seed import seed_certificate
from devstack.webhook_sink import WebhookSink

VAULT = "kv1"
TOKEN = "integration-token"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"


class OutcomeRecorder(logging.Handler):
    """Keeps every renewal outcome the app logs, and every record's text, for assertions."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.outcomes: list[dict[str, Any]] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        outcome = getattr(record, "renewal_outcome", None)
        if isinstance(outcome, dict):
            self.outcomes.append(outcome)

    @property
    def last(self) -> dict[str, Any]:
        assert self.outcomes, "the app recorded no outcome"
        return self.outcomes[-1]


@dataclass
class Stack:
    """The running local stack and handles on each part."""

    emulator: KeyVaultEmulator
    ca: LocalCAFiles
    sink: WebhookSink
    recorder: OutcomeRecorder
    tmp: Path
    function: Any = field(default=None)
    env: pytest.MonkeyPatch | None = field(default=None)

    @property
    def client(self) -> Any:
        return self.emulator.certificate_client(VAULT)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.emulator.clock(), UTC)

    def seed(
        self, name: str, *, days_left: float = 25, tags: dict[str, str] | None = None, days_old: float = 300
    ) -> x509.Certificate:
        """Seed ``name``, issued by the local CA ``days_old`` days ago, expiring in ``days_left`` days."""
        now = self.now()
        return seed_certificate(
            self.client,
            name,
            self.ca,
            dns_names=[f"{name}.corp.internal", f"www.{name}.corp.internal"],
            not_before=now - timedelta(days=days_old),
            not_after=now + timedelta(days=days_left),
            tags={"renewal-ca": "corp"} if tags is None else tags,
        )

    def near_expiry_event(self, name: str, *, vault: str = VAULT) -> dict[str, Any]:
        """The Event Grid event the emulator publishes for the certificate's current version."""
        envelope = self.emulator.fire(VAULT, name, NEAR_EXPIRY)
        if vault != VAULT:
            envelope = json.loads(json.dumps(envelope).replace(f'"{VAULT}"', f'"{vault}"'))
            envelope["topic"] = envelope["topic"].replace(f"/vaults/{VAULT}", f"/vaults/{vault}")
        return envelope

    def deliver(self, envelope: dict[str, Any]) -> None:
        """Call the decorated function with the ``func.EventGridEvent`` the host would build."""
        self.function(event_grid_event(envelope))

    def env_value(self, name: str) -> str:
        """The current value of an environment variable the stack set."""
        import os

        return os.environ[name]

    def versions(self, name: str) -> list[Any]:
        return list(self.client.list_properties_of_certificate_versions(name))

    def authenticated_requests(self) -> int:
        return self.emulator.request_log.authenticated_requests(vault=VAULT)


@pytest.fixture
def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, azurite: Azurite
) -> Iterator[Stack]:
    """Emulator (vault kv1), local CA profile ``corp``, a webhook sink, and the app configured for them.

    Parametrize indirectly with ``"previous"`` to have the emulator answer "get latest" with the previous
    version while a renewal is pending (the real service's behaviour there is not recorded).
    """
    latest_while_pending = getattr(request, "param", "placeholder")
    recorder = OutcomeRecorder()
    logger = logging.getLogger()
    logger.addHandler(recorder)
    previous_level = logger.level
    logger.setLevel(logging.DEBUG)
    ca = create_local_ca(tmp_path / "ca")
    try:
        with (
            KeyVaultEmulator(
                state_dir=tmp_path / "kv",
                vaults=[VAULT],
                tick_interval=None,
                latest_while_pending=latest_while_pending,
            ) as emulator,
            WebhookSink(WEBHOOK_SECRET, journal=tmp_path / "deliveries.jsonl") as sink,
        ):
            monkeypatch.setenv("RENEWAL_JOURNAL_CONNECTION", azurite.connection_string)
            monkeypatch.setenv("RENEWAL_JOURNAL_TABLE", f"t{uuid.uuid4().hex[:16]}")
            monkeypatch.setenv("RENEWAL_VAULTS", f"{VAULT}={emulator.url(VAULT)}")
            monkeypatch.setenv("RENEWAL_KEYVAULT_CA_BUNDLE", str(emulator.ca_pem_path))
            monkeypatch.setenv("RENEWAL_KEYVAULT_STATIC_TOKEN", TOKEN)
            monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps({"corp": ca.profile_options()}))
            monkeypatch.delenv("RENEWAL_DEFAULT_CA_PROFILE", raising=False)
            monkeypatch.setenv(
                "RENEWAL_WEBHOOKS", json.dumps({"sink": {"url": sink.url, "secret_setting": "SINK_SECRET"}})
            )
            monkeypatch.setenv("SINK_SECRET", WEBHOOK_SECRET)
            yield Stack(
                emulator=emulator,
                ca=ca,
                sink=sink,
                recorder=recorder,
                tmp=tmp_path,
                function=user_function("keyvault_certificate_events"),
                env=monkeypatch,
            )
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(previous_level)
