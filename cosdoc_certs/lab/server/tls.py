"""HTTPS bindings of the simulated server, served as real TLS listeners on 127.0.0.1.

One listener per simulated ``ip:port`` (``*`` and ``0.0.0.0`` are one listener), on an
ephemeral loopback port. The certificate is chosen per handshake like http.sys does: an SNI
binding (``sslFlags`` 1 and a host name) matching the client's server name wins; otherwise the
non-SNI binding of that ``ip:port`` is the fallback; with neither, the handshake fails. The
choice reads the server's bindings at handshake time, so a rebinding is served at once.

After the handshake a listener answers one HTTP request the way IIS would at that address:
``200`` naming the site and application, ``503 Service Unavailable`` when the application's
app pool is stopped, ``404`` when no site has a binding for the request's host.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cosdoc_certs.lab.serving import ServingThread

if TYPE_CHECKING:
    from cosdoc_certs.lab.model import Binding, CosDocServer, IisSite
    from cosdoc_certs.lab.server.store import StoreEntry

logger = logging.getLogger(__name__)

_WILDCARD = "0.0.0.0"  # noqa: S104 -- a simulated address, never bound
_REQUEST_TIMEOUT = 5.0
_MAX_REQUEST = 64 * 1024
_SniCallback = Callable[[ssl.SSLSocket | ssl.SSLObject, "str | None", ssl.SSLContext], "int | None"]


class TlsListeners:
    """The TLS listeners of one :class:`CosDocServer`; :meth:`refresh` after bindings change."""

    def __init__(self, server: CosDocServer) -> None:
        self._server = server
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._contexts: dict[tuple[str, tuple[str, int] | None], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Start a listener for every HTTPS ``ip:port`` that has none; stop unused ones."""
        wanted = {
            binding.endpoint
            for _, binding in self._server.bindings()
            if binding.protocol.casefold() == "https"
        }
        with self._lock:
            for endpoint in set(self._listeners) - wanted:
                self._listeners.pop(endpoint).close()
            for endpoint in sorted(wanted - set(self._listeners)):
                self._listeners[endpoint] = _Listener(self, endpoint)

    def endpoints(self) -> dict[tuple[str, int], tuple[str, int]]:
        """Simulated ``(ip, port)`` → real ``(host, port)``; a wildcard appears as ``*`` too."""
        with self._lock:
            result = {endpoint: listener.address for endpoint, listener in self._listeners.items()}
        for (ip, port), address in list(result.items()):
            if ip == _WILDCARD:
                result[("*", port)] = address
        return result

    def close(self) -> None:
        """Stop every listener and wait for their threads."""
        with self._lock:
            listeners, self._listeners = list(self._listeners.values()), {}
        for listener in listeners:
            listener.close()

    def base_context(self, endpoint: tuple[str, int]) -> ssl.SSLContext:
        """The context a handshake on ``endpoint`` starts with: the non-SNI certificate, if any.

        Its SNI callback switches to the certificate of a matching SNI binding.
        """
        with self._server.lock:
            fallback = self._fallback_binding(endpoint)
            entry = self._entry(fallback) if fallback is not None else None
        return self._context(entry, endpoint)

    def site_for(self, endpoint: tuple[str, int], host: str) -> IisSite | None:
        """The site IIS routes a request for ``host`` on ``endpoint`` to."""
        host = host.rsplit(":", 1)[0].casefold() if host else ""
        with self._server.lock:
            candidates = [
                (site, binding)
                for site, binding in self._server.bindings()
                if binding.endpoint == endpoint and binding.protocol.casefold() == "https"
            ]
        for site, binding in candidates:
            if binding.host and binding.host.casefold() == host:
                return site
        return next((site for site, binding in candidates if not binding.host), None)

    @property
    def server(self) -> CosDocServer:
        """The simulated server whose bindings are served."""
        return self._server

    def _sni_callback(self, endpoint: tuple[str, int]) -> _SniCallback:
        def choose(
            connection: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
        ) -> int | None:
            if server_name is None:
                return None
            with self._server.lock:
                binding = self._sni_binding(endpoint, server_name)
                entry = self._entry(binding) if binding is not None else None
            if entry is not None:
                connection.context = self._context(entry)
                return None
            with self._server.lock:
                has_fallback = self._fallback_binding(endpoint) is not None
            return None if has_fallback else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME

        return choose

    def _sni_binding(self, endpoint: tuple[str, int], server_name: str) -> Binding | None:
        for _, binding in self._server.bindings():
            if (
                binding.endpoint == endpoint
                and binding.sni
                and binding.host.casefold() == server_name.casefold()
            ):
                return binding
        return None

    def _fallback_binding(self, endpoint: tuple[str, int]) -> Binding | None:
        for _, binding in self._server.bindings():
            if (
                binding.endpoint == endpoint
                and binding.protocol.casefold() == "https"
                and not binding.sni
                and binding.thumbprint
            ):
                return binding
        return None

    def _entry(self, binding: Binding) -> StoreEntry | None:
        if binding.thumbprint is None:
            return None
        served = self._server.faults.served_instead() or binding.thumbprint  # a lab fault
        entry = self._server.store.find(served)
        return entry if entry is not None and entry.has_private_key else None

    def _context(
        self, entry: StoreEntry | None, endpoint: tuple[str, int] | None = None
    ) -> ssl.SSLContext:
        """A cached context for ``entry``; with ``endpoint``, one that routes by SNI there."""
        key = (entry.thumbprint if entry is not None else "", endpoint)
        with self._lock:
            context = self._contexts.get(key)
        if context is None:
            chain = self._server.store.chain_for(entry.certificate) if entry is not None else []
            context = _new_context(entry, chain)
            if endpoint is not None:
                context.sni_callback = self._sni_callback(endpoint)
            with self._lock:
                self._contexts[key] = context
        return context


class _Listener:
    """One loopback TLS listener standing for the simulated ``endpoint``."""

    def __init__(self, listeners: TlsListeners, endpoint: tuple[str, int]) -> None:
        self.endpoint = endpoint
        self._tcp = _TcpServer(("127.0.0.1", 0), _Handler)
        self._tcp.listeners = listeners
        self._tcp.endpoint = endpoint
        host, port = self._tcp.server_address[:2]
        self.address = (str(host), int(port))
        self._serving = ServingThread(self._tcp, name=f"lab-tls-{endpoint[0]}:{endpoint[1]}")
        self._serving.start()
        logger.debug("serving simulated %s:%d on %s:%d", *endpoint, *self.address)

    def close(self) -> None:
        """Stop accepting, join the thread and close the socket."""
        self._serving.stop()
        self._tcp.server_close()


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    listeners: TlsListeners
    endpoint: tuple[str, int]


class _Handler(socketserver.BaseRequestHandler):
    """Handshake with the certificate chosen now, then answer one HTTP request."""

    server: _TcpServer

    def handle(self) -> None:
        raw: socket.socket = self.request
        raw.settimeout(_REQUEST_TIMEOUT)
        listeners = self.server.listeners
        try:
            with listeners.base_context(self.server.endpoint).wrap_socket(
                raw, server_side=True
            ) as tls:
                request = _read_request(tls)
                if request is not None:
                    tls.sendall(_response(listeners, self.server.endpoint, request))
        except (OSError, ssl.SSLError) as error:
            logger.debug("TLS connection on %s ended: %s", self.server.endpoint, error)


def _read_request(tls: ssl.SSLSocket) -> tuple[str, str] | None:
    """(path, host) of the HTTP request on ``tls``, or None if the client sent none."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _MAX_REQUEST:
        chunk = tls.recv(4096)
        if not chunk:
            return None
        data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) > 1 else "/"
    host = next(
        (line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")),
        "",
    )
    return path, host


def _response(
    listeners: TlsListeners, endpoint: tuple[str, int], request: tuple[str, str]
) -> bytes:
    path, host = request
    server = listeners.server
    site = listeners.site_for(endpoint, host)
    if site is None:
        return _http(404, "Not Found", "Bad Request - Invalid Hostname")
    with server.lock:
        application = _application_for(server, site, path)
        pool_name = application[1]
        pool = server.app_pools.get(pool_name)
        stopped = pool is None or pool.state != "Started"
    if stopped:
        return _http(503, "Service Unavailable", "Service Unavailable")
    return _http(200, "OK", f"{site.name}{application[0]} on {server.hostname}")


def _application_for(server: CosDocServer, site: IisSite, path: str) -> tuple[str, str]:
    """(application path, app pool) serving ``path`` of ``site``: the longest matching prefix."""
    best = ("", site.app_pool)
    wanted = path.split("?", 1)[0].casefold().rstrip("/") + "/"
    for application in server.applications:
        prefix = application.path.casefold().rstrip("/") + "/"
        if (
            application.site.casefold() == site.name.casefold()
            and wanted.startswith(prefix)
            and len(application.path) > len(best[0])
        ):
            best = (application.path, application.app_pool)
    return best


def _http(status: int, reason: str, body: str) -> bytes:
    payload = body.encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\nServer: Microsoft-IIS/10.0\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + payload


def _new_context(entry: StoreEntry | None, chain: list[x509.Certificate]) -> ssl.SSLContext:
    """A server context presenting ``entry``'s certificate and ``chain`` (none if no entry).

    ``ssl`` loads keys only from files: the key goes to a private temporary folder encrypted
    with a one-time password and is deleted as soon as it is loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if entry is None or entry.private_key is None:
        return context
    password = secrets.token_bytes(32)
    certificates = [entry.certificate, *chain]
    with tempfile.TemporaryDirectory(prefix="cosdoc-lab-tls-") as folder:
        cert_file, key_file = Path(folder) / "chain.pem", Path(folder) / "key.pem"
        _write_private(
            cert_file,
            b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates),
        )
        _write_private(
            key_file,
            entry.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password),
            ),
        )
        context.load_cert_chain(cert_file, key_file, password=password)
    return context


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
