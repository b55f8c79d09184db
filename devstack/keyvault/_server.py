"""The emulator's HTTPS shell: one listener per vault, the bearer challenge, faults, throttling, the request log,
persistence and the control API; the certificates API itself is the vault model's."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from ._clock import EmulatorClock
from ._events import EventDispatcher, EventSchema
from ._faults import Faults, Throttle, ThrottleLimits, keyvault_error
from ._tls import ensure_tls_files
from ._types import ApiRequest, ApiResponse, Clock, EmitEvent, LatestWhilePending, VaultEvent

if TYPE_CHECKING:
    from azure.keyvault.certificates import CertificateClient

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TENANT_ID",
    "KeyVaultEmulator",
    "LoggedRequest",
    "RequestLog",
    "VaultFactory",
    "VaultModel",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_TENANT_ID = "00000000-0000-0000-0000-000000000000"
_CONTROL_PREFIX = "/_emulator"
# Protocol reference §7: the exact challenge and body the service sends to a request without a token.
_MISSING_TOKEN_MESSAGE = "AKV10000: Request is missing a Bearer, PoP, or MTLS_POP token."  # noqa: S105 (an error message)
_WRONG_TOKEN_MESSAGE = "AKV10032: The bearer token is not the one this emulator was started with."  # noqa: S105 (an error message)
_SERVICE_VERSION = "1.9.0.0"


class VaultModel(Protocol):
    """What the shell needs of a vault model (``devstack.keyvault._vault.Vault``)."""

    def operation_of(self, request: ApiRequest) -> str: ...

    def handle(self, request: ApiRequest) -> ApiResponse: ...

    def emit_due_expiry_events(self) -> int: ...

    def event_for(self, certificate_name: str, event_type: str) -> VaultEvent: ...

    def snapshot(self) -> dict[str, object]: ...


class VaultFactory(Protocol):
    """Makes or restores vault models; the ``Vault`` class itself is one."""

    def __call__(
        self, *, name: str, base_url: str, clock: Clock, emit: EmitEvent, latest_while_pending: LatestWhilePending
    ) -> VaultModel: ...

    def restore(
        self,
        snapshot: dict[str, object],
        *,
        clock: Clock,
        emit: EmitEvent,
        latest_while_pending: LatestWhilePending,
    ) -> VaultModel: ...


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request the emulator answered (control-API calls are not logged).

    Attributes:
        vault: the vault whose port received it.
        method: the HTTP method.
        path: the percent-decoded path, without the query.
        query: the query parameters (last value wins).
        operation: the vault model's name for it (``create``, ``merge``, ...), ``challenge`` for a request
            without an acceptable token, or ``invalid`` when the shell refused it before routing (413, 400).
        authenticated: whether it carried an acceptable bearer token.
        status: the HTTP status answered.
        answered_by: ``vault``, ``challenge``, ``fault``, ``throttle`` or ``shell`` (413, 400, 500).
        received_at: when it reached the vault or the throttle (``time.monotonic()``, as the throttle counts), to
            count requests per window.
    """

    vault: str
    method: str
    path: str
    query: Mapping[str, str]
    operation: str
    authenticated: bool
    status: int
    answered_by: str
    received_at: float = 0.0

    @property
    def injected(self) -> bool:
        """Whether a scripted fault or the throttle answered instead of the vault."""
        return self.answered_by in ("fault", "throttle")


class RequestLog:
    """Every request the emulator answered, in order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        """Record ``entry``."""
        with self._lock:
            self._entries.append(entry)

    def entries(
        self,
        *,
        vault: str | None = None,
        operation: str | None = None,
        authenticated: bool | None = None,
        status: int | None = None,
        answered_by: str | None = None,
    ) -> list[LoggedRequest]:
        """Return the entries matching every filter given, in order."""
        with self._lock:
            entries = list(self._entries)
        return [
            e
            for e in entries
            if (vault is None or e.vault == vault)
            and (operation is None or e.operation == operation)
            and (authenticated is None or e.authenticated == authenticated)
            and (status is None or e.status == status)
            and (answered_by is None or e.answered_by == answered_by)
        ]

    def count(
        self,
        *,
        vault: str | None = None,
        operation: str | None = None,
        authenticated: bool | None = None,
        status: int | None = None,
        answered_by: str | None = None,
    ) -> int:
        """Return how many entries match every filter given."""
        return len(
            self.entries(
                vault=vault, operation=operation, authenticated=authenticated, status=status, answered_by=answered_by
            )
        )

    def authenticated_requests(self, *, vault: str | None = None, operation: str | None = None) -> int:
        """Return how many requests carried an acceptable token (the challenge probes excluded)."""
        return self.count(vault=vault, operation=operation, authenticated=True)

    def statuses(self, *, vault: str | None = None, operation: str | None = None) -> list[int]:
        """Return the statuses of the authenticated requests, in order."""
        return [e.status for e in self.entries(vault=vault, operation=operation, authenticated=True)]

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(self.entries())


class _ShellError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = ApiResponse(status=status, body=keyvault_error(code, message))


@dataclass(slots=True)
class _Endpoint:
    name: str
    server: _VaultHTTPServer
    base_url: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    vault: VaultModel | None = None
    thread: threading.Thread | None = None

    def model(self) -> VaultModel:
        if self.vault is None:
            raise RuntimeError(f"vault {self.name} is not started")
        return self.vault


class _VaultHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, context: ssl.SSLContext, emulator: KeyVaultEmulator) -> None:
        self.context = context
        self.emulator = emulator
        self.endpoint: _Endpoint | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake runs here, in the connection's own thread, so a slow client cannot block accept().
        request.settimeout(10.0)
        # Headers and body go out in separate writes; with Nagle's algorithm and delayed ACKs that costs ~40 ms
        # per keep-alive request.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake failed client=%s error=%s", client_address, exc)
            return
        with self._connections_lock:
            self._connections.add(tls)
        try:
            tls.settimeout(60.0)
            _Handler(tls, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called from the stdlib's except block: a client that drops its connection is not our error.
        logger.debug("connection error client=%s", client_address, exc_info=True)  # noqa: LOG014


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _VaultHTTPServer
    _linger = False

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _serve(self) -> None:
        emulator = self.server.emulator
        endpoint = self.server.endpoint
        if endpoint is None:
            self.close_connection = True
            return
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        extra: dict[str, str] = {}
        if path == _CONTROL_PREFIX or path.startswith(_CONTROL_PREFIX + "/"):
            try:
                body = self._read_body(emulator.max_body_bytes)
                response = emulator._control(endpoint.name, self.command, path, query, body)
                payload = _encode(response.body)
            except _ShellError as exc:
                response, payload = exc.response, _encode(exc.response.body)
            except Exception:
                logger.exception("control request failed vault=%s path=%s", endpoint.name, path)
                response = _internal_error()
                payload = _encode(response.body)
            self._send(response, payload, extra)
            return
        operation, authenticated, answered_by = "invalid", False, "shell"
        received_at = time.monotonic()
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            authenticated = emulator._token_acceptable(headers.get("authorization"))
            body = self._read_body(emulator.max_body_bytes)
            if not authenticated:
                operation, answered_by = "challenge", "challenge"
                response = emulator._challenge(missing=not headers.get("authorization"))
            else:
                request = ApiRequest(method=self.command, path=path, query=query, headers=headers, body=body)
                received_at = time.monotonic()
                operation, answered_by, response = emulator._dispatch(endpoint, request)
            payload = _encode(response.body)
        except _ShellError as exc:
            response, payload = exc.response, _encode(exc.response.body)
        except Exception:
            logger.exception("request failed vault=%s method=%s path=%s", endpoint.name, self.command, path)
            response, answered_by = _internal_error(), "shell"
            payload = _encode(response.body)
        emulator.request_log.append(
            LoggedRequest(
                vault=endpoint.name,
                method=self.command,
                path=path,
                query=query,
                operation=operation,
                authenticated=authenticated,
                status=response.status,
                answered_by=answered_by,
                received_at=received_at,
            )
        )
        self._send(response, payload, extra)
        if self._linger:
            self._lingering_close()

    def _lingering_close(self) -> None:
        # Closing a socket with unread input makes TCP send a reset, which can destroy the 413 before the client
        # reads it. Stop writing, then discard (never buffer) what the client still sends, for a bounded time.
        deadline = time.monotonic() + 2.0
        with contextlib.suppress(OSError, ValueError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            while time.monotonic() < deadline and self.connection.recv(65536):
                pass

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise _ShellError(400, "BadParameter", "The Content-Length header is not a number.") from None
        if length < 0:
            self.close_connection = True
            raise _ShellError(400, "BadParameter", "The Content-Length header is negative.")
        if length > limit:
            # The body is left unread, so this connection cannot carry another request.
            self.close_connection = True
            self._linger = True
            raise _too_large(limit)
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _ShellError(400, "BadParameter", "The chunked request body is malformed.") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                self._linger = True
                raise _too_large(limit)
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _send(self, response: ApiResponse, payload: bytes, extra: Mapping[str, str]) -> None:
        self.send_response(response.status)
        client_request_id = self.headers.get("x-ms-client-request-id")
        headers = {
            "Cache-Control": "no-cache",
            "Pragma": "no-cache",
            "Expires": "-1",
            "Strict-Transport-Security": "max-age=31536000;includeSubDomains",
            "X-Content-Type-Options": "nosniff",
            "x-ms-keyvault-region": "devstack",
            "x-ms-keyvault-service-version": _SERVICE_VERSION,
            "x-ms-keyvault-network-info": f"conn_type=Ipv4;addr={self.client_address[0]};act_addr_fam=InterNetwork;",
            "x-ms-request-id": str(uuid.uuid4()),
        }
        if client_request_id:
            headers["x-ms-client-request-id"] = client_request_id
        if payload:
            headers["Content-Type"] = "application/json; charset=utf-8"
        for name, value in {**response.headers, **extra}.items():
            if name.lower() not in ("content-length", "content-type", "connection", "transfer-encoding"):
                headers[name] = value
        headers["Content-Length"] = str(len(payload))
        if self.close_connection:
            headers["Connection"] = "close"
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)


def _encode(body: object | None) -> bytes:
    if body is None:
        return b""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _internal_error() -> ApiResponse:
    return ApiResponse(
        status=500,
        body=keyvault_error("InternalServerError", "The emulator failed to process the request; see its log."),
    )


def _too_large(limit: int) -> _ShellError:
    return _ShellError(413, "RequestTooLarge", f"The request body is larger than the limit of {limit} bytes.")


def _default_vault_factory() -> VaultFactory:
    from ._vault import Vault  # the model engineer's module; imported late so the shell loads without it

    factory: VaultFactory = Vault
    return factory


class KeyVaultEmulator:
    """A local Key Vault (certificates API) over HTTPS, one loopback port per vault.

    Use it as a context manager; ``start()`` and ``stop()`` do the same by hand. The Python SDK parses object
    ids as ``https://host/collection/name[/version]`` and ``*.localhost`` names do not resolve here, so each
    vault gets its own port instead of a path prefix or a host name.

    Attributes:
        state_dir: folder of the TLS files (``tls-ca.pem``, ``tls/``) and persisted vaults (``vaults/``).
        vault_names: the vaults served, in order; the first is the default everywhere a vault is optional.
        ca_pem_path: the CA certificate clients must trust (``state_dir / "tls-ca.pem"``).
        clock: the adjustable clock every vault reads.
        request_log: every request answered, in order.
        faults: scripted answers per vault and operation.
        throttle: Key Vault-style throttling (off until enabled).
        events: event publishing and delivery (subscribe, fire, deliveries, dead letters).
    """

    def __init__(
        self,
        *,
        state_dir: str | os.PathLike[str],
        vaults: Sequence[str] = ("kv1",),
        port: int = 0,
        event_subscribers: Sequence[str] = (),
        event_schema: EventSchema = "EventGrid",
        event_retry_compression: float = 1.0,
        event_timeout: float = 30.0,
        require_token: str | None = None,
        latest_while_pending: LatestWhilePending = "placeholder",
        persist: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        tick_interval: float | None = 1.0,
        tenant_id: str = DEFAULT_TENANT_ID,
        vault_factory: VaultFactory | None = None,
    ) -> None:
        """Configure the emulator; nothing listens until ``start()``.

        Raises:
            ValueError: no vault, duplicate or empty vault names, or an invalid option.
        """
        names = list(vaults)
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"vaults must be distinct non-empty names, got {names!r}")
        if latest_while_pending not in ("placeholder", "previous"):
            raise ValueError(f"latest_while_pending must be placeholder or previous, got {latest_while_pending!r}")
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self.state_dir = Path(state_dir)
        self.vault_names: tuple[str, ...] = tuple(names)
        self.ca_pem_path = self.state_dir / "tls-ca.pem"
        self.max_body_bytes = max_body_bytes
        self.persist = persist
        self.require_token = require_token
        self.latest_while_pending: LatestWhilePending = latest_while_pending
        self.tenant_id = tenant_id
        self.clock = EmulatorClock()
        self.request_log = RequestLog()
        self.faults = Faults()
        self.throttle = Throttle()
        self.events = EventDispatcher(clock=self.clock, compression=event_retry_compression, timeout=event_timeout)
        for url in event_subscribers:
            self.events.subscribe(url, schema=event_schema)
        self._port = port
        self._tick_interval = tick_interval
        self._vault_factory = vault_factory
        self._endpoints: dict[str, _Endpoint] = {}
        self._stop_ticker = threading.Event()
        self._ticker: threading.Thread | None = None
        self.clock.add_listener(self._emit_due)

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Create or reuse the TLS files, open one listener per vault, and start the background threads.

        Raises:
            OSError: a port cannot be bound or the state folder cannot be written.
            RuntimeError: already started.
            ValueError: a persisted vault cannot be restored.
        """
        if self._endpoints:
            raise RuntimeError("the emulator is already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tls = ensure_tls_files(self.state_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(tls.server_cert_path, tls.server_key_path)
        factory = self._vault_factory or _default_vault_factory()
        try:
            for index, name in enumerate(self.vault_names):
                server = _VaultHTTPServer(self._port if index == 0 else 0, context, self)
                base_url = f"https://127.0.0.1:{server.server_port}"
                endpoint = _Endpoint(name=name, server=server, base_url=base_url)
                server.endpoint = endpoint
                self._endpoints[name] = endpoint
                self.events.register_vault(name, base_url, self._event_for(endpoint))
                endpoint.vault = self._load_vault(factory, endpoint)
            self.events.start()
            for endpoint in self._endpoints.values():
                endpoint.thread = threading.Thread(
                    target=endpoint.server.serve_forever,
                    kwargs={"poll_interval": 0.1},
                    name=f"keyvault-emulator-{endpoint.name}",
                    daemon=True,
                )
                endpoint.thread.start()
        except BaseException:
            self.stop()
            raise
        if self._tick_interval:
            self._stop_ticker.clear()
            self._ticker = threading.Thread(target=self._tick, name="keyvault-emulator-clock", daemon=True)
            self._ticker.start()
        logger.info("keyvault emulator started vaults=%s", ",".join(f"{n}={u}" for n, u in self.urls_items()))
        return self

    def stop(self) -> None:
        """Stop the listeners and background threads (idempotent); persisted state stays on disk."""
        self._stop_ticker.set()
        if self._ticker is not None:
            self._ticker.join(5.0)
            self._ticker = None
        for endpoint in self._endpoints.values():
            if endpoint.thread is not None:
                endpoint.server.shutdown()
                endpoint.thread.join(5.0)
            endpoint.server.close_connections()
            endpoint.server.server_close()
        self._endpoints.clear()
        self.events.stop()

    close = stop

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- access --------------------------------------------------------------------------------------------

    def url(self, vault: str | None = None) -> str:
        """Return the vault URL (``https://127.0.0.1:PORT``) of ``vault``, by default the first.

        Raises:
            KeyError: unknown vault, or the emulator is not started.
        """
        return self._endpoint(vault).base_url

    def port(self, vault: str | None = None) -> int:
        """Return the port of ``vault``, by default the first.

        Raises:
            KeyError: unknown vault, or the emulator is not started.
        """
        return self._endpoint(vault).server.server_port

    @property
    def urls(self) -> dict[str, str]:
        """Vault name → vault URL, in the order the vaults were given."""
        return dict(self.urls_items())

    def urls_items(self) -> list[tuple[str, str]]:
        """The ``(vault name, vault URL)`` pairs, in order."""
        return [(name, endpoint.base_url) for name, endpoint in self._endpoints.items()]

    def vault(self, name: str | None = None) -> VaultModel:
        """Return the vault model behind ``name`` (by default the first), for tests that need its internals.

        Raises:
            KeyError: unknown vault, or the emulator is not started.
        """
        return self._endpoint(name).model()

    def seed(self, vault: str | None, name: str, **version: Any) -> str:
        """Add a completed version of ``name`` to ``vault`` straight into its model (``Vault.seed``: ``policy``,
        ``leaf_der``, ``chain_der``, ``key_pem``, ``tags``), without a request; for benchmarks that need a fleet
        fast. Returns the version's id; persisted like any change when ``persist`` is on.

        Raises:
            KeyError: unknown vault, or the emulator is not started.
            TypeError: the vault model has no ``seed``.
        """
        endpoint = self._endpoint(vault)
        seed = getattr(endpoint.model(), "seed", None)
        if seed is None:
            raise TypeError(f"the model of vault {endpoint.name} cannot be seeded")
        with endpoint.lock:
            created = str(seed(name, **version))
            if self.persist:
                self._save(endpoint)
        return created

    def fire(self, vault: str | None, certificate_name: str, event_type: str) -> dict[str, object]:
        """Publish ``event_type`` for the current version of ``certificate_name`` now; return the envelope.

        Raises:
            KeyError: unknown vault or certificate.
        """
        return self.events.fire(self._endpoint(vault).name, certificate_name, event_type)

    def certificate_client(self, vault: str | None = None, **kwargs: Any) -> CertificateClient:
        """Return an ``azure.keyvault.certificates.CertificateClient`` for ``vault`` that trusts the emulator.

        Keyword arguments override the defaults (``verify_challenge_resource=False``, ``connection_verify`` =
        the emulator CA, a ``StaticTokenCredential``, ``retry_total=2`` with a 50 ms backoff factor).

        Raises:
            KeyError: unknown vault, or the emulator is not started.
            ImportError: azure-keyvault-certificates is not installed.
        """
        from azure.keyvault.certificates import CertificateClient

        from .testing import StaticTokenCredential

        options: dict[str, Any] = {
            "verify_challenge_resource": False,
            "connection_verify": str(self.ca_pem_path),
            "retry_total": 2,
            "retry_backoff_factor": 0.05,
            "retry_backoff_max": 2,
        }
        options.update(kwargs)
        credential = options.pop("credential", None) or StaticTokenCredential(self.require_token or "devstack-token")
        return CertificateClient(vault_url=self.url(vault), credential=credential, **options)

    def _endpoint(self, vault: str | None) -> _Endpoint:
        if not self._endpoints:
            raise KeyError("the emulator is not started")
        if vault is None:
            return next(iter(self._endpoints.values()))
        return self._endpoints[vault]

    # --- request handling ----------------------------------------------------------------------------------

    def _token_acceptable(self, authorization: str | None) -> bool:
        # Protocol reference §7.7: checking that "Authorization: Bearer ..." is present is enough for the SDK.
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self.require_token is None or token == self.require_token

    def _challenge(self, *, missing: bool) -> ApiResponse:
        header = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            'resource="https://vault.azure.net"'
        )
        message = _MISSING_TOKEN_MESSAGE if missing else _WRONG_TOKEN_MESSAGE
        return ApiResponse(
            status=401, body=keyvault_error("Unauthorized", message), headers={"WWW-Authenticate": header}
        )

    def _dispatch(self, endpoint: _Endpoint, request: ApiRequest) -> tuple[str, str, ApiResponse]:
        vault = endpoint.model()
        with endpoint.lock:
            operation = vault.operation_of(request)
        fault = self.faults.take(endpoint.name, operation)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            return operation, "fault", fault.response()
        throttled = self.throttle.admit(endpoint.name, operation)
        if throttled is not None:
            return operation, "throttle", throttled
        with endpoint.lock:
            response = vault.handle(request)
            if self.persist and request.method != "GET" and response.status < 400:
                self._save(endpoint)
        return operation, "vault", response

    def _event_for(self, endpoint: _Endpoint) -> Callable[[str, str], VaultEvent]:
        def event_for(certificate_name: str, event_type: str) -> VaultEvent:
            with endpoint.lock:
                return endpoint.model().event_for(certificate_name, event_type)

        return event_for

    # --- clock, events and persistence ---------------------------------------------------------------------

    def _tick(self) -> None:
        assert self._tick_interval
        while not self._stop_ticker.wait(self._tick_interval):
            self._emit_due()

    def _emit_due(self) -> None:
        for endpoint in list(self._endpoints.values()):
            if endpoint.vault is None:
                continue
            try:
                with endpoint.lock:
                    if endpoint.vault.emit_due_expiry_events() and self.persist:
                        self._save(endpoint)
            except Exception:
                logger.exception("emitting expiry events failed vault=%s", endpoint.name)

    def _vault_path(self, name: str) -> Path:
        return self.state_dir / "vaults" / f"{name}.json"

    def _load_vault(self, factory: VaultFactory, endpoint: _Endpoint) -> VaultModel:
        emit = self.events.emitter(endpoint.name)
        path = self._vault_path(endpoint.name)
        if self.persist and path.is_file():
            snapshot = json.loads(path.read_text(encoding="utf-8"))
            # The vault's ids embed its URL; a restart on another port must not hand out ids of the old one.
            if isinstance(snapshot, dict) and "base_url" in snapshot:
                snapshot["base_url"] = endpoint.base_url
            logger.info("restoring vault=%s from=%s", endpoint.name, path)
            return factory.restore(
                snapshot, clock=self.clock, emit=emit, latest_while_pending=self.latest_while_pending
            )
        return factory(
            name=endpoint.name,
            base_url=endpoint.base_url,
            clock=self.clock,
            emit=emit,
            latest_while_pending=self.latest_while_pending,
        )

    def _save(self, endpoint: _Endpoint) -> None:
        path = self._vault_path(endpoint.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(endpoint.model().snapshot(), separators=(",", ":")).encode("utf-8")
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        # The snapshot holds private keys: owner-only, and replaced atomically so a crash never leaves half a file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    # --- control API ---------------------------------------------------------------------------------------

    def _control(self, vault: str, method: str, path: str, query: Mapping[str, str], raw: bytes) -> ApiResponse:
        body: dict[str, Any] = {}
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise _ShellError(400, "BadParameter", "The control request body is not JSON.") from None
            if not isinstance(parsed, dict):
                raise _ShellError(400, "BadParameter", "The control request body must be a JSON object.")
            body = parsed
        target = str(body.get("vault") or query.get("vault") or vault)
        if target not in self._endpoints:
            raise _ShellError(404, "NotFound", f"Unknown vault: {target}")
        route = path[len(_CONTROL_PREFIX) :].rstrip("/")
        try:
            return self._control_route(target, method, route, query, body)
        except (KeyError, TypeError, ValueError) as exc:
            raise _ShellError(400, "BadParameter", f"Invalid control request: {exc}") from exc

    def _control_route(
        self, vault: str, method: str, route: str, query: Mapping[str, str], body: dict[str, Any]
    ) -> ApiResponse:
        if route == "/info" and method == "GET":
            return ApiResponse(200, {"vaults": self.urls, "now": self.clock(), "caPemPath": str(self.ca_pem_path)})
        if route == "/clock":
            if method == "POST":
                if "advance" in body:
                    self.clock.advance(float(body["advance"]))
                elif "set" in body:
                    self.clock.set(float(body["set"]))
                elif body.get("reset"):
                    self.clock.reset()
                else:
                    raise ValueError("give one of advance, set or reset")
            if method in ("GET", "POST"):
                return ApiResponse(200, {"now": self.clock(), "offset": self.clock.offset})
        if route == "/events/fire" and method == "POST":
            try:
                envelope = self.events.fire(vault, str(body["certificate"]), str(body["eventType"]))
            except KeyError as exc:
                raise _ShellError(404, "NotFound", f"Unknown certificate or vault: {exc}") from exc
            return ApiResponse(200, envelope)
        if route == "/events/subscribers":
            if method == "POST":
                schema = body.get("schema", "EventGrid")
                if schema not in ("EventGrid", "CloudEvents"):
                    raise ValueError(f"schema must be EventGrid or CloudEvents, got {schema!r}")
                subscriber = self.events.subscribe(str(body["url"]), schema=schema, vault=body.get("onlyVault"))
                return ApiResponse(201, asdict(subscriber))
            if method == "GET":
                return ApiResponse(200, {"value": [asdict(s) for s in self.events.subscribers]})
        if route == "/events/deliveries" and method == "GET":
            return ApiResponse(
                200,
                {
                    "published": self.events.published,
                    "deliveries": [asdict(d) for d in self.events.deliveries],
                    "deadLetters": [asdict(d) for d in self.events.dead_letters],
                },
            )
        if route == "/faults":
            if method == "POST":
                fault = self.faults.script(
                    str(body["operation"]),
                    int(body["status"]),
                    vault=vault,
                    count=int(body.get("count", 1)),
                    body=body.get("body"),
                    code=body.get("code"),
                    message=body.get("message"),
                    retry_after=body.get("retryAfter"),
                    delay=float(body.get("delay", 0.0)),
                )
                return ApiResponse(201, asdict(fault))
            if method == "DELETE":
                self.faults.clear()
                return ApiResponse(204)
        if route == "/throttle":
            if method == "POST":
                if body.get("enabled", True):
                    retry_after = body.get("retryAfter")
                    limits = ThrottleLimits(
                        create=int(body.get("create", 20)),
                        import_=int(body.get("import", 300)),
                        other=int(body.get("other", 4000)),
                        window_seconds=float(body.get("windowSeconds", 10.0)),
                        retry_after=None if retry_after is None else int(retry_after),
                    )
                    self.throttle.enable(limits)
                else:
                    self.throttle.disable()
            if method in ("GET", "POST"):
                limits_now = self.throttle.limits
                return ApiResponse(200, {"enabled": limits_now is not None, "limits": _limits_json(limits_now)})
        if route == "/requests":
            if method == "GET":
                entries = self.request_log.entries(vault=query.get("vault"))
                return ApiResponse(200, {"value": [asdict(e) for e in entries]})
            if method == "DELETE":
                self.request_log.clear()
                return ApiResponse(204)
        raise _ShellError(404, "NotFound", f"No control endpoint {method} {_CONTROL_PREFIX}{route}")


def _limits_json(limits: ThrottleLimits | None) -> dict[str, object] | None:
    if limits is None:
        return None
    return {
        "create": limits.create,
        "import": limits.import_,
        "other": limits.other,
        "windowSeconds": limits.window_seconds,
        "retryAfter": limits.retry_after,
    }
