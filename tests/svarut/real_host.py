"""A real SvarUT host for integration tests: OpenSSH sshd, sudo, nginx and a docker stand-in.

Needs root and the Debian packages that scripts/setup-dev installs. Everything lives under
one temp folder (`/tmp/cosdoc-svarut-*`) and one test user with a random name (so that test
sessions running at once do not collide): sshd's host key and a private sshd on a free
loopback port, the user's home with authorized_keys, the `docker` stand-in (first on sudo's
secure_path for that user only, via a sudoers drop-in), and the installations, each laid
out like a customer's (`.../usr/containers/svarut`) under its own folder — the layout root
is passed explicitly. nginx serves each installation on its own loopback port.
Teardown stops every process it started (by pid), removes the drop-in, the user and the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from cosdoc_certs.svarut import Layout, SshOptions, SvarutTarget
from cosdoc_certs.svarut.connection import HostConnection

USER_PREFIX = "cosdocsv"  # + random hex: test sessions running at once do not collide
SUDOERS_DIR = Path("/etc/sudoers.d")
STANDIN = Path(__file__).with_name("docker_standin.py")
COMPOSE_YAML = "services:\n  nginx:\n    image: nginx:stable\n"
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing_tools() -> list[str]:
    """The Debian tools the real host needs that are not installed."""
    tools = ("/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/bin/sudo", "/usr/sbin/useradd")
    return [tool for tool in tools if not Path(tool).exists()]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (sshd cannot listen on port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError("sshd did not start listening")


@dataclass
class Installation:
    """One SvarUT installation on the real host."""

    layout: Layout
    tls_port: int

    @property
    def env(self) -> Path:
        return Path(self.layout.env_path)

    def file(self, name: str) -> Path:
        return Path(self.layout.file_path(name))


class RealSvarutHost:
    """The sshd, user, sudoers drop-in and stand-in; make installations with :meth:`install`."""

    def __init__(self) -> None:
        self.user = f"{USER_PREFIX}{secrets.token_hex(3)}"
        self.sudoers = SUDOERS_DIR / f"cosdoc-certs-test-{self.user}"
        self.base = Path(tempfile.mkdtemp(prefix="cosdoc-svarut-", dir="/tmp"))
        self.base.chmod(0o755)
        self.home = self.base / "home"
        self.port = free_port()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = self.base / "client_ed25519"
        self.settings_path = self.base / "standin.json"
        self.settings: dict[str, object] = {"state": str(self.base / "state"), "installations": {}}
        self.installations: list[Installation] = []
        self._sshd: subprocess.Popen[bytes] | None = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._make_user()
        self._install_standin()
        self.sudo_passwordless(True)
        self._start_sshd()

    def _make_user(self) -> None:
        subprocess.run(
            ["useradd", "-M", "-d", str(self.home), "-s", "/bin/bash", "-p", "*", self.user],
            check=True,
        )
        user = pwd.getpwnam(self.user)
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_bytes(self.client_key.export_public_key())
        keys.chmod(0o600)
        ssh_dir.chmod(0o700)
        self.home.chmod(0o700)
        for path in (self.home, ssh_dir, keys):
            os.chown(path, user.pw_uid, user.pw_gid)
        self.client_key.write_private_key(str(self.client_key_path))
        self.client_key_path.chmod(0o600)

    def _install_standin(self) -> None:
        bin_dir = self.base / "bin"
        bin_dir.mkdir()
        docker = bin_dir / "docker"
        docker.write_text(f"#!{sys.executable}\n" + STANDIN.read_text())
        docker.chmod(0o755)
        self._write_settings()

    def _write_settings(self) -> None:
        self.settings_path.write_text(json.dumps(self.settings))

    def sudo_passwordless(self, passwordless: bool) -> None:
        """Write the sudoers drop-in: NOPASSWD (normal) or asking for a password."""
        rule = "NOPASSWD: ALL" if passwordless else "ALL"
        text = (
            f'Defaults:{self.user} secure_path="{self.base / "bin"}:{SECURE_PATH}"\n'
            f"{self.user} ALL=(ALL) {rule}\n"
        )
        candidate = self.base / "sudoers.candidate"
        candidate.write_text(text)
        subprocess.run(["visudo", "-cq", "-f", str(candidate)], check=True)
        candidate.chmod(0o440)
        os.replace(candidate, self.sudoers)

    def _start_sshd(self) -> None:
        key_file = self.base / "host_ed25519"
        self.host_key.write_private_key(str(key_file))
        key_file.chmod(0o600)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        options = {
            "Port": str(self.port),
            "ListenAddress": "127.0.0.1",
            "HostKey": str(key_file),
            "PidFile": "none",
            "UsePAM": "no",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "AllowUsers": self.user,
            "Subsystem": "sftp internal-sftp",
        }
        argv = ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null"]
        for name, value in options.items():
            argv += ["-o", f"{name}={value}"]
        log = open(self.base / "sshd.log", "ab")  # noqa: SIM115 - closed with the process
        self._sshd = subprocess.Popen(argv, stdout=log, stderr=log)
        log.close()
        _wait_listening(self.port, self._sshd)

    def close(self) -> None:
        for installation in self.installations:
            self._stop_nginx(installation)
        if self._sshd is not None:
            self.kill_sessions()
            self._sshd.terminate()
            self._sshd.wait(timeout=10)
        self.sudoers.unlink(missing_ok=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["userdel", self.user], check=True, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def compose(self, installation: Installation, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the stand-in as root in the installation's compose folder."""
        layout = installation.layout
        return subprocess.run(
            [str(self.base / "bin" / "docker"), "compose", "--env-file", layout.env_file, *args],
            cwd=layout.root,
            capture_output=True,
            text=True,
            check=False,
        )

    def _stop_nginx(self, installation: Installation) -> None:
        self.compose(installation, "down")

    # -- sessions ------------------------------------------------------------------------------
    def session_pids(self) -> list[int]:
        """The sshd processes serving connections (children of our listener)."""
        assert self._sshd is not None
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self._sshd.pid:
                    children.append(int(entry.name))
        return children

    def kill_sessions(self) -> None:
        """Kill every sshd session process we started (by pid): the connections drop."""
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def break_connection(self, connection: HostConnection) -> None:
        """A breaker for FaultyConnection: kill the session on the host side."""
        self.kill_sessions()
        await asyncio.sleep(0.1)

    # -- installations -------------------------------------------------------------------------
    def install(
        self,
        layout: Layout,
        *,
        cert_pem: bytes,
        key_pem: bytes,
        env_template: str,
        ps_format: str = "lines",
    ) -> Installation:
        """Lay out an installation under its own folder, like a customer's, and start it."""
        folder = self.base / f"host{len(self.installations)}"
        placed = Layout(layout.name, str(folder) + layout.root, layout.env_file, layout.files_dir)
        installation = Installation(placed, free_port())
        files = Path(placed.files_path)
        files.mkdir(parents=True)
        Path(placed.root, "compose.yaml").write_text(COMPOSE_YAML)
        for name, data, mode in (("cert.crt", cert_pem, 0o644), ("cert.rsa", key_pem, 0o600)):
            path = files / name
            path.write_bytes(data)
            path.chmod(mode)
        installation.env.write_text(env_template.format(cert="cert.crt", key="cert.rsa"))
        installations = self.settings["installations"]
        assert isinstance(installations, dict)
        installations[placed.root] = {
            "port": installation.tls_port,
            "files_dir": placed.files_dir,
            "ps_format": ps_format,
        }
        self._write_settings()
        self.installations.append(installation)
        started = self.compose(installation, "up", "-d")
        assert started.returncode == 0, started.stderr
        return installation

    def fail_next_up(self, installation: Installation) -> None:
        """The installation's next `up -d` starts an nginx that exits at once."""
        installations = self.settings["installations"]
        assert isinstance(installations, dict)
        installations[installation.layout.root]["fail_next_up"] = True
        self._write_settings()

    def ssh_options(self, **overrides: object) -> SshOptions:
        settings: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": self.user,
            "pinned_host_key": self.host_key.export_public_key().decode().strip(),
            "client_keys": (str(self.client_key_path),),
        }
        settings.update(overrides)
        return SshOptions(**settings)  # type: ignore[arg-type]

    def target(self, installation: Installation, **overrides: object) -> SvarutTarget:
        settings: dict[str, object] = {
            "ssh": self.ssh_options(),
            "layout": installation.layout.name,
            "root": installation.layout.root,
            "tls_port": installation.tls_port,
            "restart_timeout": 15.0,
        }
        settings.update(overrides)
        return SvarutTarget(**settings)  # type: ignore[arg-type]

    def leftovers_in_tmp(self) -> list[Path]:
        """Anything the test user left in /tmp (staging folders, stray files)."""
        uid = pwd.getpwnam(self.user).pw_uid
        return [path for path in Path("/tmp").iterdir() if _owner(path) == uid]


def _owner(path: Path) -> int | None:
    """The owner's uid; None for a file another process removed since /tmp was listed."""
    try:
        return path.lstat().st_uid
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def running_host() -> Iterator[RealSvarutHost]:
    host = RealSvarutHost()
    try:
        host.start()
        yield host
    finally:
        host.close()
