"""tls: real handshakes against a local TLS server, SNI, and polling for a thumbprint."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosdoc_certs.errors import RemoteError
from cosdoc_certs.lab.certs import default_ca, make_ssl_certificate
from cosdoc_certs.tls import fetch_certificate, wait_for_certificate


class _Server:
    """A TLS server on 127.0.0.1 that records the SNI it was sent and can switch certificate."""

    def __init__(self, tmp_path: Path) -> None:
        self.issued = [make_ssl_certificate(default_ca()) for _ in range(2)]
        self.contexts = []
        for index, issued in enumerate(self.issued):
            cert, key = tmp_path / f"{index}.crt", tmp_path / f"{index}.key"
            cert.write_bytes(issued.cert_pem())
            key.write_bytes(issued.key_pem())
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            context.sni_callback = self._record_sni
            self.contexts.append(context)
        self.current = 0
        self.sni: list[str | None] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _record_sni(self, sock: ssl.SSLObject, name: str | None, context: object) -> None:
        self.sni.append(name)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.contexts[self.current].wrap_socket(connection, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                continue

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    running = _Server(tmp_path)
    yield running
    running.close()


def test_fetch_returns_the_served_leaf(server: _Server) -> None:
    served = fetch_certificate("127.0.0.1", server.port)
    assert served.thumbprint == server.issued[0].thumbprint
    assert served.certificate.subject == server.issued[0].certificate.subject
    assert len(served.sha256) == 64
    assert server.sni == [None]  # an IP address: no SNI


def test_sni_is_sent_for_names(server: _Server) -> None:
    fetch_certificate("localhost", server.port)
    fetch_certificate("127.0.0.1", server.port, server_name="svarut.kommune.no")
    assert server.sni == ["localhost", "svarut.kommune.no"]


def test_wait_returns_once_the_new_certificate_is_served(server: _Server) -> None:
    expected = server.issued[1].thumbprint
    switch = threading.Timer(0.2, lambda: setattr(server, "current", 1))
    switch.start()
    served = wait_for_certificate("127.0.0.1", server.port, expected_thumbprint=expected, timeout=5)
    assert served.thumbprint == expected


def test_wait_times_out_naming_what_is_served(server: _Server) -> None:
    expected = server.issued[1].thumbprint
    with pytest.raises(RemoteError, match=f"does not serve {expected}: it serves "):
        wait_for_certificate("127.0.0.1", server.port, expected_thumbprint=expected, timeout=0.3)


def test_closed_port_is_one_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RemoteError, match=f"no TLS handshake with 127.0.0.1:{port}"):
        fetch_certificate("127.0.0.1", port, timeout=1)
