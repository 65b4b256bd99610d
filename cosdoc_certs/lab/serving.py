"""A socketserver served on a thread of its own that stops at once when told, without polling.

``socketserver``'s ``serve_forever`` wakes every ``poll_interval`` to see whether
``shutdown()`` was called, so stopping a server waits up to that long — for every listener the
lab runs, one after the other. :class:`ServingThread` waits on the listening socket and on a
wake-up socket together instead: :meth:`ServingThread.stop` writes to the latter and the loop
ends at once.
"""

from __future__ import annotations

import selectors
import socket
import socketserver
import threading


class ServingThread:
    """Serve ``server`` on a daemon thread named ``name`` until :meth:`stop`."""

    def __init__(self, server: socketserver.TCPServer, name: str) -> None:
        self._server = server
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        """Start accepting connections."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, wait for the serving loop to end (idempotent; the server stays open)."""
        if self._wake_writer.fileno() == -1:
            return
        self._wake_writer.send(b"\0")
        if self._thread.ident is not None:
            self._thread.join()
        self._wake_writer.close()
        self._wake_reader.close()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server.fileno(), selectors.EVENT_READ, "accept")
            selector.register(self._wake_reader, selectors.EVENT_READ, "stop")
            while True:
                ready = {key.data for key, _ in selector.select()}
                if "stop" in ready:
                    return
                self._server.handle_request()
