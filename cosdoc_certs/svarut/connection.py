"""What a connection to a SvarUT host is: its options, a command's result, the seam, errors.

:class:`SshOptions` says how to reach a host; :class:`HostConnection` is the narrow seam the
rest of the package talks to (tests inject wrappers around it — dropped connections,
corrupted uploads — instead of patching code). The SSH implementation, over asyncssh, is
:mod:`cosdoc_certs.svarut.ssh`: it is loaded only when a SvarUT host is connected to, so a
Windows-only run never imports asyncssh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cosdoc_certs.errors import RemoteError

__all__ = [
    "CommandResult",
    "ConnectionLostError",
    "HostConnection",
    "SshOptions",
    "SudoPasswordError",
]

DEFAULT_MAX_CHANNELS = 8  # OpenSSH's MaxSessions is 10; one more is kept for SFTP
IN_FOLDER_SCRIPT = 'cd -- "$1" && shift && exec "$@"'


class ConnectionLostError(RemoteError):
    """The SSH connection broke while a step was running."""


class SudoPasswordError(RemoteError):
    """sudo on the host wants a password; the tool only uses non-interactive sudo."""


@dataclass(frozen=True)
class SshOptions:
    """How to reach a host: address, user, host-key policy, keys, jump host, limits."""

    host: str
    port: int = 22
    username: str | None = None
    known_hosts: str | None = None
    pinned_host_key: str | None = None
    client_keys: tuple[str, ...] | None = None
    jump_host: str | None = None
    connect_timeout: float = 15.0
    max_channels: int = DEFAULT_MAX_CHANNELS

    @property
    def label(self) -> str:
        """``user@host:port`` for messages."""
        user = f"{self.username}@" if self.username else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{self.host}{port}"


@dataclass(frozen=True)
class CommandResult:
    """What a remote command did, shaped like :class:`subprocess.CompletedProcess`."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes = field(repr=False)
    stderr: str

    @property
    def ok(self) -> bool:
        """True for exit status 0."""
        return self.returncode == 0

    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")


class HostConnection(Protocol):
    """What the SvarUT code needs from a host connection (the seam tests wrap)."""

    options: SshOptions

    @property
    def host(self) -> str: ...

    async def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        cwd: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> CommandResult: ...

    async def make_private_dir(self, path: str) -> None: ...

    async def put_private(self, path: str, data: bytes) -> None: ...

    async def remove_tree(self, path: str) -> None: ...

    async def close(self) -> None: ...
