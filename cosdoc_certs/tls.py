"""What a TLS endpoint actually serves: the proof that a rotation took effect.

A real TLS handshake (no certificate validation: we want to *see* what is served, even an
expired or self-signed certificate) returns the leaf's DER and thumbprint. SNI is sent when a
server name is known. :func:`wait_for_certificate` polls until the endpoint serves an
expected thumbprint — each attempt is a handshake, with a short growing pause between
attempts only while the answer is still the wrong one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass

from cryptography import x509

from cosdoc_certs._aio import synchronous
from cosdoc_certs.errors import RemoteError
from cosdoc_certs.thumbprints import normalize_thumbprint, thumbprint_of_der

__all__ = [
    "ServedCertificate",
    "fetch_certificate",
    "fetch_certificate_async",
    "wait_for_certificate",
    "wait_for_certificate_async",
]

logger = logging.getLogger(__name__)

_FIRST_PAUSE = 0.02
_MAX_PAUSE = 0.5


@dataclass(frozen=True)
class ServedCertificate:
    """The leaf certificate an endpoint presented in a handshake."""

    host: str
    port: int
    server_name: str | None
    der: bytes

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the DER, upper-case hex (the Windows thumbprint)."""
        return thumbprint_of_der(self.der)

    @property
    def sha256(self) -> str:
        """SHA-256 of the DER, lower-case hex."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_der_x509_certificate(self.der)

    def __repr__(self) -> str:
        sni = f" sni={self.server_name}" if self.server_name else ""
        return f"<ServedCertificate {self.host}:{self.port}{sni} {self.thumbprint}>"


@functools.cache
def _client_context() -> ssl.SSLContext:
    """A context that completes the handshake whatever the certificate (we only look).

    One for the process: it holds no state of a connection, and threads may share it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we inspect what is served, we do not trust it
    return context


def _sni_for(host: str, server_name: str | None) -> str | None:
    """The name to send as SNI: ``server_name``, else ``host`` unless it is an IP address."""
    if server_name is not None:
        return server_name or None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def _unreachable(host: str, port: int, error: BaseException) -> RemoteError:
    reason = str(error) or type(error).__name__
    return RemoteError(
        f"no TLS handshake with {host}:{port}: {reason}",
        "check that the service runs and listens there, and that a firewall lets you in",
    )


def fetch_certificate(
    host: str, port: int = 443, *, server_name: str | None = None, timeout: float = 5.0
) -> ServedCertificate:
    """Handshake with ``host:port`` and return the leaf it serves (SNI: see ``_sni_for``).

    ``server_name=""`` sends no SNI at all.
    """
    sni = _sni_for(host, server_name)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            _client_context().wrap_socket(raw, server_hostname=sni) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as error:
        raise _unreachable(host, port, error) from error
    if not der:
        raise _unreachable(host, port, ValueError("the server sent no certificate"))
    return ServedCertificate(host, port, sni, der)


async def fetch_certificate_async(
    host: str, port: int = 443, *, server_name: str | None = None, timeout: float = 5.0
) -> ServedCertificate:
    """:func:`fetch_certificate` for asyncio code."""
    sni = _sni_for(host, server_name)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=_client_context(), server_hostname=sni or ""),
            timeout,
        )
    except (OSError, ssl.SSLError, asyncio.TimeoutError) as error:
        raise _unreachable(host, port, error) from error
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            logger.debug("TLS close with %s:%s was not clean", host, port)
    if not der:
        raise _unreachable(host, port, ValueError("the server sent no certificate"))
    return ServedCertificate(host, port, sni, der)


def _mismatch(
    host: str, port: int, expected: str, last: ServedCertificate | None, error: Exception | None
) -> RemoteError:
    seen = f"it serves {last.thumbprint}" if last else f"no handshake ({error})"
    return RemoteError(
        f"{host}:{port} does not serve {expected}: {seen}",
        "check the service's logs; it may still be starting or refuse the new files",
    )


async def wait_for_certificate_async(
    host: str,
    port: int = 443,
    *,
    expected_thumbprint: str,
    server_name: str | None = None,
    timeout: float = 30.0,
) -> ServedCertificate:
    """Poll until ``host:port`` serves ``expected_thumbprint``; RemoteError after ``timeout``."""
    expected = normalize_thumbprint(expected_thumbprint)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause, last, error = _FIRST_PAUSE, None, None
    while True:
        remaining = deadline - loop.time()
        try:
            last = await fetch_certificate_async(
                host, port, server_name=server_name, timeout=max(0.1, min(5.0, remaining))
            )
            if last.thumbprint == expected:
                return last
        except RemoteError as failure:
            error = failure
        if loop.time() + pause > deadline:
            raise _mismatch(host, port, expected, last, error)
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_PAUSE)


wait_for_certificate = synchronous(wait_for_certificate_async)
