"""``RENEWAL_NOTIFIERS``: what each kind takes, what is refused, and that no error or option shows a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from renewal.errors import ConfigurationError
from renewal.notify import (
    DEFAULT_OUTCOMES,
    EmailOptions,
    SlackOptions,
    TeamsOptions,
    notifier_secret_values,
    parse_notifiers,
)

TEAMS_URL = "https://prod-01.westeurope.logic.azure.com/workflows/abc123/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Zm9vYmFyYmF6cXV4c2VjcmV0c2ln"
SLACK_URL = "https://hooks.slack.com/services/T0001/B0001/s3cr3tS3cr3tS3cr3tS3cr3t"
PASSWORD = "correct horse battery staple"


def environ(notifiers: dict[str, object], **settings: str) -> dict[str, str]:
    return {
        "RENEWAL_NOTIFIERS": json.dumps(notifiers),
        "TEAMS_URL": TEAMS_URL,
        "SLACK_URL": SLACK_URL,
        "SMTP_PASSWORD": PASSWORD,
        **settings,
    }


def email_spec(**fields: object) -> dict[str, object]:
    return {
        "kind": "email",
        "host": "smtp.example.com",
        "username": "renewal@example.com",
        "password_setting": "SMTP_PASSWORD",
        "from": "renewal@example.com",
        "to": ["pki@example.com", "oncall@example.com"],
        **fields,
    }


def refused(notifiers: dict[str, object], **settings: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_notifiers(environ(notifiers, **settings))
    assert caught.value.setting == "RENEWAL_NOTIFIERS"
    return caught.value.message


def test_no_setting_means_no_notifiers() -> None:
    """Notifications are opt-in."""
    assert parse_notifiers({}) == ()
    assert parse_notifiers({"RENEWAL_NOTIFIERS": "  "}) == ()


def test_each_kind_parses_into_its_options_with_routing_defaults() -> None:
    """Teams and Slack name their URL's setting; e-mail defaults to port 587 with STARTTLS; routing defaults to
    failures, risks, dead letters and recoveries for every certificate."""
    teams, slack, mail = parse_notifiers(
        environ(
            {
                "ops": {"kind": "teams", "url_setting": "TEAMS_URL"},
                "pay": {"kind": "slack", "url_setting": "SLACK_URL", "owner": "Team-Payments", "tag": "env=prod"},
                "pki": email_spec(outcomes=["renewed", "failed"]),
            }
        )
    )
    assert teams.options == TeamsOptions(url_setting="TEAMS_URL")
    assert (teams.kind, teams.endpoint, teams.outcomes, teams.owner, teams.match_tag) == (
        "teams",
        "notify:ops",
        DEFAULT_OUTCOMES,
        None,
        None,
    )
    assert slack.options == SlackOptions(url_setting="SLACK_URL")
    assert (slack.owner, slack.match_tag) == ("team-payments", ("env", "prod"))
    assert mail.options == EmailOptions(
        host="smtp.example.com",
        port=587,
        starttls=True,
        username="renewal@example.com",
        password_setting="SMTP_PASSWORD",
        sender="renewal@example.com",
        recipients=("pki@example.com", "oncall@example.com"),
    )
    assert mail.outcomes == frozenset({"renewed", "failed"})


def test_no_option_holds_a_secret() -> None:
    """Options name settings; the URL and the password are nowhere in them, nor in their repr."""
    configs = parse_notifiers(environ({"ops": {"kind": "teams", "url_setting": "TEAMS_URL"}, "pki": email_spec()}))
    shown = repr(configs)
    assert TEAMS_URL not in shown
    assert "sig=" not in shown
    assert PASSWORD not in shown


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"kind": "pager"}, "kind must be one of teams, slack, email"),
        ({"kind": "slack", "url_setting": "SLACK_URL", "channel": "#ops"}, "unknown key(s) channel"),
        ({"kind": "teams"}, "url_setting must name an app setting"),
        ({"kind": "slack", "url_setting": "MISSING"}, "url_setting names an app setting that is missing or empty"),
        ({"kind": "slack", "url_setting": "SLACK_URL", "outcomes": ["renewed", "exploded"]}, "unknown outcome(s)"),
        ({"kind": "slack", "url_setting": "SLACK_URL", "outcomes": []}, "outcomes must be a non-empty list"),
        ({"kind": "slack", "url_setting": "SLACK_URL", "tag": "production"}, "tag must be 'key=value'"),
        ({"kind": "slack", "url_setting": "SLACK_URL", "owner": "a b"}, "owner must be one name"),
        (email_spec(host=""), "host must be a host name"),
        (email_spec(port=0), "port must be a whole number"),
        (email_spec(port="587"), "port must be a whole number"),
        (email_spec(starttls="yes"), "starttls must be true or false"),
        (email_spec(password_setting=None), "username and password_setting go together"),
        (email_spec(starttls=False), "AUTH needs starttls"),
        (email_spec(to=[]), "to must be a non-empty list"),
        (email_spec(to=["Ops <ops@example.com>"]), "to must hold e-mail addresses"),
        (email_spec(**{"from": "renewal@example.com\r\nBcc: x@evil.example"}), "from must hold e-mail addresses"),
        (email_spec(tls_ca_bundle="/nonexistent/ca.pem"), "tls_ca_bundle must name a PEM file that exists"),
        (email_spec(smtp_host="x"), "unknown key(s) smtp_host"),
    ],
)
def test_a_malformed_spec_is_refused_in_plain_words(spec: dict[str, object], words: str) -> None:
    """Each mistake names the notifier and the key."""
    message = refused({"ops": spec})
    assert "'ops'" in message
    assert words in message


def test_a_webhook_url_must_be_https_and_the_error_does_not_show_it() -> None:
    """Plain http is for loopback only; the refusal says why without the URL (it is the credential)."""
    message = refused(
        {"ops": {"kind": "slack", "url_setting": "SLACK_URL"}},
        SLACK_URL="http://hooks.slack.example/services/T/B/plaintextsecret",
    )
    assert "must be https" in message
    assert "plaintextsecret" not in message
    assert parse_notifiers(
        environ({"ops": {"kind": "slack", "url_setting": "SLACK_URL"}}, SLACK_URL="http://127.0.0.1:9/s")
    )


def test_malformed_json_is_refused_without_echoing_it() -> None:
    """Only the position of the error is shown: the text may be a pasted URL."""
    with pytest.raises(ConfigurationError) as caught:
        parse_notifiers({"RENEWAL_NOTIFIERS": '{"ops": https://hooks.slack.com/services/T/B/secret'})
    assert "not valid JSON" in caught.value.message
    assert "secret" not in caught.value.message
    with pytest.raises(ConfigurationError, match="must be a JSON object"):
        parse_notifiers({"RENEWAL_NOTIFIERS": "[]"})
    with pytest.raises(ConfigurationError, match="notifier name is not valid"):
        parse_notifiers({"RENEWAL_NOTIFIERS": '{"bad name": {}}'})


def test_a_ca_bundle_that_exists_is_kept(tmp_path: Path) -> None:
    """A private mail server's CA can be trusted instead of the system store."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    (mail,) = parse_notifiers(environ({"pki": email_spec(tls_ca_bundle=str(bundle), port=2525)}))
    assert isinstance(mail.options, EmailOptions)
    assert (mail.options.tls_ca_bundle, mail.options.port) == (str(bundle), 2525)


def test_a_relay_without_auth_may_go_without_starttls() -> None:
    """Nothing secret is sent to a relay that takes mail without AUTH."""
    (mail,) = parse_notifiers(environ({"relay": email_spec(username=None, password_setting=None, starttls=False)}))
    assert isinstance(mail.options, EmailOptions)
    assert (mail.options.username, mail.options.starttls) == (None, False)


def test_secret_values_cover_urls_their_credential_parts_and_passwords() -> None:
    """The scrubber gets the whole URLs, the path and query urllib3 logs without the host, the Teams ``sig`` and
    the Slack secret segment, and the SMTP password."""
    env = environ(
        {
            "ops": {"kind": "teams", "url_setting": "TEAMS_URL"},
            "pay": {"kind": "slack", "url_setting": "SLACK_URL"},
            "pki": email_spec(),
        }
    )
    values = notifier_secret_values(parse_notifiers(env), env)
    assert {TEAMS_URL, SLACK_URL, PASSWORD} <= set(values)
    assert "Zm9vYmFyYmF6cXV4c2VjcmV0c2ln" in values
    assert "/services/T0001/B0001/s3cr3tS3cr3tS3cr3tS3cr3t" in values
    assert "s3cr3tS3cr3tS3cr3tS3cr3t" in values
    assert any(value.startswith("/workflows/abc123/") and "sig=" in value for value in values)
