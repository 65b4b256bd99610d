"""The SSH connection to a SvarUT host over asyncssh: commands (optionally with sudo), SFTP.

One asyncssh connection per host. Host keys are checked against known_hosts by default;
accepting a host key is explicit (``pinned_host_key``: the key you were told, in OpenSSH
``ssh-ed25519 AAAA...`` form). Authentication uses keys and the ssh-agent — never a password
prompt. ``sudo`` runs non-interactively (``sudo -n``): if it would ask for a password, the
command fails with one line saying so. OpenSSH allows 10 sessions per connection
(MaxSessions), so parallel channels are bounded below that.

:class:`SvarutConnection` implements :class:`~cosdoc_certs.svarut.connection.HostConnection`.
This module is imported only when a SvarUT host is connected to (asyncssh is ~9 MiB).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import asyncssh

from cosdoc_certs.errors import InputError, RemoteError, hide_passwords
from cosdoc_certs.svarut.connection import (
    IN_FOLDER_SCRIPT,
    CommandResult,
    ConnectionLostError,
    SshOptions,
    SudoPasswordError,
)

__all__ = ["SvarutConnection", "connect"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SESSION_ATTEMPTS = 6
_SUDO = ("sudo", "-n", "--")
_SUDO_PASSWORD_MARKERS = ("a password is required", "a terminal is required")

_LOST_SFTP = (
    asyncssh.ConnectionLost,
    asyncssh.DisconnectError,
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    BrokenPipeError,
)


def _known_hosts(options: SshOptions) -> object:
    """asyncssh's ``known_hosts`` argument: the pinned key, a file, or the default."""
    if options.pinned_host_key:
        pattern = options.host if options.port == 22 else f"[{options.host}]:{options.port}"
        return asyncssh.import_known_hosts(f"{pattern} {options.pinned_host_key.strip()}\n")
    if options.known_hosts:
        return str(Path(options.known_hosts).expanduser())
    return ()


def _connect_error(options: SshOptions, error: BaseException) -> RemoteError:
    """One clear line for each way a connection attempt fails."""
    if isinstance(error, asyncssh.HostKeyNotVerifiable):
        return RemoteError(
            f"the host key of {options.host}:{options.port} {_untrusted_because(options)}",
            "check the host key fingerprint with the host's administrator, then add it to "
            "known_hosts (ssh-keyscan) or pin it (`SshOptions.pinned_host_key`)",
        )
    if isinstance(error, asyncssh.PermissionDenied):
        return RemoteError(
            f"{options.host}:{options.port} refused the SSH login of "
            f"{options.username or 'the current user'}",
            "check `SshOptions.username` and that your key (file or ssh-agent) is in the "
            "user's authorized_keys",
        )
    reason = str(error) or type(error).__name__
    return RemoteError(
        f"cannot connect to {options.label}: {reason}",
        "check the host name, the port and that sshd runs and lets you in",
    )


def _untrusted_because(options: SshOptions) -> str:
    """Why the host key was not trusted: a pinned key differs, or known_hosts lacks it."""
    if options.pinned_host_key:
        return "does not match the pinned key"
    known_hosts = options.known_hosts or "~/.ssh/known_hosts"
    if not Path(known_hosts).expanduser().is_file():
        return f"cannot be checked: there is no known_hosts file {known_hosts}"
    return f"is not in {known_hosts} or does not match the key there"


def _jump_options(options: SshOptions) -> SshOptions | None:
    """The jump host ``[user@]host[:port]`` as options (same keys and known_hosts policy)."""
    if not options.jump_host:
        return None
    user, _, address = options.jump_host.rpartition("@")
    host, _, port = address.partition(":")
    if not host or (port and not port.isdigit()):
        raise InputError(
            f"cannot read the jump host {options.jump_host!r}", "write it as [user@]host[:port]"
        )
    return SshOptions(
        host,
        int(port or 22),
        user or options.username,
        known_hosts=options.known_hosts,
        client_keys=options.client_keys,
        connect_timeout=options.connect_timeout,
    )


async def _open(
    options: SshOptions, tunnel: asyncssh.SSHClientConnection | None
) -> asyncssh.SSHClientConnection:
    try:
        return await asyncio.wait_for(
            asyncssh.connect(
                options.host,
                options.port,
                username=options.username or (),  # (): asyncssh's default, the local user
                known_hosts=_known_hosts(options),
                client_keys=list(options.client_keys) if options.client_keys else (),
                tunnel=tunnel or (),
                password_auth=False,
                kbdint_auth=False,
            ),
            options.connect_timeout,
        )
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as error:
        raise _connect_error(options, error) from error
    except asyncssh.KeyImportError as error:
        raise InputError(
            f"cannot use the SSH private key for {options.label}: {error}",
            "give an unencrypted OpenSSH/PEM private key (`SshOptions.client_keys`), or none "
            "to use ssh-agent and ~/.ssh",
        ) from None
    except UnicodeDecodeError:
        raise InputError(
            f"the known_hosts file {options.known_hosts} is not a text file",
            "give an OpenSSH known_hosts file, or pin the key (`SshOptions.pinned_host_key`)",
        ) from None


async def connect(options: SshOptions) -> SvarutConnection:
    """Open the SSH connection (keys/agent only, known_hosts checked) or raise RemoteError."""
    jump = _jump_options(options)
    tunnel = await _open(jump, None) if jump else None
    try:
        connection = await _open(options, tunnel)
    except BaseException:
        if tunnel is not None:
            tunnel.close()
        raise
    logger.info("connected to %s%s", options.label, f" via {jump.label}" if jump else "")
    return SvarutConnection(connection, options, tunnel)


class SvarutConnection:
    """Commands and SFTP over one SSH connection, with bounded parallel channels."""

    def __init__(
        self,
        connection: asyncssh.SSHClientConnection,
        options: SshOptions,
        tunnel: asyncssh.SSHClientConnection | None = None,
    ) -> None:
        self._connection = connection
        self._tunnel = tunnel
        self.options = options
        self._channels = asyncio.Semaphore(options.max_channels)
        self._sftp: asyncssh.SFTPClient | None = None

    @property
    def host(self) -> str:
        """The host name as given."""
        return self.options.host

    async def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        cwd: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> CommandResult:
        """Run ``argv`` (quoted, never interpolated), in ``cwd``, via ``sudo -n`` by default."""
        full = list(argv)
        if cwd is not None:
            full = ["sh", "-c", IN_FOLDER_SCRIPT, "sh", cwd, *full]
        if sudo:
            full = [*_SUDO, *full]
        command = shlex.join(full)
        logger.debug("%s: %s", self.options.label, command)
        try:
            async with self._channels:
                process = await self._session(
                    lambda: self._connection.create_process(command, encoding=None)
                )
                try:
                    completed = await process.wait(check=False, timeout=timeout)
                finally:
                    process.close()
                    # sshd counts a session until our close reaches it (MaxSessions)
                    await process.wait_closed()
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError) as error:
            raise self._lost(error) from error
        except asyncssh.TimeoutError as error:
            raise RemoteError(
                f"{self.options.label}: `{shlex.join(argv)}` did not finish in {timeout:.0f} s",
                "the host is slow or the command hangs; try again or run it by hand",
            ) from error
        stderr = (completed.stderr or b"").decode("utf-8", "replace").strip()  # type: ignore[union-attr]
        result = CommandResult(
            tuple(argv),
            completed.returncode if completed.returncode is not None else -1,
            completed.stdout or b"",  # type: ignore[arg-type]
            stderr,
        )
        if sudo and not result.ok and any(m in stderr for m in _SUDO_PASSWORD_MARKERS):
            raise SudoPasswordError(
                f"sudo on {self.host} needs a password for {self.options.username or 'the user'}",
                "allow this user passwordless sudo (NOPASSWD) for the rotation, or let an "
                "administrator run it",
            )
        if check and not result.ok:
            raise RemoteError(
                f"{self.host}: `{shlex.join(argv)}` failed (exit {result.returncode}): "
                f"{hide_passwords(stderr.splitlines()[-1]) if stderr else 'no message'}",
                "see the message; fix the host or run the step by hand",
            )
        return result

    async def _session(self, open_session: Callable[[], Awaitable[T]]) -> T:
        """Open a session, retrying briefly while sshd still counts sessions we closed.

        OpenSSH frees a closed session a moment after the close arrives, so a burst of
        short commands can meet "no more sessions" (MaxSessions) below the bound.
        """
        for attempt in range(_SESSION_ATTEMPTS):
            try:
                return await open_session()
            except asyncssh.ChannelOpenError as error:
                if self._connection.is_closed():
                    raise self._lost(error) from error
                refused = error
            await asyncio.sleep(0.02 * 2**attempt)
        raise RemoteError(
            f"{self.options.label} refused a new SSH session: {refused.reason}",
            "its sshd allows few sessions per connection (MaxSessions); try again",
        )

    def _lost(self, error: BaseException) -> ConnectionLostError:
        return ConnectionLostError(
            f"the SSH connection to {self.options.label} broke: {error or type(error).__name__}",
            "check the network; the run is recorded in its journal",
        )

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = await self._session(self._connection.start_sftp_client)
            except (asyncssh.Error, OSError) as error:
                raise self._lost(error) from error
        return self._sftp

    async def make_private_dir(self, path: str) -> None:
        """Create the folder ``path`` with mode 0700 (fails if it exists: an exclusive mkdir)."""
        sftp = await self._sftp_client()
        try:
            await sftp.mkdir(path, asyncssh.SFTPAttrs(permissions=0o700))
            await sftp.chmod(path, 0o700)
        except (asyncssh.Error, OSError) as error:
            raise self._sftp_error("create the private folder", path, error) from error

    async def put_private(self, path: str, data: bytes) -> None:
        """Write ``data`` to a new file created 0600 (never readable by others, even briefly)."""
        sftp = await self._sftp_client()
        try:
            async with sftp.open(path, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as file:
                await file.write(data)
            await sftp.chmod(path, 0o600)
        except (asyncssh.Error, OSError) as error:
            raise self._sftp_error("upload", path, error) from error

    async def remove_tree(self, path: str) -> None:
        """Remove a folder this connection created (missing is fine)."""
        sftp = await self._sftp_client()
        try:
            if await sftp.exists(path):
                await sftp.rmtree(path)
        except (asyncssh.Error, OSError) as error:
            raise self._sftp_error("remove", path, error) from error

    def _sftp_error(self, action: str, path: str, error: BaseException) -> RemoteError:
        if isinstance(error, _LOST_SFTP):
            return self._lost(error)
        return RemoteError(
            f"{self.host}: cannot {action} {path} over SFTP: {error}",
            "check that the login user may write to /tmp on the host",
        )

    async def close(self) -> None:
        """Close SFTP and the connection."""
        if self._sftp is not None:
            self._sftp.exit()
        for connection in (self._connection, self._tunnel):
            if connection is not None:
                connection.close()
                await connection.wait_closed()

    def __repr__(self) -> str:
        return f"<SvarutConnection {self.options.label}>"
