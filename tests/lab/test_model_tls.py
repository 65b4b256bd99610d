"""HTTPS bindings of the simulated server, served as real TLS listeners: real handshakes."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from cosdoc_certs.lab.certs import to_pfx
from cosdoc_certs.lab.scenarios import LabServer
from cosdoc_certs.thumbprints import thumbprint_of_der

DRIFT = "cosdoc.testkommune.no"
TEST = "cosdoc-test.testkommune.no"


@pytest.fixture
def served(default_server: LabServer) -> Iterator[LabServer]:
    """The default server with its TLS listeners running."""
    with default_server:
        yield default_server


def _handshake(
    server: LabServer, server_name: str | None, request: bytes = b""
) -> tuple[str, bytes]:
    """(thumbprint served, HTTP answer) for a verified handshake on the simulated *:443."""
    host, port = server.tls_endpoints()[("*", 443)]
    context = ssl.create_default_context(cadata=server.certificates.ca.root_pem().decode())
    context.check_hostname = server_name is not None
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
        assert certificate is not None
        answer = b""
        if request:
            tls.sendall(request)
            while chunk := tls.recv(4096):
                answer += chunk
    return thumbprint_of_der(certificate), answer


def test_each_https_binding_serves_its_certificate_with_a_verified_chain(
    served: LabServer,
) -> None:
    bindings = [binding for _, binding in served.bindings() if binding.protocol == "https"]
    assert len(bindings) == 3
    for binding in bindings:
        thumbprint, _ = _handshake(served, binding.host if binding.sni else None)
        assert thumbprint == binding.thumbprint, binding.binding_information


def test_one_loopback_listener_stands_for_the_simulated_ip_port(served: LabServer) -> None:
    endpoints = served.tls_endpoints()
    assert set(endpoints) == {("*", 443), ("0.0.0.0", 443)}  # noqa: S104
    host, port = endpoints[("*", 443)]
    assert host == "127.0.0.1"
    assert port != 443


def test_sni_routes_by_host_name_and_unknown_names_get_the_non_sni_fallback(
    served: LabServer,
) -> None:
    renewed = served.certificates.renewed_ssl
    served.store.add(renewed.certificate, renewed.private_key)
    served.set_binding_certificate("CosDoc Test", f"*:443:{TEST}", renewed.thumbprint)
    current = served.certificates.current_ssl.thumbprint
    assert _handshake(served, TEST)[0] == renewed.thumbprint
    assert _handshake(served, DRIFT)[0] == current
    assert _handshake(served, "localhost")[0] == current  # no SNI binding: the *:443 fallback
    assert _handshake(served, None)[0] == current


def test_rebinding_serves_the_new_certificate_at_once(served: LabServer) -> None:
    renewed = served.certificates.renewed_ssl
    served.store.import_pfx(_pfx(served), "pw")
    assert _handshake(served, DRIFT)[0] == served.certificates.current_ssl.thumbprint
    served.set_binding_certificate("CosDoc Drift", f"*:443:{DRIFT}", renewed.thumbprint)
    assert _handshake(served, DRIFT)[0] == renewed.thumbprint
    served.set_binding_certificate("CosDoc Drift", "*:443:", renewed.thumbprint)
    assert _handshake(served, None)[0] == renewed.thumbprint


def test_without_a_fallback_an_unknown_host_name_fails_the_handshake(served: LabServer) -> None:
    drift = served.site("CosDoc Drift")
    drift.bindings = [binding for binding in drift.bindings if binding.sni]
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        _handshake(served, "localhost")
    assert _handshake(served, DRIFT)[0] == served.certificates.current_ssl.thumbprint


def test_a_binding_whose_certificate_was_removed_fails_the_handshake(served: LabServer) -> None:
    served.store.remove(served.certificates.current_ssl.thumbprint)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(served, DRIFT)


@pytest.mark.parametrize(
    ("path", "stop_pool", "status", "body"),
    [
        ("/Authentication/api/health", None, b"200 OK", b"CosDoc Drift/Authentication on"),
        ("/kodeverk", None, b"200 OK", b"CosDoc Drift/kodeverk"),
        ("/", None, b"200 OK", b"CosDoc Drift on"),
        ("/Authentication", "Authentication Drift", b"503 Service Unavailable", b"Unavailable"),
        ("/kodeverk", "Authentication Drift", b"200 OK", b"CosDoc Drift/kodeverk"),
    ],
)
def test_after_the_handshake_iis_answers_for_the_application(
    served: LabServer, path: str, stop_pool: str | None, status: bytes, body: bytes
) -> None:
    if stop_pool:
        served.stop_app_pool(stop_pool)
    request = f"GET {path} HTTP/1.1\r\nHost: {DRIFT}\r\nConnection: close\r\n\r\n".encode()
    _, answer = _handshake(served, DRIFT, request)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status)
    assert body in payload


def test_stopping_closes_the_listeners(default_server: LabServer) -> None:
    default_server.start_tls()
    address = default_server.tls_endpoints()[("*", 443)]
    default_server.stop_tls()
    assert default_server.tls_endpoints() == {}
    with pytest.raises(OSError):  # noqa: PT011 -- refused or reset, depending on timing
        socket.create_connection(address, timeout=2).close()


def _pfx(server: LabServer) -> bytes:
    return to_pfx(server.certificates.renewed_ssl, b"pw")


def test_handshakes_during_rebinding_from_other_threads_always_get_a_bound_certificate(
    served: LabServer,
) -> None:
    renewed = served.certificates.renewed_ssl
    served.store.add(renewed.certificate, renewed.private_key)
    current = served.certificates.current_ssl.thumbprint
    binding = f"*:443:{DRIFT}"

    def flip(rounds: int) -> None:
        for round_number in range(rounds):
            thumbprint = renewed.thumbprint if round_number % 2 == 0 else current
            served.set_binding_certificate("CosDoc Drift", binding, thumbprint)

    with ThreadPoolExecutor(max_workers=8) as pool:
        flipping = pool.submit(flip, 200)
        seen = list(pool.map(lambda _: _handshake(served, DRIFT)[0], range(64)))
        flipping.result()
    assert set(seen) <= {current, renewed.thumbprint}
    assert len(seen) == 64
