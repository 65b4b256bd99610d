"""Shared pieces of the SvarUT tests: certificates, fault-injecting connections, secret scans."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from cosdoc_certs.lab.certs import Issued, default_ca, make_ssl_certificate, make_test_ca, to_pfx
from cosdoc_certs.svarut import HostConnection, SshOptions, connect
from cosdoc_certs.svarut.connection import CommandResult

PFX_PASSWORD = "Pfx-passord-9271"


@dataclass(frozen=True)
class Certs:
    """The certificate the host serves now, the one to install, and its PFX."""

    old: Issued
    new: Issued
    other_issuer: Issued
    pfx: Path


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = default_ca()
    old, new = make_ssl_certificate(ca), make_ssl_certificate(ca)
    other = make_ssl_certificate(make_test_ca())
    pfx = tmp_path_factory.mktemp("pfx") / "ssl.pfx"
    pfx.write_bytes(to_pfx(new, PFX_PASSWORD.encode()))
    return Certs(old, new, other, pfx)


Trigger = Callable[[str, Sequence[str]], bool]


class FaultyConnection:
    """A real connection that breaks when ``trigger(operation, arguments)`` first says so.

    ``breaker`` breaks the transport (closes the SSH connection, or kills the sshd session
    on the host); the call then runs on the broken connection and fails as it would.
    ``corrupt`` swaps uploaded bytes for files ending in ``.rsa`` (a wrong key on the host).
    """

    def __init__(
        self,
        inner: HostConnection,
        trigger: Trigger,
        breaker: Callable[[HostConnection], Awaitable[None]],
        *,
        corrupt: bytes | None = None,
    ) -> None:
        self.inner = inner
        self.options = inner.options
        self._trigger = trigger
        self._breaker = breaker
        self._corrupt = corrupt
        self.broken = False

    @property
    def host(self) -> str:
        return self.inner.host

    async def _maybe_break(self, operation: str, arguments: Sequence[str]) -> None:
        if not self.broken and self._trigger(operation, arguments):
            self.broken = True
            await self._breaker(self.inner)

    async def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        cwd: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> CommandResult:
        await self._maybe_break("run", argv)
        return await self.inner.run(argv, sudo=sudo, cwd=cwd, check=check, timeout=timeout)

    async def make_private_dir(self, path: str) -> None:
        await self._maybe_break("mkdir", [path])
        await self.inner.make_private_dir(path)

    async def put_private(self, path: str, data: bytes) -> None:
        await self._maybe_break("put", [path])
        if self._corrupt is not None and path.endswith(".rsa"):
            data = self._corrupt
        await self.inner.put_private(path, data)

    async def remove_tree(self, path: str) -> None:
        await self._maybe_break("remove", [path])
        await self.inner.remove_tree(path)

    async def close(self) -> None:
        await self.inner.close()


async def close_connection(connection: HostConnection) -> None:
    """Break the transport from the client side."""
    await connection.close()


def faulty_connector(
    options: SshOptions,
    trigger: Trigger,
    breaker: Callable[[HostConnection], Awaitable[None]] = close_connection,
    *,
    corrupt: bytes | None = None,
) -> Callable[[], Awaitable[HostConnection]]:
    """A connector whose first connection is faulty and later ones (the rollback's) are not."""
    made: list[HostConnection] = []

    async def connector() -> HostConnection:
        real = await connect(options)
        connection: HostConnection = (
            FaultyConnection(real, trigger, breaker, corrupt=corrupt) if not made else real
        )
        made.append(connection)
        return connection

    return connector


def at_command(word: str) -> Trigger:
    """Trigger before the first command containing ``word`` (e.g. ``up`` or ``install``)."""
    return lambda operation, arguments: operation == "run" and word in arguments


def at_operation(name: str) -> Trigger:
    """Trigger before the first ``put``/``mkdir``/``remove``."""
    return lambda operation, arguments: operation == name


LOST_CONNECTION_POINTS = {
    "before staging": at_operation("mkdir"),
    "before the key upload": at_operation("put"),
    "before install": at_command("install"),
    "before the prod.env backup": at_command("-p"),
    "before down": at_command("down"),
    "before up": at_command("up"),
    "during verify": at_command("ps"),
}


def secret_needles(certs: Certs, issued: Issued) -> dict[str, bytes]:
    """Byte strings that must not be found on the host outside the key file."""
    key_body = b"".join(issued.key_pem().splitlines()[1:3])
    return {
        "pfx": certs.pfx.read_bytes()[100:164],
        "password": PFX_PASSWORD.encode(),
        "key": key_body,
    }


def find_secrets(
    folders: Iterable[Path], needles: dict[str, bytes], allowed: Iterable[Path] = ()
) -> list[str]:
    """Every file under ``folders`` (except ``allowed``) holding one of the needles."""
    skip = {path.resolve() for path in allowed}
    found = []
    for folder in folders:
        for dirpath, _, filenames in os.walk(folder):
            for filename in filenames:
                path = Path(dirpath, filename)
                if path.resolve() in skip or not path.is_file() or path.is_symlink():
                    continue
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                found.extend(f"{name} in {path}" for name, n in needles.items() if n in data)
    return found


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journals"
