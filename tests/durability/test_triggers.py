"""The HTTP triggers (manual renewal, status) and several vaults in one deployment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import azure.functions as func
import pytest

from devstack.functions_host import user_function
from devstack.keyvault import KeyVaultEmulator
from devstack.seed import seed_certificate
from renewal.errors import RetryableError
from renewal.flow.entry import current_runtime
from tests.durability.conftest import Durable
from tests.stack import Stack


def _call(name: str, method: str, url: str, route_params: dict[str, str] | None = None) -> func.HttpResponse:
    request = func.HttpRequest(method=method, url=url, body=b"", route_params=route_params or {})
    response: func.HttpResponse = user_function(name)(request)
    return response


def test_manual_renewal_runs_the_same_path_and_answers_the_outcome(durable: Durable) -> None:
    """POST /api/renew/{vault}/{name} renews the certificate and answers 200 with the outcome as JSON."""
    stack = durable.stack
    stack.seed("web", days_old=10, days_left=300)
    response = _call("manual_renew", "POST", "/api/renew/kv1/web", {"vault": "kv1", "name": "web"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    outcome = json.loads(response.get_body())
    assert (outcome["status"], outcome["trigger"]) == ("renewed", "manual")
    assert len(stack.versions("web")) == 2
    assert len(durable.deliveries_to("a")) == 1


@pytest.mark.parametrize(
    ("vault", "name", "status", "reason"),
    [("elsewhere", "web", 404, "vault_not_allowed"), ("kv1", "missing", 404, "certificate_not_found")],
)
def test_manual_renewal_of_something_unknown_is_404(
    durable: Durable, vault: str, name: str, status: int, reason: str
) -> None:
    """An unknown vault or certificate answers 404 with the reason, and creates nothing."""
    response = _call("manual_renew", "POST", f"/api/renew/{vault}/{name}", {"vault": vault, "name": name})
    assert response.status_code == status
    assert json.loads(response.get_body())["reason"] == reason
    assert durable.stack.emulator.request_log.count(operation="create") == 0


def test_status_shows_work_under_way_failures_and_next_renewals(durable: Durable) -> None:
    """GET /api/status answers the journal: renewals under way, failures, and when each certificate renews next."""
    stack = durable.stack
    stack.seed("steady", days_old=10, days_left=300)
    stack.seed("web")
    stack.emulator.faults.script("merge", 503, vault="kv1", count=100)
    with pytest.raises(RetryableError, match="Key Vault"):
        durable.deliver(stack.near_expiry_event("web"))

    response = _call("renewal_status", "GET", "/api/status")

    assert response.status_code == 200
    report = json.loads(response.get_body())
    [under_way] = report["under_way"]
    assert (under_way["certificate"], under_way["last_reason"]) == ("web", "keyvault_unavailable")
    assert under_way["next_attempt_at"] is not None
    assert [f["certificate"] for f in report["failures"]] == ["web"]
    # While its new version is pending, "web" lists as the disabled placeholder: under way, not scheduled.
    assert [r["certificate"] for r in report["next_renewals"]] == ["steady"]


@pytest.fixture
def second_vault(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyVaultEmulator]:
    """Another vault (its own emulator port), added to RENEWAL_VAULTS."""
    with KeyVaultEmulator(state_dir=stack.tmp / "kv2", vaults=["kv2"], tick_interval=None) as emulator:
        monkeypatch.setenv("RENEWAL_VAULTS", f"kv1={stack.emulator.url('kv1')},kv2={emulator.url('kv2')}")
        yield emulator


def test_several_vaults_are_served_each_with_one_reused_client(
    durable: Durable, second_vault: KeyVaultEmulator
) -> None:
    """Events from two allow-listed vaults are both renewed, each vault through one client reused across calls."""
    stack = durable.stack
    stack.seed("web")
    now = stack.now()
    seed_certificate(
        second_vault.certificate_client("kv2"),
        "api",
        stack.ca,
        dns_names=["api.corp.internal"],
        not_before=now - timedelta(days=300),
        not_after=now + timedelta(days=20),
        tags={"renewal-ca": "corp"},
    )
    runtime = current_runtime()
    first_client = runtime.keyvault.client_for(second_vault.url("kv2"))

    stack.deliver(stack.near_expiry_event("web"))
    stack.deliver(second_vault.fire("kv2", "api", "Microsoft.KeyVault.CertificateNearExpiry"))

    assert [o["status"] for o in stack.recorder.outcomes if o.get("certificate_name") in ("web", "api")] == [
        "renewed",
        "renewed",
    ]
    assert len(list(second_vault.certificate_client("kv2").list_properties_of_certificate_versions("api"))) == 2
    assert current_runtime() is runtime
    assert runtime.keyvault.client_for(second_vault.url("kv2")) is first_client
