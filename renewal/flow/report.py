"""The status report (the status HTTP trigger): what the journal knows, and when each certificate renews next."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from renewal.errors import RenewalError
from renewal.flow.runtime import Runtime
from renewal.pure.plan import listed_window_start
from renewal.pure.tags import is_paused
from renewal.shells.journal import OutboxItem, RenewalRecord

__all__ = ["status_report"]


def _iso(seconds: float | None) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") if seconds is not None else None


def status_report(runtime: Runtime) -> dict[str, Any]:
    """Renewals under way, recent failures, pending and dead-lettered deliveries, and the next renewal times.

    Raises:
        RetryableError: the journal is unreachable.
    """
    settings = runtime.settings
    vault_names = [v.name for v in settings.vaults.values()]
    records = runtime.journal.records(vault_names)
    outbox = runtime.journal.outbox(vault_names)

    next_renewals, paused, problems, errors = _listing(runtime)
    return {
        "generated_at": runtime.clock().isoformat(timespec="seconds"),
        "under_way": [_record_view(r) for r in records if r.under_way],
        "failures": [_record_view(r) for r in records if r.history and r.history[-1].get("status") == "failed"],
        "pending_deliveries": [_delivery_view(i) for i in outbox if i.status == "pending"],
        "dead_letters": [_delivery_view(i) for i in outbox if i.status == "dead"],
        "next_renewals": sorted(next_renewals, key=lambda r: r["renews_from"]),
        "paused": paused,
        "certificate_problems": problems,
        "list_errors": errors,
    }


def _listing(runtime: Runtime) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[dict[str, str]], list[str]]:
    """From each vault's listing: the next renewals, paused certificates, certificates whose tags cannot be read
    (each its own problem; the report goes on), and vaults that could not be listed."""
    settings = runtime.settings
    next_renewals: list[dict[str, Any]] = []
    paused: list[dict[str, str]] = []
    problems: list[dict[str, str]] = []
    errors: list[str] = []
    for vault in settings.vaults.values():
        try:
            listed = runtime.keyvault.vault(vault.url).list_certificate_properties()
        except RenewalError as exc:
            errors.append(f"{vault.name}: {exc.reason}")
            continue
        for item in listed:
            if is_paused(item.tags):
                paused.append({"vault": vault.name, "certificate": item.name})
                continue
            try:
                start = listed_window_start(settings, vault.name, item)
            except RenewalError as exc:
                problems.append(
                    {"vault": vault.name, "certificate": item.name, "reason": exc.reason, "message": exc.message}
                )
                continue
            if start is None or item.expires_on is None:
                continue
            next_renewals.append(
                {
                    "vault": vault.name,
                    "certificate": item.name,
                    "expires_on": item.expires_on.isoformat(timespec="seconds"),
                    "renews_from": start.isoformat(timespec="seconds"),
                }
            )
    return next_renewals, paused, problems, errors


def _record_view(record: RenewalRecord) -> dict[str, Any]:
    return {
        "vault": record.vault_name,
        "certificate": record.certificate_name,
        "step": record.step,
        "ca_profile": record.ca_profile,
        "previous_version": record.previous_version,
        "new_version": record.new_version,
        "ca_reference": record.ca_reference,
        "attempts": record.attempts,
        "next_attempt_at": _iso(record.next_attempt_at),
        "last_reason": record.last_reason,
        "last_error": record.last_error,
        "claimed_by": record.claim_owner,
        "last_outcome": record.history[-1] if record.history else None,
    }


def _delivery_view(item: OutboxItem) -> dict[str, Any]:
    return {
        "vault": item.vault_name,
        "certificate": item.certificate_name,
        "version": item.version,
        "endpoint": item.endpoint,
        "webhook_id": item.webhook_id,
        "attempts": item.attempts,
        "created_at": _iso(item.created_at),
        "next_attempt_at": _iso(item.next_attempt_at),
        "last_error": item.last_error,
    }
