"""A recording TCP proxy on loopback: what a client and the lab endpoint put on the wire."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from cosdoc_certs.windows.connection import ConnectionOptions


class RecordingProxy:
    """Forwards 127.0.0.1:``port`` to ``target``, keeping every byte sent either way.

    A context manager; ``sent`` holds what clients sent, ``received`` what the server answered.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._sent = bytearray()
        self._received = bytearray()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def sent(self) -> bytes:
        with self._lock:
            return bytes(self._sent)

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    def __enter__(self) -> RecordingProxy:
        self._start(self._accept)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(10)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=30)
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            self._start(self._pump, client, server, self._sent)
            self._start(self._pump, server, client, self._received)

    def _pump(self, source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            with self._lock:
                record.extend(data)
            try:
                sink.sendall(data)
            except OSError:
                return


def through(proxy: RecordingProxy, options: ConnectionOptions) -> ConnectionOptions:
    """``options`` sent to the proxy's port instead of the server's."""
    values = {
        field: getattr(options, field)
        for field in ("server", "username", "password", "auth", "https", "insecure_http")
    }
    return ConnectionOptions(**values, port=proxy.port)
