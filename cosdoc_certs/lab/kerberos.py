"""A Kerberos realm on loopback for the lab: an MIT KDC, a user, and the server's keytab.

A domain-joined CosDoc server is reached with Kerberos: the consultant has a ticket
(``kinit``), the server has the keys of its ``HTTP/<host>`` and ``host/<host>`` principals.
:class:`LabRealm` builds that on 127.0.0.1 with the MIT Kerberos tools (Debian
``krb5-kdc``, ``krb5-admin-server``, ``krb5-user``): a realm database, the user
``lab-user`` (forwardable tickets, for delegation to a second hop), the service principals
for ``localhost`` in a keytab the lab's WinRM endpoint reads, and ``krb5kdc`` in the
foreground on a free port. Clients use the realm through :attr:`LabRealm.environment`
(``KRB5_CONFIG`` and ``KRB5CCNAME``); :meth:`LabRealm.kinit` gets the user's ticket.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cosdoc_certs.errors import InputError

log = logging.getLogger(__name__)

REALM = "COSDOC.TEST"
SERVICE_HOST = "localhost"
LAB_KERBEROS_USER = "lab-user"
KDC_TOOLS = ("/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local", "/usr/bin/kinit")
_START_SECONDS = 20.0
_TOOL_SECONDS = 60


def kerberos_tools_missing() -> list[str]:
    """The MIT Kerberos programs the lab realm needs that are not installed."""
    return [tool for tool in KDC_TOOLS if not os.access(tool, os.X_OK)]


class LabRealm:
    """A running KDC for :data:`REALM` with a user and the lab server's keytab.

    A context manager (or :meth:`start`/:meth:`stop`). Its files live in a temporary folder
    removed on stop. ``password`` is the user's (the lab's own test secret).
    """

    def __init__(self) -> None:
        missing = kerberos_tools_missing()
        if missing:
            raise InputError(
                f"the lab's Kerberos realm needs MIT Kerberos ({', '.join(missing)} missing)",
                "install krb5-kdc, krb5-admin-server and krb5-user (scripts/setup-dev does, "
                "as root)",
            )
        self.realm = REALM
        self.user = f"{LAB_KERBEROS_USER}@{REALM}"
        self.password = secrets.token_urlsafe(18)
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._kdc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def folder(self) -> Path:
        """Where the realm keeps its configuration, database, keytab and ticket cache."""
        if self._folder is None:
            raise RuntimeError("the realm is not started")
        return Path(self._folder.name)

    @property
    def keytab(self) -> Path:
        """The server's keytab: HTTP/localhost and host/localhost (``KRB5_KTNAME``)."""
        return self.folder / "server.keytab"

    @property
    def krb5_conf(self) -> Path:
        return self.folder / "krb5.conf"

    @property
    def ccache(self) -> Path:
        return self.folder / "ccache"

    @property
    def environment(self) -> dict[str, str]:
        """What a client needs in its environment to use this realm and its ticket."""
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5CCNAME": f"FILE:{self.ccache}"}

    def __enter__(self) -> LabRealm:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Create the realm and start the KDC."""
        if self._folder is not None:
            return
        self._folder = tempfile.TemporaryDirectory(prefix="cosdoc-lab-krb5-")
        try:
            self.port = _free_port()
            self._write_configuration()
            self._create_database()
            self._start_kdc()
        except BaseException:
            self.stop()
            raise
        log.info("lab Kerberos realm %s on 127.0.0.1:%d", self.realm, self.port)

    def stop(self) -> None:
        """Stop the KDC and remove every file of the realm."""
        kdc, self._kdc = self._kdc, None
        if kdc is not None and kdc.poll() is None:
            kdc.terminate()
            try:
                kdc.wait(10)
            except subprocess.TimeoutExpired:
                kdc.kill()
                kdc.wait(10)
        folder, self._folder = self._folder, None
        if folder is not None:
            folder.cleanup()

    def kdc_log(self) -> str:
        """What the KDC logged so far: one line per ticket request (AS_REQ, TGS_REQ)."""
        try:
            return (self.folder / "kdc.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def kinit(self, *, forwardable: bool = True) -> None:
        """Get the user's ticket-granting ticket into :attr:`ccache` (``kinit -f``)."""
        flags = ["-f"] if forwardable else ["-F"]
        self._run(["/usr/bin/kinit", *flags, self.user], stdin=f"{self.password}\n")

    def kdestroy(self) -> None:
        """Forget the user's tickets."""
        self.ccache.unlink(missing_ok=True)

    def _write_configuration(self) -> None:
        folder = self.folder
        self.krb5_conf.write_text(
            "[libdefaults]\n"
            f"  default_realm = {REALM}\n"
            "  dns_lookup_kdc = false\n  dns_lookup_realm = false\n"
            "  dns_canonicalize_hostname = false\n  rdns = false\n"
            "  udp_preference_limit = 1\n  forwardable = true\n"
            f"[realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{self.port}\n  }}\n"
            f"[domain_realm]\n  {SERVICE_HOST} = {REALM}\n",
            encoding="utf-8",
        )
        (folder / "kdc.conf").write_text(
            "[kdcdefaults]\n"
            f"  kdc_ports = {self.port}\n  kdc_tcp_ports = {self.port}\n"
            f"[realms]\n  {REALM} = {{\n"
            f"    database_name = {folder / 'principal'}\n"
            f"    key_stash_file = {folder / 'stash'}\n"
            f"    acl_file = {folder / 'kadm5.acl'}\n"
            "    max_life = 10h\n    max_renewable_life = 1d\n  }\n"
            f"[logging]\n  kdc = FILE:{folder / 'kdc.log'}\n",
            encoding="utf-8",
        )
        (folder / "kadm5.acl").write_text("", encoding="utf-8")

    def _create_database(self) -> None:
        master = secrets.token_urlsafe(18)
        self._run(
            ["/usr/sbin/kdb5_util", "create", "-s", "-r", REALM], stdin=f"{master}\n{master}\n"
        )
        services = [f"HTTP/{SERVICE_HOST}", f"host/{SERVICE_HOST}"]
        queries = [
            f"addprinc -pw {self.password} +allow_forwardable {LAB_KERBEROS_USER}",
            *(f"addprinc -randkey +ok_as_delegate {service}" for service in services),
            f"ktadd -k {self.keytab} {' '.join(services)}",
        ]
        for query in queries:
            self._run(["/usr/sbin/kadmin.local", "-r", REALM, "-q", query])

    def _start_kdc(self) -> None:
        self._kdc = subprocess.Popen(
            ["/usr/sbin/krb5kdc", "-n", "-r", REALM],
            env=self._tool_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self._kdc.poll() is not None:
                raise RuntimeError(f"krb5kdc exited with {self._kdc.returncode}; see kdc.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"krb5kdc did not listen on 127.0.0.1:{self.port} in time")

    def _tool_environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KDC_PROFILE": str(self.folder / "kdc.conf"),
            "KRB5CCNAME": f"FILE:{self.ccache}",
        }

    def _run(self, command: list[str], *, stdin: str = "") -> None:
        done = subprocess.run(
            command,
            input=stdin.encode(),
            env=self._tool_environment(),
            capture_output=True,
            timeout=_TOOL_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"{Path(command[0]).name} failed: {reason[-1] if reason else '?'}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
