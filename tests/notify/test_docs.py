"""docs/notifications.md shows a ``RENEWAL_NOTIFIERS`` that the app takes as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

from renewal.notify import EmailOptions, SlackOptions, TeamsOptions, parse_notifiers

PAGE = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def test_the_documented_setting_parses() -> None:
    """The page's first JSON block is a valid setting: one notifier of each kind, with the routing it describes."""
    block = re.search(r"```json\n(.*?)\n```", PAGE.read_text(), re.DOTALL)
    assert block is not None
    spec = json.loads(block.group(1))
    environ = {"RENEWAL_NOTIFIERS": block.group(1)}
    for notifier in spec.values():
        for key in ("url_setting", "password_setting"):
            if key in notifier:
                environ[notifier[key]] = "https://example.invalid/hook" if key == "url_setting" else "a-password"
    ops, payments, mail = parse_notifiers(environ)
    assert isinstance(ops.options, TeamsOptions)
    assert isinstance(payments.options, SlackOptions)
    assert payments.owner == "team-payments"
    assert isinstance(mail.options, EmailOptions)
    assert mail.match_tag == ("env", "production")
