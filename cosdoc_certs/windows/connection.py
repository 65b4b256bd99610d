"""PowerShell remoting to a CosDoc application server: one pypsrp RunspacePool per host.

:class:`ConnectionOptions` says how to reach a server (HTTPS with certificate validation by
default; Negotiate/Kerberos/NTLM message encryption over HTTP; plain-HTTP basic only with
``insecure_http=True``). :class:`WindowsHost` opens one runspace pool for a whole run and runs
the project's scripts (``cosdoc_certs/windows/scripts/<name>.ps1``) with parameters only —
values are never pasted into script text — returning the one JSON document each script
writes. Every failure becomes a :class:`~cosdoc_certs.errors.RemoteError` that says what to
do; non-terminating PowerShell errors fail the call too (pypsrp does not flag them).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import ipaddress
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
from cryptography import x509
from pypsrp.complex_objects import ObjectMeta, PSInvocationState
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import SelectorSet, WSMan
from spnego.exceptions import NoCredentialError, SpnegoError

from cosdoc_certs.errors import InputError, RemoteError, hide_passwords
from cosdoc_certs.windows.auth_methods import AUTH_METHODS, USER_AUTHS
from cosdoc_certs.windows.negotiate import why_not_kerberos

log = logging.getLogger(__name__)

_POWERSHELL_RESOURCE = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
_INVALID_SELECTORS = 2150858843  # 0x8033805B: the server has no shell with that id

PROTOCOL_LOGGERS = ("pypsrp", "psrpcore")
"""Loggers that dump whole PSRP messages at DEBUG: held at INFO+ while a script runs."""

_MESSAGE_ENCRYPTING_AUTHS = frozenset({"negotiate", "kerberos", "ntlm"})
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9_-]+")
ACCESS_DENIED_FAULT = 5  # ERROR_ACCESS_DENIED, whatever the server's display language
MIN_POWERSHELL = (5, 1)  # the scripts are Windows PowerShell 5.1
_WINRM_HINT = (
    "check the host name and port (5986 for HTTPS, 5985 for HTTP), the firewall, and that "
    "WinRM listens on the server (Enable-PSRemoting; winrm enumerate winrm/config/listener)"
)


class HostUnreachableError(RemoteError):
    """The WinRM endpoint could not be reached (DNS, refused, timeout, TLS)."""


class SessionLostError(HostUnreachableError):
    """The server no longer has the session's shell (its PowerShell host ended): reconnect."""


class CredentialsError(RemoteError):
    """The server refused the user name or password."""


class AccessDeniedError(RemoteError):
    """The account authenticated but may not use PowerShell remoting or do the operation."""


class ScriptError(RemoteError):
    """A project script failed on the server; the message is PowerShell's."""


class PowerShellTooOldError(RemoteError):
    """The server's Windows PowerShell is older than 5.1, which the scripts are written for."""


class UnknownScriptError(InputError):
    """No script with that name ships with this package."""


class _ShellGone(Exception):
    """The session's shell is gone before the pipeline started: safe to open again and retry."""


class _EnvelopeTooLarge(Exception):
    """The server refused a request over its MaxEnvelopeSizekb before the script started."""


_PYPSRP_DEFAULT_ENVELOPE = 153600
# pypsrp's WSMan() re-registers its XML namespace prefixes in ElementTree's global map (delete,
# then add); two threads doing so at once break each other ("dictionary keys changed during
# iteration"): transports are built one at a time
_WSMAN_BUILD = threading.Lock()
_CONFIG_NAMESPACES = {"cfg": "http://schemas.microsoft.com/wbem/wsman/1/config"}


class SecureParameter:
    """A script parameter sent as a SecureString; its value never appears in a repr."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "SecureParameter(****)"

    def reveal(self) -> str:
        """The plain value (to encrypt it for a session)."""
        return self._value


@dataclasses.dataclass(frozen=True)
class ConnectionOptions:
    """How to reach one Windows server over WinRM. The password never appears in a repr.

    ``https`` (default) validates the server certificate against the system store or
    ``ca_bundle``. ``https=False`` is allowed for Negotiate/Kerberos/NTLM (message
    encryption). ``insecure_http=True`` means plain HTTP without encryption — basic auth
    readable on the wire: only for the lab or a test VM. ``delegate`` forwards the Kerberos
    ticket to the server (for a second hop, e.g. a config file on a UNC share).
    ``max_envelope_size`` (bytes) caps each request; by default pypsrp sends up to 500 KiB
    and :class:`WindowsHost` lowers it to the server's ``MaxEnvelopeSizekb`` when refused.
    """

    server: str
    port: int | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    auth: str = "negotiate"
    https: bool = True
    ca_bundle: str | None = None
    insecure_http: bool = False
    client_certificate: str | None = None
    client_key: str | None = None
    delegate: bool = False
    max_envelope_size: int | None = None
    connection_timeout: int = 30
    operation_timeout: int = 20
    read_timeout: int = 60

    def __post_init__(self) -> None:
        if self.auth not in AUTH_METHODS:
            raise InputError(
                f"unknown authentication {self.auth!r}", f"use one of {', '.join(AUTH_METHODS)}"
            )
        if not self.server.strip():
            raise InputError("no Windows server given", "pass --host with its name or address")
        if self.auth in USER_AUTHS and not self.username:
            raise InputError(f"--auth {self.auth} needs --user", "add --user DOMAIN\\account")
        if self.ca_bundle:
            _check_ca_bundle(self.ca_bundle)
        if self.read_timeout <= self.operation_timeout:
            raise InputError(
                "read_timeout must be longer than operation_timeout",
                "WinRM long-polls for operation_timeout seconds; give read_timeout more",
            )
        if not self.uses_tls:
            self._check_plain_http()
        if self.delegate and self.auth not in ("negotiate", "kerberos"):
            raise InputError(
                f"--delegate needs Kerberos; --auth {self.auth} cannot pass credentials on",
                "use --auth kerberos (or negotiate) with a forwardable ticket (kinit -f)",
            )
        if self.auth == "certificate" and not (self.client_certificate and self.client_key):
            raise InputError(
                "--auth certificate needs the client certificate and its key",
                "pass --client-cert FILE and --client-key FILE (PEM)",
            )

    def _check_plain_http(self) -> None:
        if self.auth == "certificate":
            raise InputError("certificate authentication needs HTTPS", "leave out --insecure-http")
        if self.auth not in _MESSAGE_ENCRYPTING_AUTHS and not self.insecure_http:
            raise InputError(
                f"{self.auth} authentication over plain HTTP sends the password readable",
                "use HTTPS (the default) or negotiate/kerberos; for the lab pass --insecure-http",
            )

    @property
    def uses_tls(self) -> bool:
        """True when the connection is HTTPS."""
        return self.https and not self.insecure_http

    @property
    def effective_port(self) -> int:
        """The port: the given one, or WinRM's default for HTTPS (5986) / HTTP (5985)."""
        if self.port is not None:
            return self.port
        return 5986 if self.uses_tls else 5985

    @property
    def address(self) -> str:
        """``server:port`` for messages."""
        return f"{self.server}:{self.effective_port}"

    def wsman(self) -> WSMan:
        """A pypsrp WSMan transport for these options."""
        extra: dict[str, Any] = {}
        if self.delegate:
            extra = {"negotiate_delegate": True}
        if self.max_envelope_size is not None:
            extra["max_envelope_size"] = self.max_envelope_size
        if self.auth == "certificate":
            extra = {
                "certificate_pem": self.client_certificate,
                "certificate_key_pem": self.client_key,
            }
        auth = self.wire_auth
        with _WSMAN_BUILD:
            return WSMan(
                self.server,
                port=self.effective_port,
                username=self.username,
                password=self.password,
                ssl=self.uses_tls,
                auth=auth,
                cert_validation=self.ca_bundle or True,  # type: ignore[arg-type]  # a path is allowed
                encryption=self._encryption(),
                connection_timeout=self.connection_timeout,
                operation_timeout=self.operation_timeout,
                read_timeout=self.read_timeout,
                no_proxy=_is_loopback(self.server),
                **extra,
            )

    @property
    def wire_auth(self) -> str:
        """The auth pypsrp is given: :attr:`auth`, but NTLM for a Negotiate logon with a
        password where Kerberos cannot apply (:func:`~cosdoc_certs.windows.negotiate.
        why_not_kerberos`): no ``kinit`` attempt on each connection. Still sealed."""
        if self.auth != "negotiate" or not self.username or self.password is None:
            return self.auth
        if self.delegate:  # delegation is Kerberos only: let Negotiate try it
            return self.auth
        reason = why_not_kerberos(self.server, self.username)
        if reason is None:
            return self.auth
        log.debug("negotiate to %s: NTLM directly, no Kerberos attempt (%s)", self.address, reason)
        return "ntlm"

    def _encryption(self) -> str:
        if self.uses_tls:
            return "auto"
        if self.insecure_http and self.auth not in _MESSAGE_ENCRYPTING_AUTHS:
            return "never"
        return "always"


def _check_ca_bundle(path: str) -> None:
    """Refuse a CA bundle that cannot be read or holds no PEM certificate."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise InputError(
            f"cannot read the CA bundle {path} ({error.strerror})",
            "check the path (`ConnectionOptions.ca_bundle`)",
        ) from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InputError(
            f"the CA bundle {path} holds no PEM certificate",
            "give the PEM file (-----BEGIN CERTIFICATE-----) of the CA that issued the "
            "server's WinRM certificate",
        ) from None


def _tls_error(address: str, error: requests.exceptions.SSLError) -> HostUnreachableError:
    """A port that does not speak TLS, or a server certificate that is not trusted."""
    if "WRONG_VERSION_NUMBER" in str(error):
        return HostUnreachableError(
            f"{address} does not answer HTTPS",
            "check --port (WinRM HTTPS is 5986); for an HTTP listener pass --http",
        )
    return HostUnreachableError(
        f"the TLS certificate of {address} is not trusted ({_verify_failure(error)})",
        "give the CA that issued the WinRM certificate (`ConnectionOptions.ca_bundle`), "
        "and connect with the name the certificate was issued to",
    )


PoolFactory = Callable[[ConnectionOptions], RunspacePool]


def default_pool(options: ConnectionOptions) -> RunspacePool:
    """A pypsrp RunspacePool over a fresh WSMan transport (the production factory)."""
    wsman = options.wsman()
    _read_environment_once(wsman)
    return RunspacePool(wsman)


def _read_environment_once(wsman: WSMan) -> None:
    """Build the transport's HTTP session now, reading the environment once for the session.

    pypsrp builds its requests session on the first request and takes the proxy and CA
    settings for the endpoint from the environment then (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``). requests would then look the proxy variables up again on every
    request (``trust_env``): about a tenth of the client's CPU in a fleet status. The
    settings read at build time stand for the session, as pypsrp meant them to.
    """
    transport = wsman.transport
    build = getattr(transport, "_build_session", None)  # pypsrp's own builder (0.9)
    if build is None or getattr(transport, "session", None) is not None:
        return
    session = build()
    session.trust_env = False
    transport.session = session


class WindowsHost:
    """One open PowerShell runspace pool on a server, for a whole run. A context manager.

    ``pool_factory`` builds the (not yet opened) RunspacePool; pass another to reuse a
    transport or wrap it. A host is used from one thread at a time (pypsrp has no locks).
    """

    def __init__(self, options: ConnectionOptions, *, pool_factory: PoolFactory = default_pool):
        self.options = options
        self._pool_factory = pool_factory
        self._pool: RunspacePool | None = None

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"WindowsHost({self.options.address}, user={self.options.username!r}, {state})"

    @property
    def _who(self) -> str:
        if self.options.auth == "certificate":
            return f"the client certificate {self.options.client_certificate}"
        return f"'{self.options.username}'" if self.options.username else "the logged-on user"

    def __enter__(self) -> WindowsHost:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Open the runspace pool (one WinRM shell) on the server."""
        if self._pool is not None:
            return
        with self._remote_errors("open a PowerShell session"):
            pool = self._pool_factory(self.options)
            pool.open()
        self._pool = pool
        version = _powershell_version(pool)
        if version and _version_numbers(version) < MIN_POWERSHELL:
            self.close()
            raise PowerShellTooOldError(
                f"{self.options.address} runs Windows PowerShell {version}; cosdoc-certs needs 5.1",
                "install Windows Management Framework 5.1 on the server (Server 2012 R2 and "
                "older ship an earlier PowerShell)",
            )
        log.info(
            "opened a PowerShell session on %s (Windows PowerShell %s)",
            self.options.address,
            version or "of unknown version",
        )

    def close(self) -> None:
        """Close the runspace pool; errors while closing are logged, not raised."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            pool.close()
        except (WinRMError, requests.RequestException, OSError) as error:
            log.warning(
                "closing the PowerShell session on %s failed: %s", self.options.address, error
            )

    @property
    def shell_id(self) -> str | None:
        """The id of the open session's WinRM shell (None when closed)."""
        return str(self._pool.shell.id) if self._pool is not None and self._pool.shell.id else None

    def close_shell(self, shell_id: str) -> bool:
        """Delete a shell another (killed) process left open; its running pipeline ends.

        False when the server has no such shell any more (closed, or timed out idle).
        """
        selectors = SelectorSet()
        selectors.add_option("ShellId", shell_id)
        transport = self.options.wsman()
        try:
            with self._remote_errors("close an earlier session"):
                try:
                    transport.delete(_POWERSHELL_RESOURCE, selector_set=selectors)
                except WSManFaultError as fault:
                    if fault.code == _INVALID_SELECTORS:
                        return False
                    raise
        finally:
            transport.close()
        log.info("closed the shell %s on %s", shell_id, self.options.address)
        return True

    def secure_string(self, value: str) -> SecureParameter:
        """``value`` as a SecureString parameter for :meth:`run_script`.

        It is encrypted with the session key of the session that runs the script, when it
        runs (a session opened again after expiry has another key).
        """
        return SecureParameter(value)

    def run_script(self, name: str, **parameters: Any) -> Any:
        """Run the package script ``name`` with ``parameters``; return its parsed JSON output.

        If the server no longer has the session's shell before the script started (WinRM
        deleted it after its idle timeout while the consultant read the plan), the session
        is opened again and the script sent once more: it had not run.
        """
        script = load_script(name)
        log.debug(
            "running %s on %s (parameters: %s)", name, self.options.address, sorted(parameters)
        )
        try:
            shell, output = self._invoke(name, script, parameters)
        except _ShellGone:
            log.info("the session on %s expired; opening a new one", self.options.address)
            self._pool = None  # its shell is gone: nothing to close
            self.open()
            shell, output = self._invoke(name, script, parameters)
        except _EnvelopeTooLarge:
            self._fit_envelope_to_server()
            shell, output = self._invoke(name, script, parameters)
        _raise_for_errors(name, self.options.address, shell)
        return _parse_output(name, output)

    def _invoke(
        self, name: str, script: str, parameters: dict[str, Any]
    ) -> tuple[PowerShell, list[Any]]:
        """One pipeline: the script with its parameters (secrets encrypted for this session)."""
        pool = self._pool
        if pool is None:
            raise RemoteError(
                f"no open session on {self.options.address}", "use WindowsHost as a context manager"
            )
        shell = PowerShell(pool)
        with self._remote_errors(f"run {name}"), protocol_logs_quiet():
            try:
                values = self._session_values(pool, parameters)
                # a scope of its own, as a .ps1 run with &: unspecified, PowerShell runs a
                # script in the global scope, and what it defines stays for the session's
                # next script (functions, variables, StrictMode, $ErrorActionPreference)
                shell.add_script(script, use_local_scope=True)
                for parameter, value in values.items():
                    shell.add_parameter(parameter, value)
                output = shell.invoke()
            except WSManFaultError as fault:
                not_started = shell.state == PSInvocationState.NOT_STARTED
                if fault.code == _INVALID_SELECTORS and not_started:
                    raise _ShellGone from None
                raise
            except WinRMTransportError as error:
                not_started = shell.state == PSInvocationState.NOT_STARTED
                if error.code == 413 and not_started and self.options.max_envelope_size is None:
                    raise _EnvelopeTooLarge from None
                raise
        return shell, output

    def _fit_envelope_to_server(self) -> None:
        """Read the server's MaxEnvelopeSizekb and open a session that sends no more.

        pypsrp sends requests of up to 500 KiB to any server of PowerShell 3 or later; one
        configured smaller refuses them (HTTP 413) before the script starts.
        """
        pool = self._pool
        assert pool is not None
        with self._remote_errors("read the server's MaxEnvelopeSizekb"):
            config = pool.connection.get_server_config()
        found = config.find("cfg:Config/cfg:MaxEnvelopeSizekb", namespaces=_CONFIG_NAMESPACES)
        text = (found.text or "") if found is not None else ""
        limit = int(text) * 1024 if text.isdigit() else 0
        if not limit:
            raise _http_error(
                self.options.address, "send the script", WinRMTransportError("http", 413, "")
            )
        # pypsrp raises exactly 153600 (its default) to 500 KiB by itself: stay one below
        size = limit - 1 if limit == _PYPSRP_DEFAULT_ENVELOPE else limit
        log.info(
            "%s takes requests of at most %d bytes; opening a session that fits",
            self.options.address,
            size,
        )
        self.close()
        self.options = dataclasses.replace(self.options, max_envelope_size=size)
        self.open()

    @staticmethod
    def _session_values(pool: RunspacePool, parameters: dict[str, Any]) -> dict[str, Any]:
        """The parameters, each :class:`SecureParameter` encrypted with the pool's key."""
        if not any(isinstance(value, SecureParameter) for value in parameters.values()):
            return parameters
        pool.exchange_keys()
        return {
            name: pool.serialize(value.reveal(), ObjectMeta("SS"))
            if isinstance(value, SecureParameter)
            else value
            for name, value in parameters.items()
        }

    @contextmanager
    def _remote_errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except AuthenticationError:
            raise CredentialsError(
                f"{self.options.address} refused the credentials of {self._who}",
                self._credentials_hint(),
            ) from None
        except WSManFaultError as fault:
            raise _fault_error(self.options.address, doing, fault) from None
        except WinRMTransportError as error:
            if error.code == 500 and not error.response_text and not self.options.uses_tls:
                raise RemoteError(
                    f"{self.options.address} refused an unencrypted message while trying to "
                    f"{doing} (WinRM's AllowUnencrypted is false, the Windows default)",
                    "use --http with --auth negotiate, kerberos or ntlm (messages are "
                    "encrypted), or HTTPS",
                ) from None
            raise _http_error(self.options.address, doing, error) from None
        except requests.exceptions.SSLError as error:
            raise _tls_error(self.options.address, error) from None
        except requests.exceptions.Timeout:
            self._forget_sealing()
            raise HostUnreachableError(
                f"{self.options.address} did not answer in time while trying to {doing}",
                _WINRM_HINT,
            ) from None
        except requests.exceptions.ConnectionError as error:
            self._forget_sealing()
            raise HostUnreachableError(
                f"cannot reach {self.options.address}: {_connection_reason(error)}", _WINRM_HINT
            ) from None
        except NoCredentialError:
            raise CredentialsError(
                f"{self.options.address}: no Kerberos ticket for {self._who}",
                "run kinit user@REALM first (klist shows the tickets), or pass --user with "
                "--auth negotiate",
            ) from None
        except SpnegoError as error:
            raise CredentialsError(
                f"{self.options.address}: {self.options.auth} authentication of {self._who} "
                f"failed: {_spnego_reason(error)}",
                "connect with the server's DNS name (its HTTP/ or host/ SPN), check the "
                "realm in krb5.conf and the clocks; or pass --user with --auth ntlm",
            ) from None
        except ImportError as error:
            raise RemoteError(
                f"{self.options.auth} authentication needs Kerberos support in Python "
                f"({error.msg})",
                "install the MIT Kerberos library and pip install 'pypsrp[kerberos]' "
                "(Debian: apt install libkrb5-dev first), or use --auth ntlm with --user",
            ) from None
        except WinRMError as error:
            raise RemoteError(
                f"PowerShell remoting on {self.options.address} failed to {doing}: {error}",
                "try again; if it persists, check the server's WinRM event log",
            ) from None

    def _credentials_hint(self) -> str:
        if self.options.auth == "basic" and not self.options.uses_tls:
            return (
                "Windows takes basic authentication over HTTP only with AllowUnencrypted=true "
                "(off by default) and for local accounts only: use --http --auth negotiate, "
                "or HTTPS"
            )
        if self.options.auth == "basic" and "\\" in (self.options.username or ""):
            return (
                "basic authentication works for local accounts only (user, not DOMAIN\\user): "
                "use --auth negotiate or kerberos for a domain account"
            )
        if self.options.auth == "certificate":
            return (
                "the server must map the certificate to an account (New-Item "
                "WSMan:\\localhost\\ClientCertificate with its UPN and issuer) and have "
                "Auth/Certificate enabled"
            )
        return "check the user name (DOMAIN\\user) and password, and the --auth method"

    def _forget_sealing(self) -> None:
        """After a lost connection, make the transport authenticate again before sealing.

        Message encryption (Negotiate/Kerberos/NTLM over HTTP) uses a security context that
        belonged to the lost TCP connection. pypsrp would seal the next request with it on a
        new connection, which the server cannot read (HTTP 400); without a context it first
        authenticates the new connection, as on the first request.
        """
        wsman = getattr(self._pool, "connection", None)
        transport = getattr(wsman, "transport", None)
        if getattr(transport, "encryption", None) is not None:
            transport.encryption = None  # type: ignore[union-attr]


class _QuietProtocolLogs:
    """Holds the protocol loggers at INFO+ while at least one script runs, in any thread.

    The first run to start lowers them and the last to end restores them: a fleet's runs
    overlap, and one ending must not give the loggers back their DEBUG while another still
    sends its parameters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._saved: list[tuple[logging.Logger, int]] = []

    def enter(self) -> None:
        with self._lock:
            if self._running == 0:
                self._saved = _hold_at_info()
            self._running += 1

    def exit(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                for protocol_logger, level in reversed(self._saved):
                    protocol_logger.setLevel(level)
                self._saved = []


def _hold_at_info() -> list[tuple[logging.Logger, int]]:
    """Raise the protocol loggers below INFO (children too) to INFO; their former levels."""
    children = [
        name
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(tuple(f"{parent}." for parent in PROTOCOL_LOGGERS))
    ]
    changed = []
    for name in (*PROTOCOL_LOGGERS, *children):
        protocol_logger = logging.getLogger(name)
        if protocol_logger.getEffectiveLevel() < logging.INFO:
            changed.append((protocol_logger, protocol_logger.level))
            protocol_logger.setLevel(logging.INFO)
    return changed


_QUIET = _QuietProtocolLogs()


@contextmanager
def protocol_logs_quiet() -> Iterator[None]:
    """Hold the protocol loggers, children too, at INFO or above for the block.

    At DEBUG pypsrp and psrpcore log every message whole: the config files gather reads (with
    their connection-string passwords) and the PFX files apply imports. Blocks may overlap
    (threads of a fleet run): the loggers are given back when the last one ends.
    """
    _QUIET.enter()
    try:
        yield
    finally:
        _QUIET.exit()


@functools.cache
def load_script(name: str) -> str:
    """The text of the package script ``cosdoc_certs/windows/scripts/<name>.ps1``."""
    resource = importlib.resources.files("cosdoc_certs.windows") / "scripts" / f"{name}.ps1"
    if not _SCRIPT_NAME.fullmatch(name) or not resource.is_file():
        raise UnknownScriptError(
            f"there is no script named {name!r}", f"known scripts: {', '.join(script_names())}"
        )
    return resource.read_text(encoding="utf-8")


def script_names() -> list[str]:
    """The names of the scripts shipped with the package."""
    folder = importlib.resources.files("cosdoc_certs.windows") / "scripts"
    return sorted(item.name[:-4] for item in folder.iterdir() if item.name.endswith(".ps1"))


def _raise_for_errors(name: str, address: str, shell: PowerShell) -> None:
    """Fail on a terminating error (had_errors) and on non-terminating ones (streams.error)."""
    records = list(shell.streams.error)
    if not shell.had_errors and not records:
        return
    messages = [_record_message(record, name) for record in records] or ["the pipeline failed"]
    more = f" (and {len(messages) - 1} more error(s))" if len(messages) > 1 else ""
    raise ScriptError(
        f"{name} failed on {address}: {messages[0]}{more}",
        "read the PowerShell message; run the script by hand on the server to see more",
    )


def _record_message(record: Any, script: str) -> str:
    """The error's text as PowerShell prints it (the exception message, else the record's),
    and the script line it came from. The line's text is left out: only its number."""
    exception = getattr(record, "exception", None)
    properties = getattr(exception, "adapted_properties", None) or {}
    message = properties.get("Message") or str(record) or getattr(record, "message", "")
    line = _script_line(record)
    where = f" (at line {line} of {script}.ps1)" if line else ""
    return hide_passwords(" ".join(str(message).split())) + where


def _script_line(record: Any) -> int:
    """The script line of an error record's InvocationInfo (0 when it has none): flattened
    for a Write-Error record, an object of its own for a terminating error."""
    line = getattr(record, "invocation_script_line_number", None)
    if not line:
        invocation = getattr(record, "invocation_info", None)
        line = (getattr(invocation, "adapted_properties", None) or {}).get("ScriptLineNumber")
    return line if isinstance(line, int) and line > 0 else 0


def _powershell_version(pool: RunspacePool) -> str:
    """``$PSVersionTable.PSVersion`` from the session data the server sent ('' if none)."""
    data = getattr(pool.application_private_data, "data", None)
    table = data.get("PSVersionTable") if isinstance(data, dict) else None
    return str(table.get("PSVersion") or "") if isinstance(table, dict) else ""


def _version_numbers(version: str) -> tuple[int, ...]:
    """``"5.1.20348.2849"`` as numbers, for comparing; a part that is no number ends it."""
    numbers: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def _parse_output(name: str, output: list[Any]) -> Any:
    texts = [item for item in output if item is not None]
    if len(texts) != 1 or not isinstance(texts[0], str):
        raise ScriptError(
            f"{name} returned {len(texts)} object(s) instead of one JSON document",
            "the script on the server is not the one this cosdoc-certs ships; reinstall",
        )
    try:
        return json.loads(texts[0])
    except json.JSONDecodeError as error:
        raise ScriptError(
            f"{name} returned text that is not JSON ({error.msg} at {error.pos})",
            "the script on the server is not the one this cosdoc-certs ships; reinstall",
        ) from None


def _fault_error(address: str, doing: str, fault: WSManFaultError) -> RemoteError:
    reason = " ".join(str(fault.reason or fault).split())
    if fault.code == ACCESS_DENIED_FAULT:  # by code: the reason text is in the server's language
        return AccessDeniedError(
            f"{address} denied access while trying to {doing}: {reason}",
            "use an account in the server's Administrators (or Remote Management Users) group",
        )
    if fault.code == _INVALID_SELECTORS:
        return SessionLostError(
            f"{address} lost the PowerShell session while trying to {doing} (its shell is gone)",
            "run it again; if it recurs, check the server's WinRM event log (idle timeouts, "
            "MaxShellsPerUser)",
        )
    return RemoteError(
        f"WinRM on {address} refused to {doing}: {reason}",
        "check WinRM on the server (winrm get winrm/config) and its event log",
    )


def _http_error(address: str, doing: str, error: WinRMTransportError) -> RemoteError:
    if error.code == 401:
        return CredentialsError(
            f"{address} refused the credentials",
            "check the user name (DOMAIN\\user), the password and the --auth method",
        )
    if error.code == 413:
        return RemoteError(
            f"{address} refused a request larger than its MaxEnvelopeSizekb while trying to "
            f"{doing} (HTTP 413)",
            "the client sends at most 150 KB per request: on the server run "
            "Set-Item WSMan:\\localhost\\MaxEnvelopeSizekb 500 (the Windows default)",
        )
    if error.code == 403:
        return AccessDeniedError(
            f"{address} denied access while trying to {doing} (HTTP 403)",
            "use an account allowed to use PowerShell remoting on the server",
        )
    return RemoteError(
        f"WinRM on {address} answered HTTP {error.code} while trying to {doing}",
        "check that the address is a WinRM endpoint (path /wsman) and its event log",
    )


def _spnego_reason(error: SpnegoError) -> str:
    """The GSSAPI/SSPI message without pyspnego's error-code prefix and context suffix."""
    text = " ".join(str(error.message or error).split())
    return text.split(", Context:", 1)[0][:200]


def _connection_reason(error: requests.exceptions.ConnectionError) -> str:
    text = str(error)
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text:
        return "the host name cannot be resolved"
    if "refused" in text.lower():
        return "connection refused (nothing listens on that port)"
    if "RemoteDisconnected" in text or "reset" in text.lower() or "aborted" in text.lower():
        return "the server closed the connection"
    return _reason(error)


def _verify_failure(error: BaseException) -> str:
    """What the TLS check said (``self-signed certificate in certificate chain``...).

    requests wraps it three deep (SSLError, MaxRetryError, urllib3's SSLError): the
    innermost :class:`ssl.SSLCertVerificationError` is looked for through their ``reason``,
    ``args`` and causes.
    """
    seen: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or current in seen:
            continue
        seen.append(current)
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason)
        pending += [getattr(current, "reason", None), *current.args]
        pending += [current.__cause__, current.__context__]
    return _reason(error)


def _reason(error: BaseException) -> str:
    """The error's text on one line, cut at a word (not mid-word) past 200 characters."""
    text = " ".join(str(error).split())
    if len(text) <= 200:
        return text
    return text[:200].rsplit(" ", 1)[0] + " …"


def _is_loopback(server: str) -> bool:
    if server.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(server.strip("[]")).is_loopback
    except ValueError:
        return False
