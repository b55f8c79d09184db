"""The e-mail notifier against a real SMTP server on loopback (aiosmtpd), with STARTTLS on a throw-away CA and
AUTH for one user: what it submits, in which order, and what each failure means for the outbox."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from renewal.notify import NotifierSender, notifications_for, parse_notifiers
from renewal.outcome import Delivery, Outcome
from tests.fakes.est import LoopbackTls

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
USER = "renewal@example.com"
PASSWORD = "s3cret-smtp-passw0rd"
FAILED = Outcome(
    status="failed",
    reason="ca_rejected",
    message="the CA refused the CSR: role web does not allow example.org",
    vault_name="kv1",
    certificate_name="web",
    ca_profile="corp",
    previous_version="v1",
    trigger="sweep",
)


@dataclass
class Mailbox:
    """The SMTP server's handler: records every step and every accepted message; answers as scripted.

    Attributes:
        events: ``STARTTLS``, ``AUTH <mechanism>`` (with whether TLS was up), ``DATA``, in order.
        messages: the accepted messages, parsed.
        envelopes: (MAIL FROM, RCPT TOs) of accepted messages.
        rcpt_answer: a reply to every RCPT instead of accepting it.
        data_answer: a reply to DATA instead of accepting it.
    """

    events: list[str] = field(default_factory=list)
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str | None, list[str]]] = field(default_factory=list)
    rcpt_answer: str | None = None
    data_answer: str | None = None

    def handle_STARTTLS(self, server: SMTP, session: Session, envelope: Envelope) -> bool:
        self.events.append("STARTTLS")
        return True

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_answer is not None:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.events.append("DATA")
        if self.data_answer is not None:
            return self.data_answer
        content = envelope.original_content or b""
        self.messages.append(message_from_bytes(content, policy=policy.default))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.events.append(f"AUTH {mechanism} tls={session.ssl is not None}")
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        # handled=False: aiosmtpd answers itself (235, or 535 "Authentication credentials invalid").
        return AuthResult(success=ok, handled=False)


@dataclass
class MailServer:
    mailbox: Mailbox
    port: int
    tls: LoopbackTls


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTls:
    return LoopbackTls.create(tmp_path_factory.mktemp("smtp-tls"))


def serve(tls: LoopbackTls, *, starttls: bool = True, **parameters: Any) -> Iterator[MailServer]:
    mailbox = Mailbox()
    context = None
    if starttls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.server_cert_path)
    port = free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        server_hostname="mail.test",
        tls_context=context,
        require_starttls=starttls,
        **{"authenticator": mailbox.authenticate, "auth_require_tls": True, **parameters},
    )
    controller.start()
    try:
        yield MailServer(mailbox, port, tls)
    finally:
        controller.stop()


@pytest.fixture
def server(tls: LoopbackTls) -> Iterator[MailServer]:
    yield from serve(tls)


def environ_for(server: MailServer, **spec: object) -> dict[str, str]:
    options: dict[str, object] = {
        "kind": "email",
        "host": "127.0.0.1",
        "port": server.port,
        "username": USER,
        "password_setting": "SMTP_PASSWORD",
        "from": "renewal@example.com",
        "to": ["pki@example.com", "oncall@example.com"],
        "tls_ca_bundle": str(server.tls.ca_path),
        **spec,
    }
    options = {key: value for key, value in options.items() if value is not None}
    return {"RENEWAL_NOTIFIERS": json.dumps({"pki-mail": options}), "SMTP_PASSWORD": PASSWORD}


def mail(environ: dict[str, str], news: Outcome = FAILED) -> Delivery:
    configs = parse_notifiers(environ)
    (row,) = notifications_for(
        configs,
        news,
        previous=None,
        tags={},
        vault_url="https://kv1.vault.azure.net",
        now=NOW,
        expires_on=datetime(2026, 12, 20, tzinfo=UTC),
    )
    return NotifierSender(configs, environ, clock=lambda: NOW, timeout=5.0).send(row)


def test_a_notice_is_mailed_after_starttls_and_auth(server: MailServer) -> None:
    """TLS first, then AUTH (over TLS), then the message: subject naming certificate and status, plain text."""
    delivery = mail(environ_for(server))
    assert (delivery.delivered, delivery.status_code, delivery.error) == (True, 250, None)
    assert server.mailbox.events == ["STARTTLS", "AUTH PLAIN tls=True", "DATA"]
    (message,) = server.mailbox.messages
    assert message["Subject"] == "Renewal failed: web in kv1 [failed: ca_rejected]"
    assert message["From"] == "renewal@example.com"
    assert message["To"] == "pki@example.com, oncall@example.com"
    assert message["Date"] == "Tue, 01 Dec 2026 10:00:00 +0000"
    assert message["Message-ID"].startswith("<msg_")
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert FAILED.message in body
    assert re.search(r"^Certificate: +web\r?$", body, re.MULTILINE)
    assert re.search(r"^Expires: +2026-12-20T00:00:00Z\r?$", body, re.MULTILINE)
    assert "https://kv1.vault.azure.net/certificates/web/v1" in body
    assert server.mailbox.envelopes == [("renewal@example.com", ["pki@example.com", "oncall@example.com"])]


def test_auth_login_is_used_where_plain_is_not_offered(tls: LoopbackTls) -> None:
    """Either of the two mechanisms a submission server offers will do."""
    for server in serve(tls, auth_exclude_mechanism=["PLAIN"]):
        assert mail(environ_for(server)).delivered
        assert "AUTH LOGIN tls=True" in server.mailbox.events


def test_a_refused_login_is_permanent(server: MailServer) -> None:
    """535: the same password gets the same answer; no message is sent, and the password is not in the error."""
    environ = {**environ_for(server), "SMTP_PASSWORD": "wrong-password-value"}
    delivery = mail(environ)
    assert (delivery.delivered, delivery.permanent) == (False, True)
    assert delivery.error is not None
    assert "refused the login (535)" in delivery.error
    assert "wrong-password-value" not in delivery.error
    assert server.mailbox.messages == []


def test_a_server_without_starttls_gets_neither_the_password_nor_the_mail(tls: LoopbackTls) -> None:
    """A stripped STARTTLS offer (or a server that has none) is a permanent refusal before AUTH."""
    for server in serve(tls, starttls=False):
        delivery = mail(environ_for(server))
        assert (delivery.delivered, delivery.permanent) == (False, True)
        assert delivery.error is not None
        assert "does not offer STARTTLS" in delivery.error
        assert server.mailbox.events == []


def test_an_untrusted_server_certificate_is_permanent(server: MailServer) -> None:
    """Without the private CA (the system store only), the loopback server's certificate does not verify."""
    delivery = mail(environ_for(server, tls_ca_bundle=None))
    assert (delivery.delivered, delivery.permanent) == (False, True)
    assert delivery.error is not None
    assert "is not trusted" in delivery.error
    assert not any(event.startswith("AUTH") for event in server.mailbox.events)


@pytest.mark.parametrize(
    ("where", "answer", "permanent", "code"),
    [
        ("rcpt", "450 4.2.1 Mailbox busy, try later", False, "450"),
        ("rcpt", "550 5.1.1 No such user here", True, "550"),
        ("data", "451 4.3.0 Local error in processing", False, "451"),
        ("data", "554 5.7.1 Message refused as spam", True, "554"),
    ],
)
def test_reply_codes_decide_whether_retrying_helps(
    server: MailServer, where: str, answer: str, permanent: bool, code: str
) -> None:
    """4xx is transient and 5xx permanent (RFC 5321 §4.2.1); the error keeps the code, not the server's text."""
    if where == "rcpt":
        server.mailbox.rcpt_answer = answer
    else:
        server.mailbox.data_answer = answer
    delivery = mail(environ_for(server))
    assert (delivery.delivered, delivery.permanent) == (False, permanent)
    assert delivery.error is not None
    assert f"({code})" in delivery.error
    assert answer.split(" ", 2)[2] not in delivery.error


def test_an_unreachable_server_is_retried(tls: LoopbackTls) -> None:
    """Connection refused is transient."""
    server = MailServer(Mailbox(), free_port(), tls)
    delivery = mail(environ_for(server))
    assert (delivery.delivered, delivery.permanent, delivery.attempts) == (False, False, 1)
    assert delivery.error is not None
    assert "cannot reach the mail server at 127.0.0.1" in delivery.error


def test_a_relay_without_auth_takes_the_mail_without_a_password(tls: LoopbackTls) -> None:
    """No AUTH is attempted when the notifier has no username."""
    for server in serve(tls, starttls=False, auth_require_tls=False):
        delivery = mail(environ_for(server, starttls=False, username=None, password_setting=None))
        assert delivery.delivered
        assert server.mailbox.events == ["DATA"]


def test_the_password_is_in_no_log_record_of_ours(server: MailServer, caplog: pytest.LogCaptureFixture) -> None:
    """Neither a success nor a refusal writes the password (or its base64) anywhere renewal logs."""
    import base64

    shapes = [PASSWORD, base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()]
    with caplog.at_level(logging.DEBUG, logger="renewal"):
        mail(environ_for(server))
        server.mailbox.data_answer = "554 5.7.1 refused"
        mail(environ_for(server))
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("renewal")]
    assert ours
    assert not any(shape in message for message in ours for shape in shapes)
