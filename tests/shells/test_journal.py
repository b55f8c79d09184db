"""The Table Storage journal beyond the contract: its connection settings, and rows written before the current
layout (steps under their old names, a chain as PEM text, outbox rows keyed by webhook id alone)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
from azure.data.tables import TableClient

from devstack.azurite import Azurite
from renewal.shells.journal import Journal, table_client_from_environ
from renewal.steps import Step

START = 1_800_000_000.0
RETENTION = 7 * 24 * 3600.0
INTERMEDIATE = "-----BEGIN CERTIFICATE-----\nSU5URVJNRURJQVRF\n-----END CERTIFICATE-----\n"
ROOT = "-----BEGIN CERTIFICATE-----\nUk9PVA==\n-----END CERTIFICATE-----\n"


@pytest.fixture
def table(azurite: Azurite) -> TableClient:
    """A fresh table of the session's Azurite, created."""
    client = table_client_from_environ(
        {"RENEWAL_JOURNAL_CONNECTION": azurite.connection_string}, f"t{uuid.uuid4().hex[:12]}"
    )
    client.create_table()
    return client


def journal_on(table: TableClient) -> Journal:
    """A journal on ``table`` whose clock stands at ``START``."""
    return Journal(table, clock=lambda: START, claim_seconds=60, retention_seconds=RETENTION)


def legacy_outbox_row(webhook_id: str, certificate: str, **properties: Any) -> dict[str, Any]:
    """An outbox row as the journal wrote it before rows were keyed by certificate."""
    return {
        "PartitionKey": "kv1",
        "RowKey": f"o|{webhook_id}",
        "vault_name": "kv1",
        "webhook_id": webhook_id,
        "endpoint": "a",
        "certificate_name": certificate,
        "version": "v2",
        "payload": "{}",
        "status": "pending",
        "attempts": 0,
        "created_at": START,
        "next_attempt_at": START,
        **properties,
    }


def test_development_storage_shorthand_means_azurite() -> None:
    """AzureWebJobsStorage=UseDevelopmentStorage=true points at Azurite's default Table endpoint."""
    client = table_client_from_environ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "renewals")
    assert client.url.startswith("http://127.0.0.1:10002/devstoreaccount1")


@pytest.mark.parametrize(
    ("stored", "step"),
    [("begun", Step.SUBMIT), ("pending_ca", Step.POLL), ("issued", Step.MERGE), ("merged", Step.DELIVER)],
)
def test_a_record_of_the_old_layout_reads_as_its_step(table: TableClient, stored: str, step: Step) -> None:
    """A record written with an old step name and a concatenated chain reads as its Step and one PEM each."""
    table.create_entity(
        {
            "PartitionKey": "kv1",
            "RowKey": "r|web",
            "vault_name": "kv1",
            "certificate_name": "web",
            "step": stored,
            "attempts": 1,
            "history": "[]",
            "issued_chain_pem": INTERMEDIATE + ROOT,
        }
    )
    record = journal_on(table).get("kv1", "web")
    assert record is not None
    assert (record.step, record.issued_chain, record.under_way) == (step, (INTERMEDIATE, ROOT), True)


def test_a_failed_record_of_the_old_layout_is_retried(table: TableClient) -> None:
    """A record left as "failed" with a retry time is due once it comes, and is saved under the new names."""
    table.create_entity(
        {
            "PartitionKey": "kv1",
            "RowKey": "r|web",
            "certificate_name": "web",
            "step": "failed",
            "next_attempt_at": START - 1,
            "issued_chain_pem": INTERMEDIATE,
        }
    )
    journal = journal_on(table)
    [due] = journal.due_records(START)
    assert (due.certificate_name, due.step) == ("web", Step.BEGIN)
    journal.save(replace(due, attempts=2))
    entity = table.get_entity("kv1", "r|web")
    assert (entity["step"], json.loads(entity["issued_chain"])) == ("begin", [INTERMEDIATE])
    assert "issued_chain_pem" not in entity


def test_outbox_rows_of_the_old_layout_are_still_read_and_saved(table: TableClient) -> None:
    """A certificate's outbox includes its rows keyed by webhook id alone, which save and trim where they are."""
    table.create_entity(legacy_outbox_row("msg_legacy_web", "web"))
    table.create_entity(
        legacy_outbox_row("msg_legacy_other", "other", status="delivered", created_at=START - RETENTION - 1)
    )
    journal = journal_on(table)
    [item] = journal.outbox(["kv1"], certificate_name="web")
    assert item.webhook_id == "msg_legacy_web"
    assert sorted(i.webhook_id for i in journal.outbox(["kv1"])) == ["msg_legacy_other", "msg_legacy_web"]
    saved = journal.save_outbox(replace(item, status="delivered"))
    assert saved is not None
    assert table.get_entity("kv1", "o|msg_legacy_web")["status"] == "delivered"
    assert journal.save_outbox(replace(item, attempts=3)) is None
    assert journal.trim(START) == 1
    assert [i.webhook_id for i in journal.outbox(["kv1"])] == ["msg_legacy_web"]


def test_a_clean_partition_is_not_searched_for_old_rows_again(table: TableClient) -> None:
    """Once a vault shows no outbox rows of the old layout, reading a certificate's outbox is one range query."""
    journal = journal_on(table)
    journal.outbox(["kv1"], certificate_name="web")
    first = journal.reads.requests
    journal.outbox(["kv1"], certificate_name="web")
    assert (first, journal.reads.requests - first) == (2, 1)


def test_a_delivery_with_rows_of_both_layouts_is_listed_once(table: TableClient) -> None:
    """A delivery found under its old key and its new one is listed once, as its new row holds it."""
    table.create_entity(legacy_outbox_row("msg_1", "web"))
    journal = journal_on(table)
    [legacy] = journal.outbox(["kv1"], certificate_name="web")
    journal.add_outbox([replace(legacy, attempts=4)])
    assert [(i.webhook_id, i.attempts) for i in journal.outbox(["kv1"], certificate_name="web")] == [("msg_1", 4)]
    assert [(i.webhook_id, i.attempts) for i in journal.outbox(["kv1"])] == [("msg_1", 4)]


def test_records_of_every_age_under_way_are_found_by_the_sweeps_filter(table: TableClient) -> None:
    """Rows written before the sweep filtered server-side (old step names, no claim or retry fields, no step at
    all) are found when under way and left out when idle, with no migration."""
    rows: dict[str, dict[str, Any]] = {
        "old-pending-ca": {"step": "pending_ca"},
        "old-issued": {"step": "issued", "attempts": 2},
        "old-failed-retry": {"step": "failed", "next_attempt_at": START + 60},
        "old-idle": {"step": "idle"},
        "old-failed-for-good": {"step": "failed", "last_reason": "ca_rejected"},
        "no-step": {"attempts": 0},
        "odd-step": {"step": "Something-New"},
    }
    for name, properties in rows.items():
        table.create_entity({"PartitionKey": "kv1", "RowKey": f"r|{name}", "certificate_name": name, **properties})
    journal = journal_on(table)
    found = sorted(r.certificate_name for r in journal.under_way_records(["kv1"]))
    assert found == ["old-failed-retry", "old-issued", "old-pending-ca"]
    # The unknown step is fetched (the filter cannot know it is idle), and judged idle here: 4 rows read.
    assert journal.reads.entities == 4
