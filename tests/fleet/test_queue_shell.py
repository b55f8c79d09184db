"""The work queue shell: Azurite's Queue service for what it sends, and a loopback fake of the Queue REST API for
the answers Azurite does not give (outages, refusals, redirects)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from azure.storage.queue import QueueClient

from devstack.azurite import AZURITE_ACCOUNT, AZURITE_KEY, Azurite
from renewal.errors import ConfigurationError, PermanentError, RetryableError
from renewal.shells.queue import MAX_MESSAGE_BYTES, StorageQueue, queue_client_from_environ
from tests.fakes.loopback import LoopbackServer, Request, Response


def _connection(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"QueueEndpoint={endpoint};"
    )


def test_sent_message_arrives_as_plain_json_and_the_queue_is_created(azurite: Azurite) -> None:
    """The first send creates the queue; the message text is what was sent, unencoded (messageEncoding none)."""
    name = f"q-{uuid.uuid4().hex[:12]}"
    queue = StorageQueue(queue_client_from_environ({"AzureWebJobsStorage": azurite.connection_string}, name))

    queue.send('{"kind":"x"}', time_to_live_seconds=3600)
    queue.send('{"kind":"y"}')

    reader = QueueClient.from_connection_string(azurite.connection_string, name)
    messages = list(reader.receive_messages(messages_per_page=32))
    assert sorted(m.content for m in messages) == ['{"kind":"x"}', '{"kind":"y"}']
    lifetimes = sorted(
        (m.expires_on - m.inserted_on).total_seconds() for m in messages if m.expires_on and m.inserted_on
    )
    assert lifetimes[0] == pytest.approx(3600, abs=5)
    assert lifetimes[1] > 6 * 24 * 3600  # the service's default, seven days
    assert queue.name == name


def test_oversized_message_is_refused_before_sending(azurite: Azurite) -> None:
    """A body over 64 KiB is a permanent error and nothing reaches storage."""
    name = f"q-{uuid.uuid4().hex[:12]}"
    queue = StorageQueue(queue_client_from_environ({"AzureWebJobsStorage": azurite.connection_string}, name))
    with pytest.raises(PermanentError) as raised:
        queue.send("x" * (MAX_MESSAGE_BYTES + 1))
    assert raised.value.reason == "queue_refused"


def _answering(status: int, headers: dict[str, str] | None = None) -> LoopbackServer:
    def handler(request: Request) -> Response:
        if request.method == "PUT" and "messages" not in request.path:
            return Response(201)  # create the queue
        return Response(status, b"<?xml version='1.0'?><Error><Code>X</Code></Error>", headers or {})

    return LoopbackServer(handler)


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (503, RetryableError, "queue_unavailable"),
        (500, RetryableError, "queue_unavailable"),
        (429, RetryableError, "queue_unavailable"),
        (403, PermanentError, "queue_refused"),
        (400, PermanentError, "queue_refused"),
    ],
)
def test_storage_answers_become_typed_errors(status: int, error: type[Exception], reason: str) -> None:
    """5xx and 429 say retrying may help; 4xx (a refused credential, a bad request) say it will not."""
    with _answering(status) as server:
        client = QueueClient.from_connection_string(
            _connection(f"{server.url.rstrip('/')}/{AZURITE_ACCOUNT}"), "q", retry_total=0
        )
        with pytest.raises(error) as raised:
            StorageQueue(client).send("{}")
    assert raised.value.reason == reason  # type: ignore[attr-defined]
    assert AZURITE_KEY not in str(raised.value)


def test_redirect_is_refused_and_never_followed() -> None:
    """A 307 to another host is a permanent error; the signed request never goes there."""
    with LoopbackServer() as elsewhere:
        location = f"{elsewhere.url.rstrip('/')}/{AZURITE_ACCOUNT}/q/messages"

        def redirect(request: Request) -> Response:
            return Response(201) if request.method == "PUT" else Response(307, b"", {"Location": location})

        with LoopbackServer(redirect) as server:
            environ = {"AzureWebJobsStorage": _connection(f"{server.url.rstrip('/')}/{AZURITE_ACCOUNT}")}
            with pytest.raises(PermanentError) as raised:
                StorageQueue(queue_client_from_environ(environ, "q")).send("{}")
        assert raised.value.reason == "queue_refused"
        assert "redirect" in raised.value.message
        assert elsewhere.connections == 0


def test_unreachable_storage_is_retryable() -> None:
    """Nothing listening: retrying may help."""
    with LoopbackServer() as server:
        endpoint = f"{server.url.rstrip('/')}/{AZURITE_ACCOUNT}"
    client = QueueClient.from_connection_string(_connection(endpoint), "q", retry_total=0)
    started = time.monotonic()
    with pytest.raises(RetryableError) as raised:
        StorageQueue(client).send("{}")
    assert raised.value.reason == "queue_unavailable"
    assert time.monotonic() - started < 5


def test_development_storage_shorthand_means_azurite_defaults() -> None:
    """``UseDevelopmentStorage=true`` (Core Tools' shorthand) points at Azurite's default Queue endpoint."""
    client = queue_client_from_environ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "renewal-work")
    assert client.url == f"http://127.0.0.1:10001/{AZURITE_ACCOUNT}/renewal-work"


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        (
            {"AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net"},
            "https://acct.queue.core.windows.net/renewal-work",
        ),
        ({"AzureWebJobsStorage__accountName": "acct"}, "https://acct.queue.core.windows.net/renewal-work"),
    ],
)
def test_identity_based_storage_as_flex_consumption_configures_it(environ: dict[str, str], url: str) -> None:
    """The identity-based form (``__queueServiceUri`` or ``__accountName``) gives the account's queue endpoint."""
    client = queue_client_from_environ({**environ, "AzureWebJobsStorage__clientId": str(uuid.uuid4())}, "renewal-work")
    assert client.url == url


def test_no_storage_is_a_configuration_error() -> None:
    """Without AzureWebJobsStorage in any form the error names the setting."""
    with pytest.raises(ConfigurationError) as raised:
        queue_client_from_environ({}, "renewal-work")
    assert "AzureWebJobsStorage" in raised.value.message


def test_malformed_connection_string_is_not_shown() -> None:
    """A connection string that does not parse is refused without echoing it (it holds the account key)."""
    secret = "AccountKey=c2VjcmV0LXNlY3JldA=="
    with pytest.raises(ConfigurationError) as raised:
        queue_client_from_environ({"AzureWebJobsStorage": f"nonsense;{secret}"}, "renewal-work")
    assert secret not in str(raised.value)
    assert "c2VjcmV0" not in json.dumps(raised.value.message)
