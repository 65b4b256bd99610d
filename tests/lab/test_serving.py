"""The lab's serving loop: serves every connection until stopped, and stopping ends the thread."""

from __future__ import annotations

import socket
import socketserver
import threading

from cosdoc_certs.lab.serving import ServingThread


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(self.request.recv(64).upper())


def _ask(address: tuple[str, int], text: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(text)
        return connection.recv(64)


def _serving_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "test-echo"]


def test_serves_connections_until_stopped_and_the_thread_ends() -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo) as server:
        address = server.server_address[:2]
        serving = ServingThread(server, name="test-echo")
        serving.start()
        assert [_ask(address, b"one"), _ask(address, b"two")] == [b"ONE", b"TWO"]
        serving.stop()
        assert _serving_threads() == []
        serving.stop()  # again: nothing left to stop


def test_a_server_never_started_stops_without_waiting_for_a_thread() -> None:
    with socketserver.TCPServer(("127.0.0.1", 0), _Echo) as server:
        serving = ServingThread(server, name="test-echo")
        serving.stop()
        assert _serving_threads() == []
