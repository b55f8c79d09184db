"""Fixtures for the Key Vault emulator tests: a fresh in-process emulator per test and a raw HTTPS caller."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.keyvault import KeyVaultEmulator


@pytest.fixture
def keyvault_emulator(tmp_path: Path) -> Iterator[KeyVaultEmulator]:
    """A started emulator serving the vault ``kv1``, with fresh state; events retry 10,000x faster than Azure."""
    with KeyVaultEmulator(state_dir=tmp_path / "keyvault", vaults=["kv1"], event_retry_compression=10_000) as emu:
        yield emu


@dataclass(frozen=True, slots=True)
class RawResponse:
    """An HTTP answer as received.

    Attributes:
        status: the status code.
        headers: the headers, names lower-cased.
        raw: the body bytes.
    """

    status: int
    headers: Mapping[str, str]
    raw: bytes

    def json(self) -> object:
        """Return the body parsed as JSON (raises ``ValueError`` if it is not)."""
        return json.loads(self.raw)


RawCall = Callable[..., RawResponse]


def raw_call(
    base_url: str,
    ca_pem: Path,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    token: str | None = "test-token",  # noqa: S107 (the emulator accepts any bearer token)
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> RawResponse:
    """Send one request over a fresh HTTPS connection that trusts only the emulator CA."""
    host_port = base_url.removeprefix("https://")
    host, port = host_port.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca_pem))
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=timeout)
    sent = dict(headers or {})
    if body and not any(name.lower() == "content-type" for name in sent):
        sent["Content-Type"] = "application/json"
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, raw)
    finally:
        connection.close()


@pytest.fixture
def kv_call(keyvault_emulator: KeyVaultEmulator) -> RawCall:
    """Send one raw HTTPS request to the fixture emulator's first vault (bearer token included by default)."""

    def call(method: str, path: str, **kwargs: object) -> RawResponse:
        return raw_call(keyvault_emulator.url(), keyvault_emulator.ca_pem_path, method, path, **kwargs)  # type: ignore[arg-type]

    return call
