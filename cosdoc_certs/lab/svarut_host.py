"""A SvarUT host on loopback: an in-process SSH server with the real folder layout and TLS.

For the demo, the fast tests and safe trials; no root, no Debian packages. The asyncssh
server (on its own event-loop thread) offers SFTP confined to a sandbox folder that holds
the host's file system (``<sandbox>/usr/containers/svarut/prod.env``...) and executes the
commands the SvarUT code sends — ``sudo -n``, ``cat``, ``ls``, ``stat``, ``install``, ``cp``,
``rm`` and ``docker compose`` — against that sandbox. Its ``docker compose up -d`` reads
prod.env like compose does and serves *real* TLS on 127.0.0.1 with the files prod.env names
(a Python ``ssl`` server standing in for the nginx container); a key that does not match its
certificate makes the container exit, as nginx does. Anything else (lists, pipes, unknown
commands, a folder as the target of ``install``) is answered as a shell would: an error
status and a line on stderr, and the connection stays up.

Faults for tests (:class:`LabFaults`, ``lab.svarut.faults``): sudo that wants a password, a
container that exits after ``up -d``, a command that fails, the server closing the connection
at a command, SFTP that fails, a full disk or a read-only file system, an endpoint that
serves the wrong certificate, and a container that runs but fails every TLS handshake.
It runs everything as the current user, so it is not a substitute for the real sshd tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
import shlex
import shutil
import socket
import ssl
import stat
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from cosdoc_certs.envfile import parse_env
from cosdoc_certs.svarut.api import SvarutTarget
from cosdoc_certs.svarut.connection import IN_FOLDER_SCRIPT, SshOptions
from cosdoc_certs.svarut.layout import SINGLE, Layout

__all__ = ["DEFAULT_ENV", "LabFaults", "LabSvarutHost"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

LAB_USER = "svarut"
COMPOSE_FILE = "compose.yaml"
DEFAULT_ENV = (
    "# SvarUT nginx\n"
    "SERVER_NAME=svarut.testkommune.no\n"
    "DB_PASSWORD='s3cret # not a comment'\n"
    "SSL_CERT_FILENAME = {cert}\n"
    "SSL_CERT_KEY_FILENAME = {key}\n"
)
_COMPOSE_YAML = "services:\n  nginx:\n    image: nginx:stable\n    env_file: {env}\n"


_WRITING_COMMANDS = frozenset({"install", "cp"})


@dataclass
class LabFaults:
    """Faults to inject; each test sets what it needs (see docs/lab.md).

    ``fail_command`` / ``disconnect_at`` act once, at the first command whose words include
    that word (``"install"``, ``"down"``...): it fails with exit 1 and ``Input/output error``,
    or the server closes the SSH connection instead of running it. ``disk_full`` /
    ``read_only`` make every write (SFTP, ``install``, ``cp``) fail as Linux says;
    ``sftp_fails`` fails SFTP only. ``serve_wrong_certificate`` makes the next ``up -d`` serve
    the files the container served before, whatever prod.env names; ``handshake_fails``
    makes the next ``up -d`` run a container that answers TLS with a closed connection.
    """

    sudo_needs_password: bool = False
    container_exits: bool = False
    fail_command: str | None = None
    disconnect_at: str | None = None
    sftp_fails: bool = False
    disk_full: bool = False
    read_only: bool = False
    serve_wrong_certificate: bool = False
    handshake_fails: bool = False

    def write_error(self) -> str | None:
        """Why a write fails now (``No space left on device``...), if it does."""
        if self.disk_full:
            return "No space left on device"
        if self.read_only:
            return "Read-only file system"
        return None

    def take(self, name: str, argv: Sequence[str]) -> bool:
        """True (once) when fault ``name`` (a word) is set and ``argv`` holds that word."""
        word = getattr(self, name)
        if word is None or word not in argv:
            return False
        setattr(self, name, None)
        return True


@dataclass
class _Container:
    """The stand-in for the project's nginx container."""

    project: str
    state: str
    exit_code: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)

    def ps_line(self) -> str:
        return json.dumps(
            {
                "Name": f"{self.project}-nginx-1",
                "Service": "nginx",
                "State": self.state,
                "ExitCode": self.exit_code,
            }
        )


class _CommandError(Exception):
    """A command's failure: exit status and stderr line."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class LabSvarutHost:
    """The lab SvarUT host; use as a context manager (``with LabSvarutHost(folder) as lab``)."""

    def __init__(self, workdir: Path, *, faults: LabFaults | None = None) -> None:
        self.workdir = workdir
        self.sandbox = workdir / "host"
        self.faults = faults or LabFaults()
        self.tls_port = _free_port()
        self._ports: dict[str, int] = {}
        self._served: dict[str, ssl.SSLContext] = {}  # what each container served last
        self.ssh_port = 0
        self.commands: list[tuple[str, ...]] = []
        self._root_owned: set[str] = set()
        self._containers: dict[str, _Container] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = workdir / "client_ed25519"

    # -- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> LabSvarutHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the sandbox and the client key, start the SSH server."""
        for folder in ("tmp", f"home/{LAB_USER}"):
            (self.sandbox / folder).mkdir(parents=True, exist_ok=True)
        self.client_key_path.write_bytes(self._client_key.export_private_key())
        self.client_key_path.chmod(0o600)
        self._thread.start()
        self._server = self._call(self._listen())
        self.ssh_port = self._server.sockets[0].getsockname()[1]
        logger.info("lab SvarUT host on 127.0.0.1:%d (TLS %d)", self.ssh_port, self.tls_port)

    def close(self) -> None:
        """Stop the containers and the SSH server, then the loop thread."""
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _listen(self) -> asyncssh.SSHAcceptor:
        public = self._client_key.export_public_key().decode()
        return await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[self._host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(public),
            process_factory=self._process,
            sftp_factory=lambda channel: _FaultySFTPServer(channel, self.faults, self.sandbox),
            encoding=None,
            allow_scp=False,
        )

    async def _shutdown(self) -> None:
        for folder in list(self._containers):
            await self._down(folder)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- what clients need -------------------------------------------------------------------
    @property
    def host_key(self) -> str:
        """The host's public key in OpenSSH form (for ``pinned_host_key``)."""
        return self._host_key.export_public_key().decode().strip()

    def ssh_options(self, **overrides: Any) -> SshOptions:
        """SSH options that reach this host with its key pinned."""
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.ssh_port,
            "username": LAB_USER,
            "pinned_host_key": self.host_key,
            "client_keys": (str(self.client_key_path),),
        }
        settings.update(overrides)
        return SshOptions(**settings)

    def target(self, **overrides: Any) -> SvarutTarget:
        """A :class:`SvarutTarget` for this host (TLS on the lab's port)."""
        settings: dict[str, Any] = {"ssh": self.ssh_options(), "tls_port": self.tls_port}
        settings.update(overrides)
        return SvarutTarget(**settings)

    def path(self, remote: str) -> Path:
        """The sandbox file behind an absolute host path."""
        return self._local(remote, "/")

    def seed(
        self,
        layout: Layout = SINGLE,
        *,
        cert_pem: bytes,
        key_pem: bytes,
        env_template: str = DEFAULT_ENV,
        names: tuple[str, str] = ("cert.crt", "cert.rsa"),
    ) -> None:
        """Lay out an installation with the given certificate files and start its container."""
        files = self.path(layout.files_path)
        files.mkdir(parents=True, exist_ok=True)
        self.path(layout.root).joinpath(COMPOSE_FILE).write_text(
            _COMPOSE_YAML.format(env=layout.env_file)
        )
        for name, data, mode in ((names[0], cert_pem, 0o644), (names[1], key_pem, 0o600)):
            target = files / name
            target.write_bytes(data)
            target.chmod(mode)
            self._root_owned.add(str(target))
        self.path(layout.env_path).write_text(env_template.format(cert=names[0], key=names[1]))
        self._call(self._up(layout.root, layout.env_file))

    def tls_port_of(self, layout: Layout) -> int:
        """The TLS port of ``layout``'s installation (the first one seeded has ``tls_port``)."""
        return self._ports[layout.root]

    # -- the SSH side ------------------------------------------------------------------------
    async def _process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """Answer one command: its output and exit 0, or a shell-like error and status."""
        try:
            argv = _simple_command(process.command or "")
            self.commands.append(argv)
            if self.faults.take("disconnect_at", argv):
                process.channel.get_connection().abort()
                return
            if self.faults.take("fail_command", argv):
                raise _CommandError(f"{argv[-1]}: Input/output error")
            output = await self._execute(argv)
        except _CommandError as error:
            process.stderr.write(f"{error}\n".encode())
            process.exit(error.status)
            return
        process.stdout.write(output)
        process.exit(0)

    async def _execute(self, argv: Sequence[str]) -> bytes:
        if list(argv[:3]) == ["sudo", "-n", "--"]:
            if self.faults.sudo_needs_password:
                raise _CommandError("sudo: a password is required")
            argv = argv[3:]
        cwd = "/"
        if list(argv[:3]) == ["sh", "-c", IN_FOLDER_SCRIPT]:
            cwd, argv = argv[4], argv[5:]
            if not self._local(cwd, "/").is_dir():
                raise _CommandError(f"sh: cd: {cwd}: No such file or directory", 2)
        if not argv:
            raise _CommandError("empty command", 2)
        handler = getattr(self, f"_cmd_{argv[0]}", None)
        if handler is None:
            raise _CommandError(f"sh: {argv[0]}: not found", 127)
        refused = self.faults.write_error()
        if refused and argv[0] in _WRITING_COMMANDS:
            raise _CommandError(f"{argv[0]}: cannot create regular file '{argv[-1]}': {refused}")
        try:
            return await handler(list(argv[1:]), cwd)  # type: ignore[no-any-return]
        except (ValueError, IndexError):  # operands the stand-in does not take
            raise _CommandError(f"{argv[0]}: unsupported operands in the lab", 2) from None
        except OSError as error:  # the sandbox path is not shown: it is no host path
            raise _CommandError(f"{argv[0]}: {error.strerror}") from None

    def _local(self, path: str, cwd: str) -> Path:
        """Map a host path (absolute or relative to ``cwd``) into the sandbox, never outside."""
        absolute = posixpath.normpath(posixpath.join(cwd, path))
        local = (self.sandbox / absolute.lstrip("/")).resolve()
        if local != self.sandbox.resolve() and self.sandbox.resolve() not in local.parents:
            raise _CommandError(f"{path}: Permission denied")
        return local

    @staticmethod
    def _operands(args: list[str]) -> list[str]:
        return args[args.index("--") + 1 :] if "--" in args else args

    @staticmethod
    def _missing(path: str, command: str) -> _CommandError:
        return _CommandError(f"{command}: {path}: No such file or directory")

    async def _cmd_true(self, args: list[str], cwd: str) -> bytes:
        return b""

    async def _cmd_cat(self, args: list[str], cwd: str) -> bytes:
        (path,) = self._operands(args)
        local = self._local(path, cwd)
        if not local.is_file():
            raise self._missing(path, "cat")
        return local.read_bytes()

    async def _cmd_ls(self, args: list[str], cwd: str) -> bytes:
        (path,) = self._operands(args)
        local = self._local(path, cwd)
        if not local.is_dir():
            raise self._missing(path, "ls")
        return "".join(f"{entry.name}\n" for entry in sorted(local.iterdir())).encode()

    async def _cmd_stat(self, args: list[str], cwd: str) -> bytes:
        (path,) = self._operands(args)
        local = self._local(path, cwd)
        if not local.exists():
            raise self._missing(path, "stat")
        owner = "root:root" if str(local) in self._root_owned else f"{LAB_USER}:{LAB_USER}"
        return f"{stat.S_IMODE(local.stat().st_mode):o} {owner}\n".encode()

    async def _cmd_install(self, args: list[str], cwd: str) -> bytes:
        mode = int(args[args.index("-m") + 1], 8)
        source_path, target_path = self._operands(args)
        source, target = self._local(source_path, cwd), self._local(target_path, cwd)
        if not source.is_file():
            raise self._missing(source_path, "install")
        if target.is_dir():  # the stand-in installs files only, never into a folder
            raise _CommandError(f"install: {target_path}: Is a directory")
        target.unlink(missing_ok=True)
        target.touch(mode=0o600)
        target.chmod(mode)
        target.write_bytes(source.read_bytes())
        self._root_owned.add(str(target))
        return b""

    async def _cmd_cp(self, args: list[str], cwd: str) -> bytes:
        source, target = (self._local(p, cwd) for p in self._operands(args))
        if not source.is_file():
            raise self._missing(str(source), "cp")
        if "-p" in args:
            shutil.copy2(source, target)
            if str(source) in self._root_owned:
                self._root_owned.add(str(target))
        else:
            target.write_bytes(source.read_bytes())
        return b""

    async def _cmd_rm(self, args: list[str], cwd: str) -> bytes:
        for path in self._operands(args):
            self._local(path, cwd).unlink(missing_ok="-f" in args)
        return b""

    # -- the docker compose stand-in ---------------------------------------------------------
    async def _cmd_docker(self, args: list[str], cwd: str) -> bytes:
        if args[:1] != ["compose"]:
            raise _CommandError("docker: only `docker compose` is available in the lab")
        args = args[1:]
        env_file = ".env"
        if args[:1] == ["--env-file"]:
            env_file, args = args[1], args[2:]
        if not self._local(COMPOSE_FILE, cwd).is_file():
            raise _CommandError("no configuration file provided: not found", 14)
        if args == ["down"]:
            await self._down(cwd)
        elif args == ["up", "-d"]:
            await self._up(cwd, env_file)
        elif args[:1] == ["run"]:
            self._run_throwaway(cwd, env_file, args[1:])
        elif args[:1] == ["ps"]:
            container = self._containers.get(cwd)
            visible = container and (container.state == "running" or "-a" in args)
            return (container.ps_line() + "\n").encode() if visible and container else b""
        else:
            raise _CommandError(f"docker compose {' '.join(args)}: not available in the lab")
        return b""

    def _run_throwaway(self, folder: str, env_file: str, args: list[str]) -> None:
        """``docker compose run --rm --no-deps -T nginx nginx -t``: test prod.env's files.

        As the nginx image does: the configuration is rendered from the env file as it is
        now, and ``nginx -t`` fails on a certificate/key pair it cannot load. The running
        container is not touched.
        """
        words = [word for word in args if word not in ("--rm", "--no-deps", "-T")]
        if words[1:] != ["nginx", "-t"]:
            raise _CommandError(f"docker compose run {' '.join(args)}: not available in the lab")
        local_env = self._local(env_file, folder)
        if not local_env.is_file():
            raise _CommandError(f"couldn't find env file: {local_env.name}", 14)
        if self._tls_context(folder, local_env.read_bytes()) is None:
            raise _CommandError(
                'nginx: [emerg] cannot load certificate key "/etc/nginx/ssl/key": '
                "key values mismatch\n"
                "nginx: configuration file /etc/nginx/nginx.conf test failed",
                1,
            )

    async def _down(self, folder: str) -> None:
        container = self._containers.pop(folder, None)
        if container and container.server:
            container.server.close()
            await container.server.wait_closed()

    async def _up(self, folder: str, env_file: str) -> None:
        await self._down(folder)
        project = posixpath.basename(folder.rstrip("/"))
        local_env = self._local(env_file, folder)
        if not local_env.is_file():
            raise _CommandError(f"couldn't find env file: {local_env.name}", 14)
        container = _Container(project, "exited", exit_code=1)
        self._containers[folder] = container
        if self.faults.container_exits:
            self.faults.container_exits = False
            return
        context = self._tls_context(folder, local_env.read_bytes())
        if context is None:
            return
        if self.faults.serve_wrong_certificate and folder in self._served:
            self.faults.serve_wrong_certificate = False
            context = self._served[folder]
        self._served[folder] = context
        port = self._ports.setdefault(folder, self.tls_port if not self._ports else _free_port())
        if self.faults.handshake_fails:
            self.faults.handshake_fails = False
            container.server = await asyncio.start_server(_close_at_once, "127.0.0.1", port)
        else:
            container.server = await asyncio.start_server(
                _close_after_handshake, "127.0.0.1", port, ssl=context
            )
        container.state, container.exit_code = "running", 0

    def _tls_context(self, folder: str, env_bytes: bytes) -> ssl.SSLContext | None:
        """The nginx container's TLS setup from prod.env; None when nginx would refuse it."""
        env = parse_env(env_bytes)
        cert, key = env.get(SINGLE.cert_key), env.get(SINGLE.key_key)
        if not cert or not key:
            return None
        files = posixpath.join(folder, SINGLE.files_dir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self._local(cert, files), self._local(key, files))
        except (OSError, ssl.SSLError) as error:
            logger.info("lab nginx refuses %s/%s: %s", cert, key, error)
            return None
        return context


_SHELL_OPERATORS = frozenset(";&|<>()`")


def _simple_command(command: str) -> tuple[str, ...]:
    """The words of ``command``, or a shell-like error for what the lab does not run.

    The lab runs one simple command per call, as the SvarUT code sends them (quoted words):
    lists, pipes, redirections and subshells are answered with exit status 2.
    """
    try:
        words = tuple(shlex.split(command))
    except ValueError:
        raise _CommandError("sh: Syntax error: Unterminated quoted string", 2) from None
    operator = _unquoted_operator(command)
    if operator:
        raise _CommandError(f"sh: {operator!r} is not supported by the lab SvarUT host", 2)
    return words


def _unquoted_operator(command: str) -> str:
    """The first shell operator outside quotes (``;``, ``&&``, ``|``...), or ``""``."""
    quote = ""
    escaped = False
    for index, char in enumerate(command):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _SHELL_OPERATORS:
            doubled = command[index : index + 2] == char * 2 and char in ";&|<>"
            return char * 2 if doubled else char
    return ""


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A container that accepts connections but speaks no TLS (a handshake failure)."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class _FaultySFTPServer(asyncssh.SFTPServer):
    """The sandbox's SFTP, refusing writes while a fault says so."""

    def __init__(self, channel: Any, faults: LabFaults, sandbox: Path) -> None:
        super().__init__(channel, chroot=bytes(sandbox))
        self._faults = faults

    def _refuse(self) -> None:
        refused = self._faults.write_error() or ("Failure" if self._faults.sftp_fails else None)
        if refused:
            raise asyncssh.SFTPFailure(refused)

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & asyncssh.FXF_WRITE:
            self._refuse()
        return super().open(path, pflags, attrs)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._refuse()
        super().mkdir(path, attrs)


async def _close_after_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
