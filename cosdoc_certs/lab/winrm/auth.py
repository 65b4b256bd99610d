"""How the lab endpoint authenticates a connection, as a default Windows Server does.

After ``Enable-PSRemoting`` a server offers ``Negotiate`` and ``Kerberos`` on HTTP 5985, has
``AllowUnencrypted=false`` (every message after the handshake is sealed by the auth context)
and takes Basic only for local accounts. :class:`Authenticator` holds one endpoint's policy
and accounts; :class:`ConnectionAuth` is the state of one TCP connection (the security
context belongs to the connection: a new connection authenticates again).

Negotiate and NTLM are accepted by pyspnego's acceptor (``spnego.server``), which reads its
users from the file named by ``NTLM_USER_FILE`` and Kerberos keys from ``KRB5_KTNAME``. Both
are process-wide environment variables, so each step of an acceptor runs under one lock with
this endpoint's files set (several endpoints with different passwords can run in one process).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import logging
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import spnego
import spnego.exceptions
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

log = logging.getLogger(__name__)

BOUNDARY = "Encrypted Boundary"
SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
KERBEROS_ENCRYPTED = "application/HTTP-Kerberos-session-encrypted"
CERTIFICATE_AUTHORIZATION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
_TOKEN_SCHEMES = ("Negotiate", "Kerberos")
_PART = re.compile(rb"--\s*" + re.escape(BOUNDARY.encode()) + rb"\r\n")
_LENGTH = re.compile(rb"Length=(\d+)")
_ACCEPTOR_ENVIRONMENT = threading.Lock()
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # Microsoft's user principal name


class AuthRefused(Exception):
    """The credentials were refused: answer 401 and offer the schemes again.

    ``presented`` is False for a request that carried no credentials (the first leg of
    every handshake), True for credentials that were wrong.
    """

    def __init__(self, reason: str, *, presented: bool = True) -> None:
        super().__init__(reason)
        self.presented = presented


@dataclasses.dataclass
class ConnectionAuth:
    """The authentication state of one TCP connection."""

    context: Any = None
    scheme: str = ""
    account: str = ""

    @property
    def sealing(self) -> bool:
        """Whether messages on this connection are sealed by a complete security context."""
        return self.context is not None and bool(self.context.complete)

    def reset(self) -> None:
        """Forget the context (a new handshake starts, or one failed)."""
        self.context, self.scheme, self.account = None, "", ""


@dataclasses.dataclass(frozen=True)
class Authentication:
    """One completed handshake: the mechanism under Negotiate, who, and whether the client
    delegated its credentials (a forwarded Kerberos ticket: the second hop to a UNC share)."""

    protocol: str
    account: str
    delegated: bool


@dataclasses.dataclass(frozen=True)
class Step:
    """One answer in a handshake: the token to send back and whether it is complete."""

    token: bytes | None
    complete: bool


class Authenticator:
    """One endpoint's accounts and authentication policy.

    ``username``/``password`` is a local administrator of ``computer`` (a ``COMPUTER\\user``
    user name sets both). ``tls``:
    the endpoint serves HTTPS. Basic is accepted for that local account only, and over plain
    HTTP only with ``allow_unencrypted`` (Windows' ``AllowUnencrypted=true``). ``keytab``
    (a ``HTTP/<host>`` and/or ``host/<host>`` keytab) enables Kerberos. ``certificates`` maps
    a client certificate's UPN (``user@domain`` in its subjectAltName) to a local account.
    """

    def __init__(
        self,
        *,
        username: str,
        password: str,
        computer: str = "LAB",
        tls: bool = False,
        allow_unencrypted: bool = False,
        keytab: Path | None = None,
        certificates: dict[str, str] | None = None,
    ) -> None:
        named_computer, _, name = username.rpartition("\\")
        self.username = name
        self.computer = named_computer or computer
        self.tls = tls
        self.allow_unencrypted = allow_unencrypted
        self.keytab = keytab
        self.certificates = {upn.lower(): account for upn, account in (certificates or {}).items()}
        self._password = password
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.Lock()
        self._authentications: list[Authentication] = []

    @property
    def authentications(self) -> list[Authentication]:
        """The completed Negotiate/Kerberos handshakes, in order."""
        with self._lock:
            return list(self._authentications)

    def open(self) -> None:
        """Write the acceptor's user file (mode 0600, in a folder of its own)."""
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="cosdoc-lab-ntlm-")
            self._write_user_file()

    def close(self) -> None:
        """Remove the acceptor's user file."""
        folder, self._folder = self._folder, None
        if folder is not None:
            folder.cleanup()

    @property
    def _user_file(self) -> Path:
        if self._folder is None:
            raise RuntimeError("the authenticator is not open")
        return Path(self._folder.name, "ntlm-users")

    def _write_user_file(self) -> None:
        # "." is this computer's name in a logon (.\user), as Windows takes it; the NTLM
        # response is computed over the domain the client sent, so each form needs its line
        lines = [
            f":{self.username}:{self._password}",
            f"{self.computer}:{self.username}:{self._password}",
            f".:{self.username}:{self._password}",
        ]
        descriptor = os.open(self._user_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")

    @property
    def basic_offered(self) -> bool:
        """Basic is offered over HTTPS, and over HTTP only when unencrypted traffic is allowed."""
        return self.tls or self.allow_unencrypted

    def challenge_headers(self) -> list[tuple[str, str]]:
        """The ``WWW-Authenticate`` headers of a 401 without a token, as Windows sends them."""
        headers = [("WWW-Authenticate", scheme) for scheme in _TOKEN_SCHEMES]
        if self.basic_offered:
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        return headers

    def basic(self, credentials: str) -> str:
        """The account a Basic header names, or :class:`AuthRefused`.

        Windows takes Basic for local accounts only: ``DOMAIN\\user`` and ``user@domain`` are
        refused even with the right password (``COMPUTER\\user`` of this computer is the
        local account), and so is Basic over HTTP unless allowed.
        """
        if not self.basic_offered:
            raise AuthRefused("Basic over HTTP needs AllowUnencrypted")
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthRefused("the Basic header is not base64") from None
        given, _, password = decoded.partition(":")
        domain, _, username = given.rpartition("\\")
        if "@" in username or domain.lower() not in ("", ".", self.computer.lower()):
            raise AuthRefused("Basic authentication is for local accounts only")
        same_user = hmac.compare_digest(username.lower(), self.username.lower())
        same_password = hmac.compare_digest(password.encode(), self._password.encode())
        if not (same_user & same_password):
            raise AuthRefused("wrong user name or password")
        return self.username

    def certificate(self, peer_certificate: bytes | None) -> str:
        """The local account a (TLS-verified) client certificate maps to, or :class:`AuthRefused`.

        Windows maps a client certificate by the UPN in its subjectAltName (``New-Item
        WSMan:\\localhost\\ClientCertificate -Subject user@host``).
        """
        if not self.tls or peer_certificate is None:
            raise AuthRefused("no client certificate")
        for upn in certificate_upns(x509.load_der_x509_certificate(peer_certificate)):
            account = self.certificates.get(upn.lower())
            if account:
                return account
        raise AuthRefused("the client certificate is mapped to no account")

    def step(self, state: ConnectionAuth, scheme: str, token_text: str) -> Step:
        """Feed one Negotiate/Kerberos token to the connection's acceptor."""
        try:
            token = base64.b64decode(token_text.strip(), validate=True)
        except binascii.Error:
            state.reset()
            raise AuthRefused("the token is not base64") from None
        if state.context is None or state.context.complete:
            state.reset()
            state.context = self._acceptor()
            state.scheme = scheme.lower()
        try:
            with self._acceptor_environment():
                answer = state.context.step(token)
        except (spnego.exceptions.SpnegoError, ValueError) as error:
            state.reset()
            log.info("authentication refused: %s", error)
            raise AuthRefused(str(error)) from None
        if state.context.complete:
            state.account = str(state.context.client_principal or self.username)
            self._record(state)
        return Step(answer, bool(state.context.complete))

    def _record(self, state: ConnectionAuth) -> None:
        context = state.context
        delegated = bool(context.context_attr & spnego.ContextReq.delegate)
        done = Authentication(str(context.negotiated_protocol), state.account, delegated)
        log.info("authenticated %s with %s", done.account, done.protocol)
        with self._lock:
            self._authentications.append(done)

    def _acceptor(self) -> Any:
        with self._acceptor_environment():
            return spnego.server(
                hostname="localhost",
                service="HTTP",
                protocol="negotiate",
                options=spnego.NegotiateOptions.wrapping_winrm,
            )

    @contextmanager
    def _acceptor_environment(self) -> Iterator[None]:
        variables = {"NTLM_USER_FILE": str(self._user_file)}
        if self.keytab is not None:
            variables["KRB5_KTNAME"] = str(self.keytab)
        with _ACCEPTOR_ENVIRONMENT:
            saved = {name: os.environ.get(name) for name in variables}
            os.environ.update(variables)
            try:
                yield
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value


def is_encrypted(content_type: str) -> bool:
    """Whether a body is a sealed WinRM message (``multipart/encrypted``)."""
    return content_type.lower().startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))


def unseal(context: Any, body: bytes) -> bytes:
    """The SOAP message inside a ``multipart/encrypted`` body (MS-WSMV 2.2.9.1)."""
    parts = [part for part in _PART.split(body) if part]
    message = b""
    for header, payload in zip(parts[0::2], parts[1::2], strict=False):
        length = _LENGTH.search(header)
        payload = payload.removesuffix(f"--{BOUNDARY}--\r\n".encode())
        payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        if length is None or len(payload) < 4:
            raise ValueError("a sealed part has no length or no data")
        (header_length,) = struct.unpack("<i", payload[:4])
        signature = payload[4 : 4 + header_length]
        plain = context.unwrap_winrm(signature, payload[4 + header_length :])
        if len(plain) != int(length.group(1)):
            raise ValueError("a sealed part's length does not match its header")
        message += plain
    if not parts:
        raise ValueError("the body has no sealed part")
    return message


def seal(context: Any, protocol: str, message: bytes) -> tuple[str, bytes]:
    """``message`` sealed by ``context``: the Content-Type header and the body."""
    signature, sealed, padding = context.wrap_winrm(message)
    head = "\r\n".join(
        (
            f"--{BOUNDARY}",
            f"\tContent-Type: {protocol}",
            "\tOriginalContent: type=application/soap+xml;charset=UTF-8;"
            f"Length={len(message) + padding}",
            f"--{BOUNDARY}",
            "\tContent-Type: application/octet-stream",
            "",
        )
    ).encode()
    tail = f"--{BOUNDARY}--\r\n".encode()
    body = head + struct.pack("<i", len(signature)) + signature + sealed + tail
    content_type = f'multipart/encrypted;protocol="{protocol}";boundary="{BOUNDARY}"'
    return content_type, body


def certificate_upns(certificate: x509.Certificate) -> list[str]:
    """The user principal names in a certificate's subjectAltName (otherName, UTF8String)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    upns = []
    for other in names.get_values_for_type(x509.OtherName):
        value = other.value  # DER: UTF8String tag 0x0c, short length
        if other.type_id == UPN_OID and len(value) > 2 and value[0] == 0x0C:
            upns.append(value[2 : 2 + value[1]].decode("utf-8", "replace"))
    return upns
