"""The TLS probe: the thumbprint of the leaf an endpoint presents, with typed errors and ASCII host names only."""

from __future__ import annotations

import socket

import pytest

from renewal.errors import PermanentError, RetryableError
from renewal.shells.probe import probe
from renewal.targets import ProbeEndpoint
from tests.fakes.tls_switch import ServedCertificate, TlsSwitch


def test_the_probe_returns_the_thumbprint_of_the_certificate_presented(
    switching: TlsSwitch, old: ServedCertificate
) -> None:
    """The probe answers the lowercase hex SHA-1 of the leaf the endpoint presents, chain unchecked."""
    assert probe(ProbeEndpoint("127.0.0.1", switching.port, sni="app.corp.internal"), timeout=5) == old.thumbprint


def test_the_probe_sees_the_new_certificate_once_the_endpoint_switches(
    switching: TlsSwitch, old: ServedCertificate, new: ServedCertificate
) -> None:
    """A switch takes effect on the next handshake: the probe sees the old, then the new thumbprint."""
    target = ProbeEndpoint("127.0.0.1", switching.port, sni="app.corp.internal")
    assert probe(target, timeout=5) == old.thumbprint
    switching.switch_to(new)
    assert probe(target, timeout=5) == new.thumbprint
    assert new.thumbprint != old.thumbprint


def test_the_probe_sends_the_configured_sni_name(switching: TlsSwitch) -> None:
    """The SNI name is the configured one (lower-cased), so a shared front end picks the right listener."""
    probe(ProbeEndpoint("127.0.0.1", switching.port, sni="App.Corp.Internal"), timeout=5)
    assert switching.server_names == ["app.corp.internal"]


def test_the_probe_sends_the_host_as_sni_when_none_is_configured(switching: TlsSwitch) -> None:
    """Without an SNI name the host name is sent; an IP address host sends none (RFC 6066 §3)."""
    probe(ProbeEndpoint("localhost", switching.port), timeout=5)
    probe(ProbeEndpoint("127.0.0.1", switching.port), timeout=5)
    assert switching.server_names == ["localhost", None]


def test_an_endpoint_that_refuses_connections_is_a_retryable_error() -> None:
    """Nothing listening: retrying later may help (the service may be restarting)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(RetryableError) as caught:
        probe(ProbeEndpoint("127.0.0.1", port), timeout=2)
    assert caught.value.reason == "probe_unreachable"


def test_an_endpoint_that_does_not_speak_tls_is_a_retryable_error() -> None:
    """A plain TCP listener that hangs up fails the handshake: retryable, with its own reason."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(RetryableError) as caught:
            probe(ProbeEndpoint("127.0.0.1", port), timeout=0.5)
    assert caught.value.reason in {"probe_tls_failed", "probe_unreachable"}


@pytest.mark.parametrize(
    ("host", "sni"),
    [
        ("bücher.example", None),
        ("127.0.0.1", "bücher.example"),
        ("app.corp.internal/path", None),
        ("app.corp.internal:443", None),
        ("-app.corp.internal", None),
        ("app..corp", None),
    ],
)
def test_a_host_or_sni_that_is_not_a_whole_ascii_host_name_is_refused(host: str, sni: str | None) -> None:
    """Non-ASCII names (give the xn-- form), paths, ports and malformed labels are bad configuration."""
    with pytest.raises(PermanentError) as caught:
        probe(ProbeEndpoint(host, 443, sni=sni), timeout=1)
    assert caught.value.reason == "bad_configuration"
