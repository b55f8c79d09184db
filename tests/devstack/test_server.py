"""The emulator's HTTPS shell: challenge, tokens, limits, error shapes, persistence, several vaults and the CLI."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.keyvault.certificates import CertificatePolicy

from devstack.keyvault import ApiRequest, ApiResponse, EmulatorClock, KeyVaultEmulator, VaultEvent
from devstack.keyvault.testing import StaticTokenCredential

from .conftest import RawCall, RawResponse, raw_call

REPO = Path(__file__).resolve().parents[2]
CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", '
    'resource="https://vault.azure.net"'
)
CHALLENGE_BODY = (
    b'{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer, PoP, or MTLS_POP token."}}'
)
CREATE_BODY = json.dumps({"policy": {"issuer": {"name": "Self"}, "x509_props": {"subject": "CN=probe"}}}).encode()


def assert_keyvault_error(response: RawResponse) -> None:
    """Assert the answer is a KeyVaultError JSON body with no traceback in it."""
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    assert b"Traceback" not in response.raw


def test_request_without_token_gets_the_exact_challenge(kv_call: RawCall) -> None:
    """A request without a bearer token gets 401, Key Vault's WWW-Authenticate challenge and its exact body."""
    response = kv_call("POST", "/certificates/app/create?api-version=2025-07-01", body=b"", token=None)
    assert response.status == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.raw == CHALLENGE_BODY
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["content-length"] == str(len(CHALLENGE_BODY))


def test_unauthenticated_requests_are_never_executed(keyvault_emulator: KeyVaultEmulator, kv_call: RawCall) -> None:
    """Neither the bodiless probe nor an unauthenticated request with a body creates anything."""
    assert kv_call("POST", "/certificates/probe/create?api-version=7.6", body=b"", token=None).status == 401
    assert kv_call("POST", "/certificates/probe/create?api-version=7.6", body=CREATE_BODY, token=None).status == 401
    assert kv_call("GET", "/certificates/probe/?api-version=7.6").status == 404
    log = keyvault_emulator.request_log.entries()
    assert [(e.operation, e.authenticated, e.status) for e in log] == [
        ("challenge", False, 401),
        ("challenge", False, 401),
        ("get", True, 404),
    ]


def test_service_headers_are_sent_and_client_request_id_echoed(kv_call: RawCall) -> None:
    """Every answer carries Key Vault's service headers and echoes x-ms-client-request-id."""
    response = kv_call("GET", "/certificates/none/?api-version=7.6", headers={"x-ms-client-request-id": "abc-123"})
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-ms-keyvault-service-version"]
    assert response.headers["x-ms-request-id"]
    assert response.headers["x-ms-client-request-id"] == "abc-123"


def test_required_token_rejects_other_tokens(tmp_path: Path) -> None:
    """With require_token, a different bearer token is challenged and the configured one is accepted."""
    with KeyVaultEmulator(state_dir=tmp_path, require_token="the-token") as emu:
        wrong = raw_call(emu.url(), emu.ca_pem_path, "GET", "/certificates/x/?api-version=7.6", token="other")
        right = raw_call(emu.url(), emu.ca_pem_path, "GET", "/certificates/x/?api-version=7.6", token="the-token")
        assert wrong.status == 401
        assert wrong.headers["www-authenticate"] == CHALLENGE
        assert_keyvault_error(wrong)
        assert right.status == 404
        with pytest.raises(ClientAuthenticationError):
            emu.certificate_client(credential=StaticTokenCredential("other")).get_certificate("x")
        with pytest.raises(ResourceNotFoundError):
            emu.certificate_client().get_certificate("x")


def test_oversized_body_gets_413_without_reaching_the_vault(
    keyvault_emulator: KeyVaultEmulator, kv_call: RawCall
) -> None:
    """A body over the 256 KiB limit gets 413 with a KeyVault error shape and never reaches the vault."""
    response = kv_call("POST", "/certificates/big/create?api-version=7.6", body=b"{" + b" " * (256 * 1024))
    assert response.status == 413
    assert_keyvault_error(response)
    entry = keyvault_emulator.request_log.entries()[-1]
    assert (entry.status, entry.answered_by, entry.authenticated) == (413, "shell", True)
    assert kv_call("GET", "/certificates/big/?api-version=7.6").status == 404


def test_body_at_the_limit_is_accepted(tmp_path: Path) -> None:
    """A body exactly at the configured limit reaches the vault."""
    with KeyVaultEmulator(state_dir=tmp_path, max_body_bytes=len(CREATE_BODY)) as emu:
        response = raw_call(
            emu.url(),
            emu.ca_pem_path,
            "POST",
            "/certificates/at-limit/create?api-version=7.6",
            body=CREATE_BODY,
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 202


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        ("POST", "/certificates/bad/create?api-version=7.6", b"{not json", {"Content-Type": "application/json"}),
        ("POST", "/certificates/bad/create?api-version=7.6", b"<policy/>", {"Content-Type": "application/xml"}),
        ("POST", "/certificates/bad/create?api-version=7.6", b"[1, 2]", {"Content-Type": "application/json"}),
        ("GET", "/no/such/path?api-version=7.6", None, {}),
        ("PUT", "/certificates?api-version=7.6", b"{}", {"Content-Type": "application/json"}),
        ("GET", "/certificates/%ff%fe/?api-version=7.6", None, {}),
    ],
)
def test_malformed_requests_get_keyvault_errors_not_500(
    kv_call: RawCall, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> None:
    """Malformed JSON, a wrong content type or an unknown path get a 4xx KeyVault error shape, never a 500."""
    response = kv_call(method, path, body=body, headers=headers)
    assert 400 <= response.status < 500
    assert_keyvault_error(response)


def test_bad_content_length_gets_400(keyvault_emulator: KeyVaultEmulator) -> None:
    """A non-numeric Content-Length gets a 400 KeyVault error instead of a crash."""
    response = raw_call(
        keyvault_emulator.url(),
        keyvault_emulator.ca_pem_path,
        "POST",
        "/certificates/x/create",
        body=None,
        headers={"Content-Length": "lots"},
    )
    assert response.status == 400
    assert_keyvault_error(response)


@pytest.mark.parametrize("api_version", ["7.0", "2025-07-01", "2026-04-01", "not-a-version", None])
def test_any_api_version_is_accepted(kv_call: RawCall, api_version: str | None) -> None:
    """The api-version parameter is not checked: any value, or none, reaches the vault."""
    query = "" if api_version is None else f"?api-version={api_version}"
    response = kv_call("GET", f"/certificates/missing/{query}")
    assert response.status == 404
    assert response.json()["error"]["code"] == "CertificateNotFound"  # type: ignore[index]


def test_keep_alive_serves_several_requests_on_one_connection(keyvault_emulator: KeyVaultEmulator) -> None:
    """HTTP/1.1 keep-alive: one TLS connection carries the probe and later authenticated requests."""
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(keyvault_emulator.ca_pem_path))
    connection = http.client.HTTPSConnection("127.0.0.1", keyvault_emulator.port(), context=context, timeout=5)
    try:
        for headers in ({}, {"Authorization": "Bearer t"}, {"Authorization": "Bearer t"}):
            connection.request("GET", "/certificates/x/?api-version=7.6", headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status in (401, 404)
            assert response.getheader("Connection") != "close"
        assert connection.sock is not None
    finally:
        connection.close()
    assert len(keyvault_emulator.request_log) == 3


def test_sdk_create_then_restart_with_persist_keeps_vault_and_ca(tmp_path: Path) -> None:
    """With persist, a restarted emulator on the same port still has the vault's certificates and the same CA."""
    with KeyVaultEmulator(state_dir=tmp_path, persist=True) as first:
        port = first.port()
        client = first.certificate_client()
        client.begin_create_certificate("kept", policy=CertificatePolicy.get_default()).result()
        ca_before = first.ca_pem_path.read_bytes()
        assert (tmp_path / "vaults" / "kv1.json").is_file()
    assert oct((tmp_path / "vaults" / "kv1.json").stat().st_mode & 0o777) == "0o600"
    with KeyVaultEmulator(state_dir=tmp_path, persist=True, port=port) as second:
        assert second.ca_pem_path.read_bytes() == ca_before
        certificate = second.certificate_client().get_certificate("kept")
        assert certificate.name == "kept"
        assert certificate.cer


def test_without_persist_a_restart_starts_empty(tmp_path: Path) -> None:
    """Without persist nothing is written and a restart has an empty vault."""
    with KeyVaultEmulator(state_dir=tmp_path) as first:
        first.certificate_client().begin_create_certificate("gone", policy=CertificatePolicy.get_default()).result()
    assert not (tmp_path / "vaults").exists()
    with KeyVaultEmulator(state_dir=tmp_path) as second:
        assert raw_call(second.url(), second.ca_pem_path, "GET", "/certificates/gone/").status == 404


def test_several_vaults_each_get_their_own_port_and_state(tmp_path: Path) -> None:
    """Each vault listens on its own port and holds its own certificates."""
    with KeyVaultEmulator(state_dir=tmp_path, vaults=["kv1", "kv2"]) as emu:
        assert emu.port("kv1") != emu.port("kv2")
        assert emu.url() == emu.url("kv1")
        emu.certificate_client(vault="kv2").begin_create_certificate(
            "only-in-kv2", policy=CertificatePolicy.get_default()
        ).result()
        assert raw_call(emu.url("kv2"), emu.ca_pem_path, "GET", "/certificates/only-in-kv2/").status == 200
        assert raw_call(emu.url("kv1"), emu.ca_pem_path, "GET", "/certificates/only-in-kv2/").status == 404
        assert "/certificates/only-in-kv2/create" in {e.path for e in emu.request_log.entries(vault="kv2")}
        assert emu.request_log.authenticated_requests(vault="kv1") == 1


def test_tls_ca_is_written_and_trusted_for_localhost_and_ip(tmp_path: Path) -> None:
    """The CA PEM lands in STATE_DIR/tls-ca.pem and verifies the server for 127.0.0.1 and localhost."""
    with KeyVaultEmulator(state_dir=tmp_path) as emu:
        assert emu.ca_pem_path == tmp_path / "tls-ca.pem"
        assert b"BEGIN CERTIFICATE" in emu.ca_pem_path.read_bytes()
        localhost = emu.url().replace("127.0.0.1", "localhost")
        assert raw_call(localhost, emu.ca_pem_path, "GET", "/certificates/x/", token=None).status == 401


def test_control_api_needs_no_token(keyvault_emulator: KeyVaultEmulator, kv_call: RawCall) -> None:
    """The /_emulator/ control paths answer without a token and are not in the request log."""
    info = kv_call("GET", "/_emulator/info", token=None)
    assert info.status == 200
    assert info.json() == {
        "vaults": {"kv1": keyvault_emulator.url()},
        "now": pytest.approx(keyvault_emulator.clock(), abs=5),
        "caPemPath": str(keyvault_emulator.ca_pem_path),
    }
    moved = kv_call("POST", "/_emulator/clock", body=b'{"advance": 86400}', token=None)
    assert moved.json()["offset"] == pytest.approx(86400)  # type: ignore[index]
    assert kv_call("POST", "/_emulator/clock", body=b"nope", token=None).status == 400
    assert kv_call("GET", "/_emulator/nothing", token=None).status == 404
    assert len(keyvault_emulator.request_log) == 0


def test_control_api_reads_and_clears_the_request_log(kv_call: RawCall) -> None:
    """GET /_emulator/requests lists logged requests and DELETE clears them."""
    kv_call("GET", "/certificates/x/?api-version=7.6", token=None)
    listed = kv_call("GET", "/_emulator/requests", token=None).json()
    assert listed["value"][0]["operation"] == "challenge"  # type: ignore[index]
    assert kv_call("DELETE", "/_emulator/requests", token=None).status == 204
    assert kv_call("GET", "/_emulator/requests", token=None).json() == {"value": []}


def test_cli_prints_ready_lines_and_serves_until_terminated(tmp_path: Path) -> None:
    """`python -m devstack keyvault --port 0` prints one ready line per vault, serves HTTPS, and stops on SIGTERM."""
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "devstack",
            "keyvault",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path),
            "--vault",
            "kv1",
            "--vault",
            "kv2",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        ready = [lines.get(timeout=8).strip() for _ in range(2)]
        assert ready[0].startswith("ready https://127.0.0.1:")
        assert ready[0].endswith(" vault=kv1")
        assert ready[1].endswith(" vault=kv2")
        url = ready[0].split()[1]
        response = raw_call(url, tmp_path / "tls-ca.pem", "GET", "/certificates/x/?api-version=7.6", token=None)
        assert response.status == 401
        process.terminate()
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_cli_with_one_vault_prints_exactly_the_ready_line(tmp_path: Path) -> None:
    """With one vault the CLI prints exactly `ready https://127.0.0.1:PORT`, and that URL answers over HTTPS."""
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "devstack", "keyvault", "--port", "0", "--state-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert re.fullmatch(r"ready https://127\.0\.0\.1:\d+", line), line
        response = raw_call(line.split()[1], tmp_path / "tls-ca.pem", "GET", "/certificates/x/", token=None)
        assert response.status == 401
        process.terminate()
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


class ExplodingVault:
    """A stand-in vault model whose handler fails, to see what the shell does with a bug."""

    def __init__(self, **_: object) -> None:
        pass

    @classmethod
    def restore(cls, snapshot: dict[str, object], **_: object) -> ExplodingVault:
        return cls()

    def operation_of(self, request: ApiRequest) -> str:
        return "get"

    def handle(self, request: ApiRequest) -> ApiResponse:
        if request.path == "/unserialisable":
            return ApiResponse(200, {"value": object()})
        raise RuntimeError("secret-detail-in-exception")

    def emit_due_expiry_events(self) -> int:
        return 0

    def event_for(self, certificate_name: str, event_type: str) -> VaultEvent:
        raise KeyError(certificate_name)

    def snapshot(self) -> dict[str, object]:
        return {}


@pytest.mark.parametrize("path", ["/certificates/x/", "/unserialisable"])
def test_unexpected_exception_becomes_a_500_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """A failure inside the vault answers 500 InternalServerError in the KeyVault shape and is logged, not echoed."""
    with KeyVaultEmulator(state_dir=tmp_path, vault_factory=ExplodingVault) as emu:
        response = raw_call(emu.url(), emu.ca_pem_path, "GET", path)
        followed = raw_call(emu.url(), emu.ca_pem_path, "GET", "/certificates/x/", token=None)
    assert response.status == 500
    assert response.json()["error"]["code"] == "InternalServerError"  # type: ignore[index]
    assert b"secret-detail" not in response.raw
    assert b"Traceback" not in response.raw
    assert followed.status == 401
    assert any(record.exc_info for record in caplog.records if record.name == "devstack.keyvault._server")


def test_chunked_request_body_is_read(kv_call: RawCall) -> None:
    """A chunked request body reaches the vault like one with a Content-Length."""
    response = kv_call(
        "POST",
        "/certificates/chunky/create?api-version=7.6",
        body=iter([CREATE_BODY[:10], CREATE_BODY[10:]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 202


def test_clock_moves_by_advance_and_set() -> None:
    """The emulator clock is real time plus an offset that advance, set and reset move, notifying listeners."""
    now = [1000.0]
    clock = EmulatorClock(wall=lambda: now[0])
    changes: list[float] = []
    clock.add_listener(lambda: changes.append(clock()))
    assert clock() == 1000.0
    assert clock.advance(60) == 1060.0
    now[0] = 1010.0
    assert clock() == 1070.0
    assert clock.set(5000) == 5000.0
    assert clock.reset() == 1010.0
    assert changes == [1060.0, 5000.0, 1010.0]


def _start_cli(state_dir: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start the CLI with --persist and return the process and its first vault URL (read within 8 s)."""
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "devstack", "keyvault", "--state-dir", str(state_dir), "--persist", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        return process, lines.get(timeout=8).split()[1]
    except BaseException:
        process.kill()
        process.wait(timeout=5)
        raise


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_cli_restart_with_persist_keeps_the_vault_and_ca(tmp_path: Path) -> None:
    """`--persist`: a certificate created before SIGTERM is there after a restart on the same port, same CA."""
    body = json.dumps({"policy": {"issuer": {"name": "Unknown"}, "x509_props": {"subject": "CN=kept"}}}).encode()
    process, url = _start_cli(tmp_path, "--port", "0")
    try:
        created = raw_call(url, tmp_path / "tls-ca.pem", "POST", "/certificates/kept/create", body=body)
        assert created.status == 202
        ca_before = (tmp_path / "tls-ca.pem").read_bytes()
    finally:
        _stop(process)
    process, url_after = _start_cli(tmp_path, "--port", url.rsplit(":", 1)[1])
    try:
        assert url_after == url
        assert (tmp_path / "tls-ca.pem").read_bytes() == ca_before
        pending = raw_call(url, tmp_path / "tls-ca.pem", "GET", "/certificates/kept/pending")
        assert pending.status == 200
        assert pending.json()["csr"] == created.json()["csr"]  # type: ignore[index]
    finally:
        _stop(process)
