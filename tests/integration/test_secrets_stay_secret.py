"""Secrets stay secret: with a secret in every place the app can hold one, renewals that fail in every way show
none of them in any log record (any level), journal row, status answer or outcome event.

The CA here is a parrot: it speaks Vault's PKI API on loopback and answers every request with an error (or a
"certificate") that echoes everything it was sent, headers and body, token and CSR included. The outcome topic
answers 401 echoing its access key; a webhook endpoint with a function key in its query fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import renewal
from devstack.keyvault import ensure_tls_files
from renewal.errors import RetryableError
from tests.fakes.loopback import LoopbackServer, Request, Response, json_response
from tests.integration.conftest import TOKEN, WEBHOOK_SECRET, Stack

VAULT_TOKEN = "hvs.CAESIsecretVaultToken0123456789abcdef"
SECRET_ID = "c8e5f1d2-secret-id-0123-approle-0987654321"
TOPIC_KEY = "topicAccessKey+0123456789abcdefSECRET="
FUNCTION_KEY = "functionKeyQueryValue0123456789SECRET"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SECRETS = (VAULT_TOKEN, SECRET_ID, TOPIC_KEY, FUNCTION_KEY, WEBHOOK_SECRET, TOKEN, AZURITE_KEY)


def echo(request: Request) -> str:
    """Everything the CA was sent, as a careless CA would put it in an error: credentials first, so that no
    truncation further on can hide them."""
    headers = sorted(request.headers.items(), key=lambda item: not any(w in item[0] for w in ("token", "auth", "key")))
    shown = "; ".join(f"{k}: {v}" for k, v in headers)
    return f"body[{request.body.decode(errors='replace')}] headers[{shown}] {request.method} {request.path}"


# Each way the parrot CA answers: a permanent refusal, an outage, garbage, an unreadable "certificate".
PARROT_ANSWERS: dict[str, Callable[[Request], Response]] = {
    "rejected": lambda r: json_response(400, {"errors": [echo(r)]}),
    "denied": lambda r: json_response(403, {"errors": [echo(r)]}),
    "outage": lambda r: json_response(500, {"errors": [echo(r)]}),
    "html": lambda r: Response(502, f"<html><body>{echo(r)}</body></html>".encode(), {"Content-Type": "text/html"}),
    "garbage": lambda r: Response(200, echo(r).encode(), {"Content-Type": "application/json"}),
    "not-a-certificate": lambda r: json_response(200, {"data": {"certificate": echo(r), "issuing_ca": echo(r)}}),
}


class Parrot:
    """A Vault PKI fake whose every answer is chosen by ``mode`` and echoes the request."""

    def __init__(self) -> None:
        self.mode = "rejected"

    def __call__(self, request: Request) -> Response:
        return PARROT_ANSWERS[self.mode](request)


class Capture(logging.Handler):
    """Every log record, formatted the way a handler would (message, arguments and exception text)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + json.dumps(getattr(record, "renewal_outcome", None)))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.fixture
def secret_stack(stack: Stack, monkeypatch: pytest.MonkeyPatch, capture: Capture) -> Iterator[dict[str, Any]]:
    """The stack with a secret in every place: Vault token and AppRole secret, webhook secrets and a function key
    in a webhook URL, the outcome topic's key, the static Key Vault token and the storage account key."""
    parrot = Parrot()
    tls = ensure_tls_files(stack.tmp / "kv")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert_path, tls.server_key_path)
    topic = LoopbackServer(lambda r: json_response(401, {"error": {"message": echo(r)}}), tls=context)
    with LoopbackServer(parrot) as ca, topic:
        local = {k: v for k, v in stack.ca.profile_options().items()}
        profiles = {
            "corp": local,
            "parrot-token": {"adapter": "vault", "url": ca.url, "role": "web", "token_setting": "VAULT_TOKEN"},
            "parrot-approle": {
                "adapter": "vault",
                "url": ca.url,
                "role": "web",
                "role_id": "role-id-not-secret",
                "secret_id_setting": "VAULT_SECRET_ID",
            },
        }
        monkeypatch.setenv("RENEWAL_CA_PROFILES", json.dumps(profiles))
        monkeypatch.setenv("VAULT_TOKEN", VAULT_TOKEN)
        monkeypatch.setenv("VAULT_SECRET_ID", SECRET_ID)
        monkeypatch.setenv(
            "RENEWAL_WEBHOOKS",
            json.dumps(
                {
                    "sink": {"url": stack.sink.url, "secret_setting": "SINK_SECRET"},
                    "keyed": {"url": f"{stack.sink.url}?code={FUNCTION_KEY}", "secret_setting": "SINK_SECRET"},
                }
            ),
        )
        monkeypatch.setenv("RENEWAL_OUTCOME_TOPIC_ENDPOINT", f"{topic.url}/api/events")
        monkeypatch.setenv("TOPIC_KEY", TOPIC_KEY)
        monkeypatch.setenv("RENEWAL_OUTCOME_TOPIC_KEY_SETTING", "TOPIC_KEY")
        monkeypatch.setenv("RENEWAL_RETRY_SECONDS", "0")
        monkeypatch.setenv("RENEWAL_WEBHOOK_RETRY_SECONDS", "0")
        yield {"parrot": parrot, "ca": ca, "topic": topic}


def leaked(text: str) -> list[str]:
    """The secrets (or PEM bodies) that appear in ``text``."""
    found = [secret[:12] + "..." for secret in SECRETS if secret in text]
    if "-----BEGIN" in text:
        found.append("a PEM block")
    return found


def journal_rows(stack: Stack) -> str:
    from renewal.flow.entry import current_runtime

    table = current_runtime().journal._ensure_table()  # the test reads the rows as they are stored
    return json.dumps([dict(entity) for entity in table.list_entities()], default=str)


def test_no_secret_appears_anywhere_whatever_fails(
    stack: Stack, secret_stack: dict[str, Any], capture: Capture
) -> None:
    """Parrot CA answers of every kind, Key Vault faults and failing webhooks leak no secret and no PEM body."""
    parrot, ca = secret_stack["parrot"], secret_stack["ca"]
    names = []
    for profile in ("parrot-token", "parrot-approle"):
        for mode in PARROT_ANSWERS:
            name = f"{profile}-{mode}"
            names.append(name)
            stack.seed(name, tags={"renewal-ca": profile})
            parrot.mode = mode
            # A transient failure is raised to the host for a redelivery; its text is checked below.
            with contextlib.suppress(RetryableError):
                stack.deliver(stack.near_expiry_event(name))
            assert stack.recorder.last["status"] == "failed", (name, stack.recorder.last)

    # Key Vault fails the merge, then the webhooks (one with a function key in its URL) fail, for an honest CA.
    stack.seed("kv-fault", tags={"renewal-ca": "corp"})
    stack.emulator.faults.script("merge", 500, vault="kv1", count=50)
    with pytest.raises(RetryableError):
        stack.deliver(stack.near_expiry_event("kv-fault"))
    stack.emulator.faults.clear()
    stack.seed("hooks-down", tags={"renewal-ca": "corp"})
    stack.sink.fail_next(20, status=500)
    stack.deliver(stack.near_expiry_event("hooks-down"))
    assert stack.recorder.last["status"] == "renewed"
    renewal.run_sweep()

    assert ca.requests, "the parrot CA was asked"
    assert any(VAULT_TOKEN in r.headers.get("x-vault-token", "") for r in ca.requests), "the token was sent"
    assert any(SECRET_ID.encode() in r.body for r in ca.requests), "the AppRole secret id was sent"
    assert secret_stack["topic"].requests, "the topic was tried with its key"
    status_code, status = renewal.status()
    everything = {
        "log records": "\n".join(capture.lines),
        "journal rows": journal_rows(stack),
        "status answer": status,
        "webhook bodies": "\n".join(d.body.decode(errors="replace") for d in stack.sink.deliveries),
        "outcome events": "\n".join(r.body.decode(errors="replace") for r in secret_stack["topic"].requests),
    }
    assert status_code == 200
    assert len(capture.lines) > 100
    for where, text in everything.items():
        assert leaked(text) == [], f"{where} leak {leaked(text)}"
