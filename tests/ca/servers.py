"""Real CA servers on loopback, started by the tests: Pebble with pebble-challtestsrv (ACME), and ``cfssl serve``.

Each server runs as a child process on free loopback ports, from a configuration written to a temporary directory,
and is killed when its context ends. A missing binary fails the test under ``CI=true`` and skips it elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devstack.localca import LocalCAFiles, create_local_ca
from tests.fakes.loopback import LoopbackServer, Response

__all__ = [
    "CfsslServer",
    "ChallTestServer",
    "PebbleServer",
    "TlsFiles",
    "acme_options",
    "cfssl_server",
    "cfssl_status",
    "failing_server",
    "free_port",
    "pebble_server",
    "require_binary",
    "server_tls",
    "txt_records",
]

_STARTUP_SECONDS = 30.0


def require_binary(name: str) -> str:
    """The path of executable ``name``; fails under ``CI=true`` when it is missing, and skips otherwise."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (run scripts/install-services.sh, or apt-get install it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A server certificate for 127.0.0.1 and localhost, and the CA that signed it.

    Attributes:
        ca_path: the CA to trust (PEM).
        cert_path: the server certificate (PEM).
        key_path: the server's private key (PEM).
    """

    ca_path: Path
    cert_path: Path
    key_path: Path


def server_tls(directory: Path) -> TlsFiles:
    """Create a TLS server certificate for ``127.0.0.1``/``localhost`` under a fresh local CA in ``directory``."""
    ca: LocalCAFiles = create_local_ca(directory / "ca", common_name="Test Servers TLS Root", with_intermediate=False)
    issuer = x509.load_pem_x509_certificate(ca.issuing_cert_path.read_bytes())
    issuer_key = serialization.load_pem_private_key(ca.issuing_key_path.read_bytes(), None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Python 3.13's default TLS context is X.509-strict: it wants the AKI on the server certificate.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return TlsFiles(ca_path=ca.root_path, cert_path=cert_path, key_path=key_path)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {_STARTUP_SECONDS} s")


@contextmanager
def _running(command: list[str], ports: list[int], log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - a fixed test binary with arguments we built
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        for port in ports:
            _wait_for_port(process, port, log)
        yield
    finally:
        process.kill()
        process.wait(timeout=10)


@dataclass(frozen=True, slots=True)
class ChallTestServer:
    """A running pebble-challtestsrv: Pebble's DNS server, programmed over its management API.

    Attributes:
        dns_address: ``127.0.0.1:port`` of its DNS server (for Pebble's ``-dnsserver``).
        management_url: its management API (``/set-txt``, ``/clear-txt``).
    """

    dns_address: str
    management_url: str


@dataclass(frozen=True, slots=True)
class PebbleServer:
    """A running Pebble.

    Attributes:
        directory_url: the ACME directory.
        management_url: the management interface (``/roots/0``).
        tls_ca_path: the CA that signed Pebble's own TLS certificate (for ``ca_bundle_path``).
        eab_keys: External Account Binding keys Pebble knows, key id → base64url HMAC key.
        challtestsrv: the DNS server Pebble validates dns-01 against.
    """

    directory_url: str
    management_url: str
    tls_ca_path: Path
    eab_keys: dict[str, str]
    challtestsrv: ChallTestServer

    def root_pem(self) -> str:
        """Pebble's issuing root, from its management interface (it changes at every start)."""
        context = ssl.create_default_context(cafile=str(self.tls_ca_path))
        with urllib.request.urlopen(f"{self.management_url}/roots/0", context=context, timeout=5) as response:  # noqa: S310 - https on loopback
            return response.read().decode("ascii")  # type: ignore[no-any-return]


@contextmanager
def challtestsrv(directory: Path) -> Iterator[ChallTestServer]:
    """Start pebble-challtestsrv with only its DNS server and management API, on free loopback ports."""
    binary = require_binary("pebble-challtestsrv")
    dns_port, management_port = free_port(), free_port()
    command = [
        binary,
        "-dns01",
        f"127.0.0.1:{dns_port}",
        "-management",
        f"127.0.0.1:{management_port}",
        "-http01",
        "",
        "-https01",
        "",
        "-tlsalpn01",
        "",
        "-defaultIPv6",
        "",
    ]
    with _running(command, [management_port], directory / "challtestsrv.log"):
        yield ChallTestServer(f"127.0.0.1:{dns_port}", f"http://127.0.0.1:{management_port}")


@contextmanager
def pebble_server(
    directory: Path,
    dns: ChallTestServer,
    *,
    eab_required: bool = False,
    eab_keys: dict[str, str] | None = None,
    blocked_domains: tuple[str, ...] = (),
    validity_seconds: int | None = None,
) -> Iterator[PebbleServer]:
    """Start Pebble on free loopback ports, validating dns-01 against ``dns``.

    ``validity_seconds`` sets the lifetime of the certificates it issues (Pebble's default is five years, longer
    than a Key Vault policy's months allow).
    """
    binary = require_binary("pebble")
    directory.mkdir(parents=True, exist_ok=True)
    tls = server_tls(directory / "tls")
    port, management_port = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(tls.cert_path),
            "privateKey": str(tls.key_path),
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab_required,
            "externalAccountMACKeys": eab_keys or {},
            "domainBlocklist": list(blocked_domains),
        }
    }
    if validity_seconds is not None:
        config["pebble"]["certificateValidityPeriod"] = validity_seconds
    config_path = directory / "pebble-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    command = [binary, "-config", str(config_path), "-dnsserver", dns.dns_address]
    with _running(command, [port, management_port], directory / "pebble.log", env):
        yield PebbleServer(
            directory_url=f"https://127.0.0.1:{port}/dir",
            management_url=f"https://127.0.0.1:{management_port}",
            tls_ca_path=tls.ca_path,
            eab_keys=dict(eab_keys or {}),
            challtestsrv=dns,
        )


def acme_options(pebble: PebbleServer, **extra: object) -> dict[str, object]:
    """An ``acme`` profile for ``pebble`` with challtestsrv as DNS provider."""
    return {
        "directory_url": pebble.directory_url,
        "ca_bundle_path": str(pebble.tls_ca_path),
        "dns_provider": "challtestsrv",
        "dns_options": {"management_url": pebble.challtestsrv.management_url},
        "poll_timeout_seconds": 15,
        "timeout_seconds": 5,
        **extra,
    }


@dataclass(frozen=True, slots=True)
class CfsslServer:
    """A running ``cfssl serve``.

    Attributes:
        url: its base URL (``http://127.0.0.1:port``).
        ca: the CA it signs with (the local CA's intermediate; its chain is intermediate then root).
        auth_key_hex: the hex HMAC key of its ``authed`` profile.
    """

    url: str
    ca: LocalCAFiles
    auth_key_hex: str


# Profiles: "authed" needs the HMAC key (authsign), "open" does not (sign); the default is open too, since
# cfssl's /sign handler refuses to start unless some profile needs no authentication.
_CFSSL_USAGES = ["signing", "digital signature", "key encipherment", "server auth", "client auth"]


@contextmanager
def cfssl_server(directory: Path, *, auth_key_hex: str, database: bool = False) -> Iterator[CfsslServer]:
    """Start ``cfssl serve`` on a free loopback port with a fresh local CA and profiles ``authed`` and ``open``;
    with ``database``, a SQLite certificate database too (``-db-config``), which ``/revoke`` needs."""
    binary = require_binary("cfssl")
    directory.mkdir(parents=True, exist_ok=True)
    ca = create_local_ca(directory / "ca", common_name="CFSSL Test Root CA")
    config = {
        "signing": {
            "default": {"expiry": "2160h", "usages": _CFSSL_USAGES},
            "profiles": {
                "authed": {"expiry": "2160h", "usages": _CFSSL_USAGES, "auth_key": "primary"},
                "open": {"expiry": "2160h", "usages": _CFSSL_USAGES},
            },
        },
        "auth_keys": {"primary": {"type": "standard", "key": auth_key_hex}},
    }
    config_path = directory / "cfssl-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    port = free_port()
    command = [
        binary,
        "serve",
        "-address",
        "127.0.0.1",
        "-port",
        str(port),
        "-ca",
        str(ca.issuing_cert_path),
        "-ca-key",
        str(ca.issuing_key_path),
        "-config",
        str(config_path),
        "-loglevel",
        "2",
    ]
    if database:
        command += ["-db-config", str(_cfssl_database(directory))]
    with _running(command, [port], directory / "cfssl.log"):
        yield CfsslServer(url=f"http://127.0.0.1:{port}", ca=ca, auth_key_hex=auth_key_hex)


# cfssl's certdb/sqlite/migrations: the tables ``cfssl serve -db-config`` writes to (it does not create them).
_CFSSL_SCHEMA = """
CREATE TABLE certificates (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  ca_label                 blob,
  status                   blob NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  body                     blob NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier) REFERENCES certificates(serial_number, authority_key_identifier)
);
"""


def _cfssl_database(directory: Path) -> Path:
    """A fresh SQLite certificate database and the ``-db-config`` file naming it."""
    import sqlite3

    path = directory / "certs.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executescript(_CFSSL_SCHEMA)
        connection.commit()
    config = directory / "db-config.json"
    config.write_text(json.dumps({"driver": "sqlite3", "data_source": str(path)}))
    return config


def cfssl_status(directory: Path, serial: int) -> str | None:
    """The status (``good``, ``revoked``) the database of a ``cfssl_server(directory, database=True)`` holds."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(directory / "certs.db")) as connection:
        row = connection.execute("SELECT status FROM certificates WHERE serial_number = ?", (str(serial),)).fetchone()
    return None if row is None else str(row[0])


@contextmanager
def failing_server(status: int = 503, *, retry_after: str | None = "7") -> Iterator[str]:
    """A loopback HTTP server answering every request with ``status`` and a plain-text body; yields its URL."""
    headers = {"Content-Type": "text/plain", **({"Retry-After": retry_after} if retry_after is not None else {})}
    with LoopbackServer(lambda request: Response(status, b"service unavailable\n", headers)) as server:
        yield server.url


def txt_records(dns_address: str, name: str) -> list[str]:
    """The TXT values a DNS server at ``host:port`` answers for ``name`` (one UDP query, RFC 1035 §4)."""
    host, port = dns_address.rsplit(":", 1)
    query_id = secrets.randbits(16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    question += struct.pack(">HH", 16, 1)  # QTYPE TXT, QCLASS IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(2)
        udp.sendto(struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question, (host, int(port)))
        answer = udp.recv(4096)
    answer_id, _, _, answer_count, _, _ = struct.unpack(">HHHHHH", answer[:12])
    assert answer_id == query_id
    offset, values = 12 + len(question), []
    for _ in range(answer_count):
        while answer[offset] not in (0,) and answer[offset] < 0xC0:
            offset += answer[offset] + 1
        offset += 2 if answer[offset] >= 0xC0 else 1
        record_type, _, _, length = struct.unpack(">HHIH", answer[offset : offset + 10])
        offset += 10
        data, offset = answer[offset : offset + length], offset + length
        if record_type == 16:
            position, text = 0, b""
            while position < len(data):
                text += data[position + 1 : position + 1 + data[position]]
                position += 1 + data[position]
            values.append(text.decode())
    return values
