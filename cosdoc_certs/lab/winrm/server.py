"""The lab's WinRM endpoint: an HTTP(S) server on loopback that pypsrp talks to like to Windows.

:class:`WinRMEndpoint` serves WS-Management on ``/wsman`` with basic authentication, over
plain HTTP or over TLS with a given certificate. Each request is parsed (:mod:`.wsman`),
routed to its shell (:mod:`.psrp`) and answered; faults are injected and calls recorded
(:mod:`.faults`). Every connection is served on its own thread, so several clients (each
with its own RunspacePool) can work at once.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from spnego.exceptions import SpnegoError

from cosdoc_certs.lab.serving import ServingThread
from cosdoc_certs.lab.winrm import wsman
from cosdoc_certs.lab.winrm.auth import (
    CERTIFICATE_AUTHORIZATION,
    SPNEGO_ENCRYPTED,
    Authenticator,
    AuthRefused,
    ConnectionAuth,
    is_encrypted,
    seal,
    unseal,
)
from cosdoc_certs.lab.winrm.faults import CallRecorder, DropPoint, Faults
from cosdoc_certs.lab.winrm.psrp import Services, ShellSession
from cosdoc_certs.lab.winrm.records import POWERSHELL_VERSION
from cosdoc_certs.lab.winrm.scripts import ScriptRegistry
from cosdoc_certs.lab.winrm.winrs import CMD_RESOURCE, CmdShell

log = logging.getLogger(__name__)

MAX_ENVELOPE_SIZE_KB = 500  # the WinRM default on Windows Server 2012 and later
IDLE_TIMEOUT_SECONDS = 7200.0  # WinRM's default IdleTimeout of a shell
_RECEIVE_MARGIN = 0.25  # answer a long-poll Receive this many seconds before its timeout
_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
_PROTOCOL = re.compile(r'protocol="([^"]+)"')


def tls_context(
    cert_pem: bytes, key_pem: bytes, *, client_ca_pem: bytes | None = None
) -> ssl.SSLContext:
    """A server-side TLS context for the endpoint from a PEM certificate (chain) and key.

    ``client_ca_pem`` (the CA certificates client certificates must chain to) asks clients
    for a certificate, for certificate authentication; a client may still connect without.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if client_ca_pem is not None:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
    with tempfile.TemporaryDirectory(prefix="cosdoc-lab-tls-") as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(cert_pem)
        key_fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(key_fd, "wb") as key_file:
            key_file.write(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


class WinRMEndpoint:
    """A WinRM (WS-Management + PSRP) endpoint on 127.0.0.1 running the registry's scripts.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``port=0`` picks a free
    port; ``tls`` (see :func:`tls_context`) switches to HTTPS. ``idle_timeout`` (seconds),
    ``max_envelope_kb`` (WinRM's ``MaxEnvelopeSizekb``: a larger request is answered HTTP
    413), ``access_denied`` (the account authenticates but may not open a shell: fault code
    5), ``language`` (``"nb-NO"``: fault texts of a Norwegian server) and
    ``powershell_version`` (the ``$PSVersionTable.PSVersion`` a new session reports) may be
    changed while it runs.
    """

    def __init__(
        self,
        registry: ScriptRegistry,
        *,
        username: str,
        password: str,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        allow_unencrypted: bool = False,
        keytab: Path | None = None,
        certificates: dict[str, str] | None = None,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.registry = registry
        self.idle_timeout = idle_timeout
        self.max_envelope_kb = MAX_ENVELOPE_SIZE_KB
        self.access_denied = False
        self.language = "en-US"
        self.powershell_version = POWERSHELL_VERSION
        self.faults = faults if faults is not None else Faults()
        self.recorder = CallRecorder()
        self.host = host
        self._tls = tls
        self.auth = Authenticator(
            username=username,
            password=password,
            tls=tls is not None,
            allow_unencrypted=allow_unencrypted,
            keytab=keytab,
            certificates=certificates,
        )
        self._requested_port = port
        self._services = Services(registry, self.faults, self.recorder)
        self._shells: dict[str, ShellSession] = {}
        self._cmd_shells: dict[str, CmdShell] = {}
        self._last_used: dict[str, float] = {}
        self._lock = threading.Lock()
        self._http_posts = 0
        self._server: _HTTPServer | None = None
        self._serving: ServingThread | None = None

    def __enter__(self) -> WinRMEndpoint:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def scheme(self) -> str:
        """``https`` when serving TLS, else ``http``."""
        return "https" if self._tls is not None else "http"

    @property
    def port(self) -> int:
        """The port the endpoint listens on (known once started)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The WS-Management URL, e.g. ``http://127.0.0.1:54321/wsman``."""
        return f"{self.scheme}://{self.host}:{self.port}/wsman"

    def start(self) -> None:
        """Listen and serve in a background thread."""
        if self._server is not None:
            return
        self.auth.open()
        server = _HTTPServer((self.host, self._requested_port), _Handler, self)
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._serving = ServingThread(server, name="lab-winrm")
        self._serving.start()
        log.info("lab WinRM endpoint listening on %s", self.url)

    def stop(self) -> None:
        """Stop serving, close every shell and every open connection."""
        server, serving = self._server, self._serving
        if server is None or serving is None:
            return
        serving.stop()
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            shell.close()
        server.close_connections()
        server.server_close()
        self._server, self._serving = None, None
        self.auth.close()
        log.info("lab WinRM endpoint stopped")

    def lose_shell(self, shell_id: str) -> None:
        """Forget a shell as if its host process died (a lab fault); its pipelines stop."""
        with self._lock:
            shell = self._shells.pop(shell_id.upper(), None) if shell_id else None
        if shell is not None:
            shell.close()

    @property
    def http_posts(self) -> int:
        """HTTP requests received, the authentication legs (401 answers) included."""
        with self._lock:
            return self._http_posts

    def count_post(self) -> None:
        """Count one HTTP request (called by the connection handler)."""
        with self._lock:
            self._http_posts += 1

    def handle(self, request: wsman.WSManRequest) -> bytes:
        """Answer one WS-Management request (raises WSManFault for a fault answer)."""
        cmd_shell = self._cmd_shell(request.shell_id) if request.shell_id else None
        if cmd_shell is not None and request.action in ("Command", "Receive", "Signal"):
            return self._cmd_request(cmd_shell, request)
        handlers = {
            "Create": self._create,
            "Command": self._command,
            "Send": self._send,
            "Receive": self._receive,
            "Signal": self._signal,
            "Delete": self._delete,
            "Get": self._get,
        }
        return handlers[request.action](request)

    def _shell(self, shell_id: str) -> ShellSession:
        """The shell a request names; a shell idle longer than ``idle_timeout`` is gone.

        WinRM deletes a shell no request touched for its IdleTimeout (7200 s by default);
        a later request for it gets the "shell was not found" fault, as for an unknown id.
        """
        key, now = shell_id.upper(), time.monotonic()
        with self._lock:
            shell = self._shells.get(key)
            expired = shell is not None and now - self._last_used[key] > self.idle_timeout
            if expired:
                del self._shells[key]
            else:
                self._last_used[key] = now
        if shell is not None and expired:
            log.info("shell %s expired after %.1f s idle", key, self.idle_timeout)
            self.recorder.fault("ShellExpired")
            shell.close()
        if shell is None or expired:
            raise wsman.shell_not_found(shell_id)
        return shell

    def _touch(self, shell_id: str) -> None:
        """A request for the shell just ended: its idle time starts now."""
        with self._lock:
            if shell_id.upper() in self._shells:
                self._last_used[shell_id.upper()] = time.monotonic()

    def _create(self, request: wsman.WSManRequest) -> bytes:
        if self.access_denied:
            raise wsman.access_denied()
        if request.resource_uri == CMD_RESOURCE:
            return self._create_cmd(request)
        if not request.resource_uri.startswith(wsman.POWERSHELL_RESOURCE_PREFIX):
            raise wsman.not_supported(f"the resource {request.resource_uri}")
        shell_el = wsman.find(request.body, "rsp:Shell")
        creation = wsman.find(request.body, "rsp:Shell/pwsh:creationXml")
        if shell_el is None or creation is None or not creation.text:
            raise wsman.invalid_message("Create carries no rsp:Shell with creationXml")
        shell_id = shell_el.attrib.get("ShellId") or str(uuid.uuid4())
        shell = ShellSession(shell_id.upper(), self._services, self.powershell_version)
        shell.open(_decode(creation.text))
        with self._lock:
            self._shells[shell.shell_id] = shell
            self._last_used[shell.shell_id] = time.monotonic()
        self.recorder.shell_created(shell.shell_id)
        return wsman.response(
            request,
            wsman.resource_created(self.url, request.resource_uri, shell.shell_id),
            wsman.shell_element(
                shell.shell_id, request.resource_uri, self._owner(), "Connected", self.idle_timeout
            ),
        )

    def _create_cmd(self, request: wsman.WSManRequest) -> bytes:
        shell_id = str(uuid.uuid4()).upper()
        with self._lock:
            self._cmd_shells[shell_id] = CmdShell(shell_id, self._services)
        self.recorder.shell_created(shell_id)
        return wsman.response(
            request,
            wsman.resource_created(self.url, request.resource_uri, shell_id),
            wsman.shell_element(
                shell_id, request.resource_uri, self._owner(), "Connected", self.idle_timeout
            ),
        )

    def _cmd_shell(self, shell_id: str) -> CmdShell | None:
        with self._lock:
            return self._cmd_shells.get(shell_id.upper())

    def _cmd_request(self, shell: CmdShell, request: wsman.WSManRequest) -> bytes:
        """Command, Receive and Signal for a WinRS cmd shell."""
        if request.action == "Command":
            line = wsman.find(request.body, "rsp:CommandLine")
            command = wsman.find(request.body, "rsp:CommandLine/rsp:Command")
            if line is None or command is None:
                raise wsman.invalid_message("Command carries no rsp:CommandLine/rsp:Command")
            command_id = (line.attrib.get("CommandId") or str(uuid.uuid4())).upper()
            arguments = [a.text or "" for a in wsman.findall(line, "rsp:Arguments")]
            shell.command(command_id, (command.text or "").strip('"'), arguments)
            self.recorder.pipeline_created(command_id)
            return wsman.response(request, wsman.command_response(command_id))
        if request.action == "Receive":
            desired = wsman.find(request.body, "rsp:Receive/rsp:DesiredStream")
            command_id = (desired.attrib.get("CommandId") or "") if desired is not None else ""
            output = shell.receive(command_id.upper())
            streams = {"stdout": output.stdout, "stderr": output.stderr}
            element = wsman.receive_streams(command_id, streams, output.exit_code)
            return wsman.response(request, element)
        if request.action == "Signal":
            signal_el = wsman.find(request.body, "rsp:Signal")
            command_id = signal_el.attrib.get("CommandId", "") if signal_el is not None else ""
            shell.forget(command_id.upper())
            return wsman.response(request, wsman.empty("SignalResponse"))
        raise wsman.not_supported(f"{request.action} on a cmd shell")

    def _command(self, request: wsman.WSManRequest) -> bytes:
        shell = self._shell(request.shell_id)
        line = wsman.find(request.body, "rsp:CommandLine")
        if line is None:
            raise wsman.invalid_message("Command carries no rsp:CommandLine")
        command_id = (line.attrib.get("CommandId") or str(uuid.uuid4())).upper()
        arguments = b"".join(_decode(a.text or "") for a in wsman.findall(line, "rsp:Arguments"))
        shell.command(command_id, arguments)
        return wsman.response(request, wsman.command_response(command_id))

    def _send(self, request: wsman.WSManRequest) -> bytes:
        shell = self._shell(request.shell_id)
        for stream in wsman.findall(request.body, "rsp:Send/rsp:Stream"):
            shell.send(stream.attrib.get("CommandId"), _decode(stream.text or ""))
        return wsman.response(request, wsman.empty("SendResponse"))

    def _receive(self, request: wsman.WSManRequest) -> bytes:
        shell = self._shell(request.shell_id)
        desired = wsman.find(request.body, "rsp:Receive/rsp:DesiredStream")
        command_id = desired.attrib.get("CommandId") if desired is not None else None
        server_max = self.max_envelope_kb * 1024
        envelope = min(request.max_envelope_size or server_max, server_max)
        timeout = max(0.0, request.operation_timeout - _RECEIVE_MARGIN)
        budget = wsman.base64_budget(envelope)
        try:
            data, done = shell.receive(command_id, budget, timeout, request.message_id)
        finally:
            self._touch(shell.shell_id)
        return wsman.response(request, wsman.receive_response(data, command_id, done))

    def _signal(self, request: wsman.WSManRequest) -> bytes:
        shell = self._shell(request.shell_id)
        signal_el = wsman.find(request.body, "rsp:Signal")
        code = wsman.find(request.body, "rsp:Signal/rsp:Code")
        if signal_el is None or code is None:
            raise wsman.invalid_message("Signal carries no rsp:Signal/rsp:Code")
        shell.signal(signal_el.attrib.get("CommandId", ""), code.text or "")
        return wsman.response(request, wsman.empty("SignalResponse"))

    def _delete(self, request: wsman.WSManRequest) -> bytes:
        with self._lock:
            cmd_shell = self._cmd_shells.pop(request.shell_id.upper(), None)
            shell = self._shells.pop(request.shell_id.upper(), None)
        if cmd_shell is not None:
            cmd_shell.close()
            return wsman.response(request)
        if shell is None:
            raise wsman.shell_not_found(request.shell_id)
        shell.close()
        return wsman.response(request)

    def _get(self, request: wsman.WSManRequest) -> bytes:
        if request.resource_uri == wsman.CONFIG_RESOURCE:
            return wsman.response(request, wsman.config_element(self.max_envelope_kb))
        if request.resource_uri == wsman.SHELL_RESOURCE and request.shell_id:
            shell = self._shell(request.shell_id)
            element = wsman.shell_element(
                shell.shell_id,
                wsman.POWERSHELL_RESOURCE_PREFIX,
                self._owner(),
                "Connected",
                self.idle_timeout,
            )
            return wsman.response(request, element)
        raise wsman.not_supported(f"Get on the resource {request.resource_uri}")

    def _owner(self) -> str:
        return f"{self.auth.computer}\\{self.auth.username}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], endpoint: WinRMEndpoint
    ) -> None:
        self.endpoint = endpoint
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)
        self.server.track(self.request, True)
        self._auth = ConnectionAuth()
        self._sealed_protocol = ""
        super().setup()

    def finish(self) -> None:
        self.server.track(self.request, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        endpoint = self.server.endpoint
        endpoint.count_post()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/wsman":
            self._reply(HTTPStatus.NOT_FOUND, b"")
            return
        try:
            token_headers = self._authenticate(endpoint, body)
        except AuthRefused as refused:
            if refused.presented:
                endpoint.recorder.fault("Unauthorized")
            self._reply(HTTPStatus.UNAUTHORIZED, b"", endpoint.auth.challenge_headers())
            return
        if token_headers is None:
            return
        message = self._open_message(endpoint, body)
        if message is None:
            return
        if len(message) > endpoint.max_envelope_kb * 1024:
            endpoint.recorder.fault("EnvelopeTooLarge")
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"")
            return
        latency = endpoint.faults.latency_per_request
        if latency:
            time.sleep(latency)
        status, payload, drop = self._answer(endpoint, message)
        if drop is not DropPoint.NONE:
            endpoint.recorder.fault(f"DroppedConnection{drop.value.capitalize()}")
            self.close_connection = True
            _shutdown(self.request)
            return
        if self._sealed_protocol:
            content_type, payload = seal(self._auth.context, self._sealed_protocol, payload)
            self._reply(status, payload, token_headers, content_type)
        else:
            self._reply(status, payload, token_headers)

    def _authenticate(self, endpoint: WinRMEndpoint, body: bytes) -> list[tuple[str, str]] | None:
        """Check the request's credentials: extra reply headers, or None when already answered.

        A Negotiate/Kerberos token steps the connection's acceptor (401 with the next token
        until complete; the handshake's empty POST is answered 200). Basic and certificate
        authenticate each request; a sealed connection needs no header.
        """
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("negotiate", "kerberos"):
            step = endpoint.auth.step(self._auth, scheme, value)
            token = base64.b64encode(step.token).decode("ascii") if step.token else ""
            headers = [("WWW-Authenticate", f"{scheme} {token}")] if token else []
            if not step.complete:
                self._reply(HTTPStatus.UNAUTHORIZED, b"", headers)
                return None
            if not body:
                self._reply(HTTPStatus.OK, b"", headers)
                return None
            return headers
        if scheme.lower() == "basic":
            self._auth.reset()
            endpoint.auth.basic(value)
            return []
        if header == CERTIFICATE_AUTHORIZATION:
            self._auth.reset()
            endpoint.auth.certificate(self._peer_certificate())
            return []
        if header or not self._auth.sealing:
            raise AuthRefused("no credentials", presented=bool(header))
        return []

    def _open_message(self, endpoint: WinRMEndpoint, body: bytes) -> bytes | None:
        """The SOAP message of a request, unsealed; None when refused (already answered).

        Plain HTTP takes only sealed messages unless the endpoint allows unencrypted traffic:
        Windows answers an unencrypted message with HTTP 500 and an empty body.
        """
        content_type = self.headers.get("Content-Type") or ""
        self._sealed_protocol = ""
        if is_encrypted(content_type):
            if not self._auth.sealing:
                endpoint.recorder.fault("Unauthorized")
                self._reply(HTTPStatus.UNAUTHORIZED, b"", endpoint.auth.challenge_headers())
                return None
            try:
                message = unseal(self._auth.context, body)
            except (ValueError, struct.error, SpnegoError):
                endpoint.recorder.fault("UndecryptableMessage")
                self._reply(HTTPStatus.BAD_REQUEST, b"")
                return None
            match = _PROTOCOL.search(content_type)
            self._sealed_protocol = match.group(1) if match else SPNEGO_ENCRYPTED
            return message
        if self._auth.sealing and not endpoint.auth.tls and not endpoint.auth.allow_unencrypted:
            endpoint.recorder.fault("UnencryptedRefused")
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b"")
            return None
        return body

    def _peer_certificate(self) -> bytes | None:
        if isinstance(self.request, ssl.SSLSocket):
            return self.request.getpeercert(binary_form=True)
        return None

    def _answer(self, endpoint: WinRMEndpoint, body: bytes) -> tuple[HTTPStatus, bytes, DropPoint]:
        try:
            request = wsman.parse_request(body)
        except wsman.WSManFault as error:
            endpoint.recorder.fault(error.subcode)
            return HTTPStatus.INTERNAL_SERVER_ERROR, wsman.fault("", error), DropPoint.NONE
        endpoint.recorder.request(request.action)
        drop = endpoint.faults.on_request(request.action)
        if drop is DropPoint.BEFORE:
            return HTTPStatus.OK, b"", drop
        if drop is DropPoint.SHELL_LOST:
            endpoint.lose_shell(request.shell_id)
            drop = DropPoint.NONE
        try:
            answer = endpoint.handle(request)
            endpoint.recorder.response(request.action, len(answer))
            return HTTPStatus.OK, answer, drop
        except wsman.WSManFault as error:
            kind = "OperationTimeout" if error.code == wsman.OPERATION_TIMEOUT else error.subcode
            endpoint.recorder.fault(kind)
            answer = wsman.fault(request.message_id, error.localized(endpoint.language))
            return HTTPStatus.INTERNAL_SERVER_ERROR, answer, drop
        except Exception:  # a lab bug must answer as a fault, not cut the connection
            log.exception("the lab endpoint failed on a %s request", request.action)
            endpoint.recorder.fault("InternalError")
            internal = wsman.internal_error(request.action)
            return HTTPStatus.INTERNAL_SERVER_ERROR, wsman.fault(request.message_id, internal), drop

    def _reply(
        self,
        status: HTTPStatus,
        payload: bytes,
        headers: list[tuple[str, str]] | None = None,
        content_type: str = _CONTENT_TYPE,
    ) -> None:
        self.send_response(status)
        for name, value in headers or ():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise wsman.invalid_message("a stream is not valid base64") from None


def _shutdown(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        log.debug("connection already closed")
