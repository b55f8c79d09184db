"""Teams and Slack notifiers against loopback fakes of their webhooks: what they post, and what each answer means
for the outbox (delivered, retry later, dead-letter now), with no secret in any error or log record."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
import requests

from renewal.notify import NotifierSender, notifications_for, notifier_secret_values, parse_notifiers
from renewal.outcome import Delivery, Outcome
from renewal.pure.redact import SecretScrubber
from renewal.shells.journal import OutboxItem
from tests.fakes.chat_webhooks import FakeSlackWebhook, FakeTeamsWorkflow, slack_error, teams_error
from tests.fakes.loopback import LoopbackServer, Response

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FAILED = Outcome(
    status="failed",
    reason="ca_rejected",
    message="the CA refused the CSR: <!channel> role web does not allow example.org",
    vault_name="kv1",
    certificate_name="web",
    ca_profile="corp",
    previous_version="v1",
    trigger="sweep",
)
RENEWED = Outcome(
    status="renewed",
    reason="renewed",
    message="new version v2 merged",
    vault_name="kv1",
    certificate_name="web",
    ca_profile="corp",
    previous_version="v1",
    new_version="v2",
    trigger="event_grid",
)
EVERYTHING = ["renewed", "failed", "at_risk", "dead_letter", "recovered"]


def environ_for(teams_url: str, slack_url: str) -> dict[str, str]:
    return {
        "RENEWAL_NOTIFIERS": json.dumps(
            {
                "ops-teams": {"kind": "teams", "url_setting": "OPS_TEAMS_URL", "outcomes": EVERYTHING},
                "ops-slack": {"kind": "slack", "url_setting": "OPS_SLACK_URL", "outcomes": EVERYTHING},
            }
        ),
        "OPS_TEAMS_URL": teams_url,
        "OPS_SLACK_URL": slack_url,
    }


def sender_for(environ: dict[str, str]) -> NotifierSender:
    return NotifierSender(parse_notifiers(environ), environ, clock=lambda: NOW, timeout=5.0)


def row(environ: dict[str, str], endpoint: str, news: Outcome = FAILED) -> OutboxItem:
    rows = notifications_for(
        parse_notifiers(environ),
        news,
        previous=None,
        tags={},
        vault_url="https://kv1.vault.azure.net",
        now=NOW,
        expires_on=datetime(2026, 12, 20, tzinfo=UTC),
    )
    return next(item for item in rows if item.endpoint == endpoint)


def send(teams: FakeTeamsWorkflow, slack: FakeSlackWebhook, endpoint: str, news: Outcome = FAILED) -> Delivery:
    environ = environ_for(teams.url, slack.url)
    return sender_for(environ).send(row(environ, endpoint, news))


def test_teams_gets_an_adaptive_card_with_the_title_facts_and_message(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook
) -> None:
    """The workflow takes the message (202) and its card says what happened to which certificate."""
    delivery = send(teams, slack, "notify:ops-teams")
    assert (delivery.delivered, delivery.status_code, delivery.attempts, delivery.error) == (True, 202, 1, None)
    (card,) = teams.cards
    assert card["version"] == "1.4"
    title, facts, message, origin = card["body"]
    assert title["text"] == "Renewal failed: web in kv1"
    assert title["color"] == "Attention"
    assert {fact["title"]: fact["value"] for fact in facts["facts"]} == {
        "Vault": "kv1",
        "Certificate": "web",
        "Status": "failed",
        "Reason": "ca_rejected",
        "Expires": "2026-12-20T00:00:00Z",
        "Previous version": "v1",
        "CA profile": "corp",
        "Trigger": "sweep",
    }
    assert message["text"] == FAILED.message
    assert "https://kv1.vault.azure.net/certificates/web/v1" in origin["text"]


def test_slack_gets_block_kit_with_a_fallback_text_and_escaped_text(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook
) -> None:
    """Slack answers ``ok``; the message is a header, a section with the facts as fields and a context line, and
    text from elsewhere cannot ping the channel."""
    delivery = send(teams, slack, "notify:ops-slack", RENEWED)
    assert (delivery.delivered, delivery.status_code) == (True, 200)
    (message,) = slack.messages
    assert message["text"].startswith("Certificate renewed: web in kv1 (renewed)")
    header, section, context = message["blocks"]
    assert header["text"]["text"] == "Certificate renewed: web in kv1"
    assert {"type": "mrkdwn", "text": "*New version*\nv2"} in section["fields"]
    assert "notifier ops-slack" in context["elements"][0]["text"]
    send(teams, slack, "notify:ops-slack")
    assert "&lt;!channel&gt;" in slack.messages[1]["blocks"][1]["text"]["text"]
    assert "<!channel>" not in json.dumps(slack.messages[1]["blocks"])


@pytest.mark.parametrize(
    ("answer", "permanent", "words"),
    [
        (slack_error(400, "invalid_payload"), True, "HTTP 400 invalid_payload"),
        (slack_error(400, "invalid_blocks"), True, "HTTP 400 invalid_blocks"),
        (slack_error(403, "action_prohibited"), True, "HTTP 403 action_prohibited"),
        (slack_error(404, "no_service"), True, "webhook was revoked"),
        (slack_error(404, "channel_not_found"), True, "channel no longer exists"),
        (slack_error(410, "channel_is_archived"), True, "channel is archived"),
        (slack_error(500, "rollup_error"), False, "HTTP 500 rollup_error"),
        (slack_error(503, "<html>Service Unavailable</html>"), False, "HTTP 503;"),
        (Response(200, b"<html>please log in</html>"), False, "HTTP 200 without 'ok'"),
    ],
)
def test_each_slack_answer_says_whether_retrying_helps(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook, answer: Response, permanent: bool, words: str
) -> None:
    """Every 4xx but 429 is permanent (dead-lettered at once); 5xx and a 200 that is not Slack's are retried;
    only a short code from the answer is repeated."""
    slack.script(answer)
    delivery = send(teams, slack, "notify:ops-slack")
    assert not delivery.delivered
    assert delivery.permanent is permanent
    assert delivery.error is not None
    assert words in delivery.error
    assert "html" not in delivery.error


def test_slack_throttling_is_retried_after_the_pause_it_asks_for(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook
) -> None:
    """A 429's ``Retry-After`` (seconds) becomes the delivery's pause."""
    slack.script(slack_error(429, "rate_limited", retry_after="30"))
    delivery = send(teams, slack, "notify:ops-slack")
    assert (delivery.delivered, delivery.permanent, delivery.retry_after_seconds) == (False, False, 30.0)


@pytest.mark.parametrize(
    ("answer", "permanent", "words"),
    [
        (teams_error(400, "InvalidRequestContent"), True, "refused the card"),
        (teams_error(401, "DirectApiInvalidAuthorizationSignature"), True, "URL was regenerated"),
        (teams_error(403, "DirectApiAuthorizationRequired"), True, "HTTP 403 DirectApiAuthorizationRequired"),
        (teams_error(404, "WorkflowNotFound"), True, "does not exist or is turned off"),
        (teams_error(413, "MessageTooLarge"), True, "refused the card"),
        (teams_error(500, "InternalServerError"), False, "HTTP 500 InternalServerError"),
        (teams_error(502, "BadGateway"), False, "trying again later"),
        (Response(504, b"<html>gateway timeout</html>"), False, "HTTP 504;"),
    ],
)
def test_each_teams_answer_says_whether_retrying_helps(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook, answer: Response, permanent: bool, words: str
) -> None:
    """Refusals are permanent; outages are retried; the error repeats the Logic Apps code, never its message."""
    teams.script(answer)
    delivery = send(teams, slack, "notify:ops-teams")
    assert not delivery.delivered
    assert delivery.permanent is permanent
    assert delivery.error is not None
    assert words in delivery.error


def test_teams_throttling_honours_an_http_date_retry_after(teams: FakeTeamsWorkflow, slack: FakeSlackWebhook) -> None:
    """``Retry-After`` as a date is read against the injected clock."""
    teams.script(teams_error(429, "TooManyRequests", retry_after="Tue, 01 Dec 2026 10:02:00 GMT"))
    delivery = send(teams, slack, "notify:ops-teams")
    assert (delivery.permanent, delivery.retry_after_seconds) == (False, 120.0)


def test_a_teams_url_with_a_stale_signature_is_refused_for_good(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook
) -> None:
    """A regenerated workflow URL makes the old one answer 401: dead-letter it rather than retry for a day."""
    environ = environ_for(teams.url.replace(teams.signature, "stale-signature-value"), slack.url)
    delivery = sender_for(environ).send(row(environ, "notify:ops-teams"))
    assert (delivery.delivered, delivery.permanent) == (False, True)
    assert not teams.cards


def test_a_redirect_is_not_followed(teams: FakeTeamsWorkflow, slack: FakeSlackWebhook) -> None:
    """The URL is the credential: a 3xx is refused, naming only the host, and nothing reaches the Location."""
    with LoopbackServer() as elsewhere:
        slack.script(Response(307, headers={"Location": elsewhere.url + "/collect"}))
        delivery = send(teams, slack, "notify:ops-slack")
        assert (delivery.delivered, delivery.permanent) == (False, True)
        assert delivery.error is not None
        assert "redirect" in delivery.error
        assert elsewhere.requests == []


def test_an_unreachable_webhook_is_retried() -> None:
    """Connection refused is transient."""
    with LoopbackServer() as closed:
        url = closed.url + "/services/T0001/B0001/secretsecretsecret"
    environ = environ_for("http://127.0.0.1:9/unused", url)
    delivery = sender_for(environ).send(row(environ, "notify:ops-slack"))
    assert (delivery.delivered, delivery.permanent, delivery.attempts) == (False, False, 1)
    assert delivery.error is not None
    assert "cannot reach the Slack webhook" in delivery.error
    assert "secretsecretsecret" not in delivery.error


def test_a_row_for_a_notifier_no_longer_configured_waits_for_the_maximum_age(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook
) -> None:
    """As for webhooks: the setting may be mid-change, so the row is kept and retried, not dropped."""
    environ = environ_for(teams.url, slack.url)
    stray = row(environ, "notify:ops-slack")
    other = {
        **environ,
        "RENEWAL_NOTIFIERS": json.dumps({"ops-teams": {"kind": "teams", "url_setting": "OPS_TEAMS_URL"}}),
    }
    delivery = sender_for(other).send(stray)
    assert (delivery.delivered, delivery.permanent, delivery.attempts) == (False, False, 0)
    assert slack.requests == []


def test_a_broken_row_is_dead_lettered_without_sending(teams: FakeTeamsWorkflow, slack: FakeSlackWebhook) -> None:
    """A payload that cannot be read will never be readable."""
    environ = environ_for(teams.url, slack.url)
    good = row(environ, "notify:ops-slack")
    broken = OutboxItem(
        vault_name=good.vault_name,
        webhook_id=good.webhook_id,
        endpoint=good.endpoint,
        certificate_name=good.certificate_name,
        version=good.version,
        payload='{"kind": "failed"}',
    )
    delivery = sender_for(environ).send(broken)
    assert (delivery.delivered, delivery.permanent, delivery.attempts) == (False, True, 0)
    assert slack.requests == []


def test_no_secret_reaches_an_error_or_a_log_record(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    """With the scrubber the app installs (fed by ``notifier_secret_values``), no record at any level (urllib3's
    request lines included) holds a webhook URL or its credential; the notifiers' own records and errors never
    hold one even without it."""
    environ = environ_for(teams.url, slack.url)
    secrets = [teams.url, teams.signature, slack.url, slack.secret]
    previous = logging.getLogRecordFactory()
    SecretScrubber.install(notifier_secret_values(parse_notifiers(environ), environ))
    try:
        # urllib3's own level too: the app keeps the SDK's transports at WARNING (RENEWAL_SDK_LOG_LEVEL).
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="urllib3"):
            deliveries = [sender_for(environ).send(row(environ, "notify:ops-teams"))]
            slack.script(slack_error(410, "channel_is_archived"), slack_error(500, "rollup_error"))
            deliveries += [sender_for(environ).send(row(environ, "notify:ops-slack")) for _ in range(3)]
    finally:
        logging.setLogRecordFactory(previous)
    assert [d.delivered for d in deliveries] == [True, False, False, True]
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    for record in caplog.records:
        assert not any(secret in record.getMessage() for secret in secrets), record.name
    for delivery in deliveries:
        assert not any(secret in (delivery.error or "") for secret in secrets)


def test_the_notifiers_own_records_hold_no_secret_without_the_scrubber(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    """What renewal's loggers write is clean by construction."""
    environ = environ_for(teams.url, slack.url)
    teams.script(teams_error(401, "DirectApiInvalidAuthorizationSignature", f"bad sig {teams.signature}"))
    with caplog.at_level(logging.DEBUG, logger="renewal"):
        sender_for(environ).send(row(environ, "notify:ops-teams"))
        sender_for(environ).send(row(environ, "notify:ops-slack"))
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("renewal")]
    assert ours
    assert not any(secret in message for message in ours for secret in (teams.signature, slack.secret))


def test_the_session_given_is_the_one_used(teams: FakeTeamsWorkflow, slack: FakeSlackWebhook) -> None:
    """A session can be injected (proxies, adapters), and it is not asked to follow redirects."""
    environ = environ_for(teams.url, slack.url)
    calls: list[object] = []

    class Recording(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(kwargs.get("allow_redirects"))
            return super().request(method, url, *args, **kwargs)

    sender = NotifierSender(parse_notifiers(environ), environ, clock=lambda: NOW, session=Recording())
    assert sender.send(row(environ, "notify:ops-slack")).delivered
    assert calls == [False]


def test_a_surprise_in_a_notifier_is_a_retryable_delivery_not_a_crash(
    teams: FakeTeamsWorkflow, slack: FakeSlackWebhook
) -> None:
    """An exception nobody planned for (a bug, a library's oddity) leaves the row for a later attempt and lets
    the outbox go on with the other rows."""
    environ = environ_for(teams.url, slack.url)

    class Broken(requests.Session):
        def request(self, method, url, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise RuntimeError(f"surprise while posting to {url}")

    sender = NotifierSender(parse_notifiers(environ), environ, clock=lambda: NOW, session=Broken())
    delivery = sender.send(row(environ, "notify:ops-slack"))
    assert (delivery.delivered, delivery.permanent) == (False, False)
    assert delivery.error == "slack: the notification could not be sent (RuntimeError)"


def test_a_line_break_in_a_stored_name_cannot_forge_anything(teams: FakeTeamsWorkflow, slack: FakeSlackWebhook) -> None:
    """Names are read back from a table: control characters become spaces before they reach a message."""
    environ = environ_for(teams.url, slack.url)
    good = row(environ, "notify:ops-slack")
    payload = {**json.loads(good.payload), "certificate_name": "web\n<!channel>\r\nforged"}
    forged = OutboxItem(
        vault_name=good.vault_name,
        webhook_id=good.webhook_id,
        endpoint=good.endpoint,
        certificate_name=good.certificate_name,
        version=good.version,
        payload=json.dumps(payload),
    )
    assert sender_for(environ).send(forged).delivered
    (message,) = slack.messages
    header, section, _ = message["blocks"]
    assert header["text"] == {
        "type": "plain_text",
        "text": "Renewal failed: web <!channel>  forged in kv1",
        "emoji": False,
    }
    assert {"type": "mrkdwn", "text": "*Certificate*\nweb &lt;!channel&gt;  forged"} in section["fields"]
