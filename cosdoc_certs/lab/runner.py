"""The running lab: a simulated CosDoc server behind WinRM endpoints, for the CLI, demo and tests.

``with Lab() as lab:`` builds a scenario's :class:`~cosdoc_certs.lab.scenarios.LabServer`,
serves its HTTPS bindings as TLS listeners, and starts two WinRM endpoints on 127.0.0.1 —
plain HTTP and HTTPS (certificate from the lab's test CA) — with a fresh password for the
local account ``lab-admin`` and the script twins registered. As on a default Windows Server,
HTTP takes Negotiate (NTLM) with sealed messages; HTTPS also takes Basic for the local account.
:meth:`Lab.connection_info` says how to connect; :meth:`ConnectionInfo.options` gives the
:class:`ConnectionOptions` the Windows side of this package takes.

With ``svarut=True`` (the default) it also runs the lab SvarUT host
(:class:`~cosdoc_certs.lab.svarut_host.LabSvarutHost`): an SSH server with the single-install
layout (``/usr/containers/svarut``) whose nginx stand-in serves the current SSL certificate.

The lab writes the files a client needs — the test CA to trust, the renewed certificates as
PFX files and the SSH client key for the SvarUT host — to folders of its own (under ``root``
when given, else a temporary folder removed on stop).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cosdoc_certs.errors import InputError
from cosdoc_certs.lab.certs import Issued, make_client_certificate, make_ssl_certificate
from cosdoc_certs.lab.scenarios import PFX_PASSWORD_ENV, SCENARIOS, LabServer
from cosdoc_certs.lab.svarut_host import LAB_USER, LabSvarutHost
from cosdoc_certs.lab.twins import register_twins
from cosdoc_certs.lab.winrm import Faults, ScriptRegistry, WinRMEndpoint, tls_context
from cosdoc_certs.svarut.api import SvarutTarget
from cosdoc_certs.svarut.connection import SshOptions
from cosdoc_certs.svarut.layout import SINGLE
from cosdoc_certs.windows.connection import ConnectionOptions

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LAB_USERNAME = "lab-admin"
LAB_PASSWORD_ENV = "COSDOC_LAB_WINRM_PASSWORD"  # noqa: S105 -- a variable name
CLIENT_CERTIFICATE_UPN = f"{LAB_USERNAME}@localhost"  # as New-Item WSMan:\\...\\ClientCertificate


@dataclass(frozen=True)
class SvarutInfo:
    """How to reach the lab's SvarUT host: SSH (pinned host key, client key file) and TLS."""

    host: str
    ssh_port: int
    username: str
    host_key: str
    client_key: Path
    tls_port: int
    layout: str

    def target(self) -> SvarutTarget:
        """The :class:`SvarutTarget` for this host."""
        ssh = SshOptions(
            host=self.host,
            port=self.ssh_port,
            username=self.username,
            pinned_host_key=self.host_key,
            client_keys=(str(self.client_key),),
        )
        return SvarutTarget(ssh=ssh, layout=self.layout, tls_port=self.tls_port)


@dataclass(frozen=True)
class ConnectionInfo:
    """How to reach a running lab. ``password`` and ``pfx_password`` are hidden from the repr.

    ``tls_endpoints`` maps a binding's simulated ``ip:port`` to the real ``host:port`` that
    serves it; ``pfx_files`` names the renewed certificates' PFX files (their password is
    ``pfx_password``, also exported to clients as the environment variable
    ``pfx_password_env``). ``journal_dir`` is the client folder's journal folder, where
    :func:`~cosdoc_certs.rotation.lab_target`'s runs keep their journals;
    :meth:`inventory_entry` is the lab as an inventory entry.
    """

    host: str
    http_port: int
    https_port: int
    username: str
    password: str = field(repr=False)
    ca_file: Path
    server_root: Path
    hostname: str
    tls_endpoints: dict[str, str]
    pfx_files: dict[str, Path]
    pfx_password_env: str
    pfx_password: str = field(repr=False)
    svarut: SvarutInfo | None = None
    journal_dir: Path | None = None
    client_certificate: Path | None = None
    client_key: Path | None = None

    def options(self, *, https: bool = True, auth: str = "negotiate") -> ConnectionOptions:
        """Connection options for this lab: HTTPS trusting the lab CA, or HTTP.

        ``auth`` defaults to Negotiate (NTLM under it), as on a default Windows Server: over
        HTTP every message is sealed by the auth context. Basic over HTTP is plain text and
        works only against a lab started with ``allow_unencrypted=True``.
        """
        plain_basic = auth == "basic" and not https
        certificate = auth == "certificate"
        return ConnectionOptions(
            server=self.host,
            port=self.https_port if https else self.http_port,
            username=None if certificate else self.username,
            password=None if certificate else self.password,
            auth=auth,
            https=https,
            ca_bundle=str(self.ca_file) if https else None,
            insecure_http=plain_basic,
            client_certificate=str(self.client_certificate) if certificate else None,
            client_key=str(self.client_key) if certificate else None,
        )

    def inventory_entry(
        self, name: str = "lab", *, password_env: str = LAB_PASSWORD_ENV, auth: str = "basic"
    ) -> str:
        """The lab as a ``[customers.<name>]`` inventory entry (TOML text, no password).

        The WinRM password is read from ``password_env`` (export it, or set it in
        ``os.environ``, before using the entry); ``auth`` is the HTTPS logon (``negotiate``:
        NTLM under Negotiate, as a consultant's domain account would use).
        """
        lines = [
            f"[customers.{name}]",
            f"tls_endpoints = {_toml_table(self.tls_endpoints)}",
            "",
            f"[customers.{name}.windows]",
            f'host = "{self.host}"',
            f"port = {self.https_port}",
            f'user = "{self.username}"',
            f'auth = "{auth}"',
            f'password_env = "{password_env}"',
            f"ca_bundle = {_toml_string(self.ca_file)}",
        ]
        if self.svarut is not None:
            lines += [
                "",
                f"[customers.{name}.svarut]",
                f'host = "{self.svarut.host}"',
                f"port = {self.svarut.ssh_port}",
                f'user = "{self.svarut.username}"',
                f"host_key = {_toml_string(self.svarut.host_key)}",
                f"identities = [{_toml_string(self.svarut.client_key)}]",
                f'layout = "{self.svarut.layout}"',
                f"tls_port = {self.svarut.tls_port}",
            ]
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values (passwords included: the lab's own test secrets)."""
        document = asdict(self)
        document["ca_file"] = str(self.ca_file)
        document["server_root"] = str(self.server_root)
        document["journal_dir"] = str(self.journal_dir) if self.journal_dir else None
        document["pfx_files"] = {name: str(path) for name, path in self.pfx_files.items()}
        for name in ("client_certificate", "client_key"):
            document[name] = str(document[name]) if document[name] else None
        if self.svarut is not None:
            document["svarut"]["client_key"] = str(self.svarut.client_key)
        return document


_DISPLAY_LANGUAGES = {"en": "en-US", "nb": "nb-NO"}


def _toml_string(value: object) -> str:
    """A TOML basic string of ``str(value)``."""
    return json.dumps(str(value))


def _toml_table(mapping: dict[str, str]) -> str:
    """A TOML inline table of strings."""
    pairs = (f"{_toml_string(key)} = {_toml_string(value)}" for key, value in mapping.items())
    return "{ " + ", ".join(pairs) + " }"


class Lab:
    """A running lab: the scenario's server, its TLS listeners and the WinRM endpoints.

    ``scenario`` names a builder in :data:`~cosdoc_certs.lab.scenarios.SCENARIOS`; pass
    ``server`` instead to run one you built. ``root`` keeps the server's files
    (``<root>/server``) and the client files (``<root>/client``) after the lab stops.
    ``faults`` injects failures into both endpoints. Like a default Windows Server, the HTTP
    endpoint takes only Negotiate/Kerberos with sealed messages; ``allow_unencrypted=True``
    (``AllowUnencrypted=true``) also takes unencrypted messages and Basic over HTTP.
    ``keytab`` (see :class:`~cosdoc_certs.lab.kerberos.LabRealm`) lets both endpoints take
    Kerberos for ``localhost``.
    """

    def __init__(
        self,
        *,
        scenario: str = "default",
        server: LabServer | None = None,
        root: Path | None = None,
        faults: Faults | None = None,
        svarut: bool = True,
        allow_unencrypted: bool = False,
        keytab: Path | None = None,
    ) -> None:
        if server is None and scenario not in SCENARIOS:
            known = ", ".join(sorted(SCENARIOS))
            raise InputError(f"unknown lab scenario {scenario!r}", f"use one of: {known}")
        self._temporary = (
            tempfile.TemporaryDirectory(prefix="cosdoc-lab-") if root is None else None
        )
        base = Path(self._temporary.name) if self._temporary is not None else root
        assert base is not None
        if server is None:
            _require_empty(base / "server")
        self.client_folder = base / "client"
        self.server = server or SCENARIOS[scenario](base / "server")
        self.faults = faults or Faults()
        self.registry = ScriptRegistry()
        register_twins(self.registry, self.server)
        self._password = secrets.token_urlsafe(18)
        self._client = make_client_certificate(self.server.certificates.ca, CLIENT_CERTIFICATE_UPN)
        self.http = WinRMEndpoint(
            self.registry,
            username=LAB_USERNAME,
            password=self._password,
            faults=self.faults,
            allow_unencrypted=allow_unencrypted,
            keytab=keytab,
        )
        self.https = WinRMEndpoint(
            self.registry,
            username=LAB_USERNAME,
            password=self._password,
            tls=self._endpoint_tls(),
            faults=self.faults,
            keytab=keytab,
            certificates={CLIENT_CERTIFICATE_UPN: LAB_USERNAME},
        )
        for endpoint in (self.http, self.https):  # a Norwegian server words its faults so
            endpoint.language = _DISPLAY_LANGUAGES[self.server.accounts.language]
        self._files = self.server.certificates.write_files(self.client_folder)
        self._client_files = _write_client_certificate(self.client_folder, self._client)
        self.svarut = LabSvarutHost(base / "svarut") if svarut else None
        self._started = False

    def __repr__(self) -> str:
        state = "running" if self._started else "stopped"
        return f"<Lab {self.server.hostname} {state}: {self.http.url} {self.https.url}>"

    def start(self) -> Lab:
        """Start the TLS listeners and both WinRM endpoints."""
        if not self._started:
            self._started = True
            self.server.start_tls()
            self.http.start()
            self.https.start()
            if self.svarut is not None:
                self._start_svarut(self.svarut)
            logger.info("lab running: %s and %s", self.http.url, self.https.url)
        return self

    def stop(self) -> None:
        """Stop everything this lab started and remove its temporary files (idempotent)."""
        if self._started:
            self.https.stop()
            self.http.stop()
            self._started = False
        if self.svarut is not None:
            self.svarut.close()
        self.server.close()
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> Lab:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def connection_info(self) -> ConnectionInfo:
        """How clients reach this lab (call after :meth:`start`)."""
        endpoints = {
            f"{ip}:{port}": f"{host}:{real_port}"
            for (ip, port), (host, real_port) in sorted(self.server.tls_endpoints().items())
        }
        return ConnectionInfo(
            host=LOOPBACK,
            http_port=self.http.port,
            https_port=self.https.port,
            username=LAB_USERNAME,
            password=self._password,
            ca_file=self._files.ca_pem,
            server_root=self.server.files.root,
            hostname=self.server.hostname,
            tls_endpoints=endpoints,
            pfx_files={
                "signing": self._files.signing_pfx,
                "encryption": self._files.encryption_pfx,
                "pair": self._files.pair_pfx,
                "ssl": self._files.ssl_pfx,
            },
            pfx_password_env=PFX_PASSWORD_ENV,
            pfx_password=self.server.certificates.pfx_password,
            svarut=self._svarut_info(),
            journal_dir=self.client_folder / "journals",
            client_certificate=self._client_files[0],
            client_key=self._client_files[1],
        )

    def _start_svarut(self, host: LabSvarutHost) -> None:
        """Start the SvarUT host with its nginx serving the server's current SSL certificate."""
        host.start()
        current = self.server.certificates.current_ssl
        host.seed(
            SINGLE, cert_pem=current.cert_pem() + current.chain_pem(), key_pem=current.key_pem()
        )

    def _svarut_info(self) -> SvarutInfo | None:
        if self.svarut is None:
            return None
        return SvarutInfo(
            host=LOOPBACK,
            ssh_port=self.svarut.ssh_port,
            username=LAB_USER,
            host_key=self.svarut.host_key,
            client_key=self.svarut.client_key_path,
            tls_port=self.svarut.tls_port_of(SINGLE),
            layout=SINGLE.name,
        )

    def _endpoint_tls(self) -> ssl.SSLContext:
        """A TLS context for the HTTPS endpoint: localhost/127.0.0.1, issued by the lab CA."""
        ca = self.server.certificates.ca
        issued = make_ssl_certificate(ca, ("localhost",), ip_addresses=(LOOPBACK,))
        return tls_context(
            issued.cert_pem() + issued.chain_pem(),
            issued.key_pem(),
            client_ca_pem=ca.root_pem() + ca.intermediate.cert_pem(),
        )


def _write_client_certificate(folder: Path, client: Issued) -> tuple[Path, Path]:
    """The client certificate (PEM) and its key (PEM, mode 0600) for certificate auth."""
    certificate, key = folder / "winrm-client.pem", folder / "winrm-client.key"
    certificate.write_bytes(client.cert_pem() + client.chain_pem())
    descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(client.key_pem())
    return certificate, key


def _require_empty(folder: Path) -> None:
    """Refuse to build a new server over the files of an earlier one."""
    if folder.is_dir() and any(folder.iterdir()):
        raise InputError(
            f"{folder} already holds the files of a lab server",
            "pass a new or empty folder with --root (or delete that one)",
        )
