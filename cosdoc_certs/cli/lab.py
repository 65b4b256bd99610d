"""``cosdoc-certs lab``: run the simulated CosDoc application server in the foreground."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click

from cosdoc_certs.cli._common import echo_json, json_option, reports_errors
from cosdoc_certs.errors import InputError
from cosdoc_certs.lab.kerberos import SERVICE_HOST, LabRealm
from cosdoc_certs.lab.runner import LAB_PASSWORD_ENV, ConnectionInfo, Lab
from cosdoc_certs.lab.scenarios import SCENARIOS, LabServer

_WAIT_SECONDS = 0.5


@click.command("lab")
@click.option(
    "--scenario",
    type=click.Choice(sorted(SCENARIOS)),
    default="default",
    show_default=True,
    help="Which installation to simulate (see docs/lab.md).",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the simulated server's files (DIR/server) and the client files (DIR/client) "
    "here instead of a temporary folder removed on stop.",
)
@click.option(
    "--allow-unencrypted",
    is_flag=True,
    help="Also take unencrypted messages and basic auth over HTTP (WinRM's "
    "AllowUnencrypted=true, off on a default Windows Server).",
)
@click.option(
    "--kerberos",
    is_flag=True,
    help="Also run a Kerberos realm (COSDOC.TEST) on 127.0.0.1 with a user holding a "
    "ticket, and give the server its keytab, as for a domain-joined server (needs MIT "
    "Kerberos: krb5-kdc, krb5-admin-server, krb5-user).",
)
@click.option(
    "--facts",
    "facts_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Replay a server from a facts file (`status --save-facts`) instead of a scenario; "
    "certificates with keys get lab stand-ins (see docs/lab.md).",
)
@json_option
@reports_errors
def command(
    scenario: str,
    root: Path | None,
    allow_unencrypted: bool,
    kerberos: bool,
    facts_file: Path | None,
    as_json: bool,
) -> None:
    """Run a simulated CosDoc application server on 127.0.0.1 until Ctrl+C.

    It speaks WinRM (PowerShell remoting) like a default Windows Server: HTTP with Negotiate
    (NTLM) and every message encrypted, HTTPS also with basic auth for the local account. It
    runs this tool's scripts against a simulated certificate store, services and IIS, and
    serves the IIS HTTPS bindings as real TLS listeners. Prints how to connect, one command
    per authentication; with --json, one JSON document (for scripts that start the lab as a
    subprocess). SIGINT or SIGTERM stop it. With --facts FILE the server is the one a
    consultant captured with --save-facts.
    """
    if root is not None:
        _make_folder(root)
    with _server(facts_file, root) as server:
        name = scenario if facts_file is None else str(facts_file)
        _run(server, name, root, as_json, allow_unencrypted=allow_unencrypted, kerberos=kerberos)


@contextlib.contextmanager
def _server(facts_file: Path | None, root: Path | None) -> Iterator[LabServer | None]:
    """The replayed server of ``facts_file`` (closed afterwards), or None for a scenario."""
    if facts_file is None:
        yield None
        return
    from cosdoc_certs.captured import load_facts
    from cosdoc_certs.lab.replay import replay_installation

    server = replay_installation(
        load_facts(facts_file), root / "server" if root is not None else None
    )
    with server:
        yield server


def _run(
    server: LabServer | None,
    scenario: str,
    root: Path | None,
    as_json: bool,
    *,
    allow_unencrypted: bool,
    kerberos: bool,
) -> None:
    stop = threading.Event()
    with contextlib.ExitStack() as running:
        realm = running.enter_context(LabRealm()) if kerberos else None
        if realm is not None:
            realm.kinit()
        keytab = realm.keytab if realm is not None else None
        lab = running.enter_context(
            Lab(
                scenario=scenario,
                server=server,
                root=root,
                allow_unencrypted=allow_unencrypted,
                keytab=keytab,
            )
        )
        previous = _stop_on_signals(stop)
        try:
            info = lab.connection_info()
            ways = _Ways(unencrypted=allow_unencrypted, realm=realm)
            if as_json:
                echo_json({"scenario": scenario, **info.as_dict(), **ways.as_dict()})
            else:
                _print_info(info, scenario, kept=root is not None, ways=ways)
            while not stop.wait(_WAIT_SECONDS):
                pass
        finally:
            _restore_signals(previous)
    click.echo("lab stopped", err=True)


def _make_folder(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"cannot create the folder {root} ({error.strerror})",
            "choose a folder you can write to with --root",
        ) from None


def _stop_on_signals(stop: threading.Event) -> dict[int, object]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Ways:
    """The ways of connecting the lab offers beyond a default Windows Server's."""

    unencrypted: bool = False
    realm: LabRealm | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.realm is None:
            return {"allow_unencrypted": self.unencrypted, "kerberos": None}
        kerberos = {
            "realm": self.realm.realm,
            "user": self.realm.user,
            "password": self.realm.password,
            "host": SERVICE_HOST,
            "environment": self.realm.environment,
        }
        return {"allow_unencrypted": self.unencrypted, "kerberos": kerberos}


def status_commands(info: ConnectionInfo, ways: _Ways) -> dict[str, str]:
    """A ready ``cosdoc-certs status`` command line per way of connecting to the lab."""
    base = f"cosdoc-certs status --host {info.host} --user {info.username} "
    password = f"--winrm-password-env {LAB_PASSWORD_ENV}"
    https = f"--port {info.https_port} --ca-bundle {info.ca_file}"
    commands = {
        "negotiate (NTLM), HTTP, encrypted": f"{base}--port {info.http_port} --http {password}",
        "ntlm, HTTP, encrypted": f"{base}--port {info.http_port} --http --auth ntlm {password}",
        "negotiate, HTTPS": f"{base}{https} {password}",
        "basic (local account), HTTPS": f"{base}{https} --auth basic {password}",
        "certificate (mapped to the local account), HTTPS": (
            f"cosdoc-certs status --host {info.host} {https} --auth certificate "
            f"--client-cert {info.client_certificate} --client-key {info.client_key}"
        ),
    }
    if ways.unencrypted:
        commands["basic, plain HTTP (--allow-unencrypted)"] = (
            f"{base}--port {info.http_port} --auth basic --insecure-http {password}"
        )
    if ways.realm is not None:
        environment = " ".join(f"{name}={value}" for name, value in ways.realm.environment.items())
        commands["kerberos (ticket of lab-user), HTTP, encrypted, delegated"] = (
            f"{environment} cosdoc-certs status --host {SERVICE_HOST} --port {info.http_port} "
            "--http --auth kerberos --delegate"
        )
    return commands


def _print_info(info: ConnectionInfo, scenario: str, *, kept: bool, ways: _Ways) -> None:
    echo = click.echo
    echo(f"CosDoc lab running: simulated application server {info.hostname} ({scenario})")
    echo("")
    echo("WinRM (PowerShell remoting), as a default Windows Server:")
    echo(f"  http://{info.host}:{info.http_port}/wsman    Negotiate/NTLM, every message encrypted")
    echo(f"  https://{info.host}:{info.https_port}/wsman   also basic; trust the CA file below")
    if ways.unencrypted:
        echo("  unencrypted messages and basic over HTTP allowed (AllowUnencrypted=true)")
    echo(f"  user      {info.username} (a local account)")
    echo(f"  password  {info.password}")
    echo(f"  CA file   {info.ca_file}")
    echo("")
    if ways.realm is not None:
        realm = ways.realm
        echo(f"Kerberos realm {realm.realm} (KDC 127.0.0.1:{realm.port}), server {SERVICE_HOST}:")
        echo(f"  user      {realm.user} (has a forwardable ticket)")
        echo(f"  password  {realm.password}")
        environment = " ".join(f"{name}={value}" for name, value in realm.environment.items())
        echo(f"  a new ticket: {environment} kinit -f {realm.user}")
        echo("")
    echo("IIS HTTPS bindings (simulated ip:port -> real address, TLS with SNI):")
    for simulated, real in info.tls_endpoints.items():
        port = simulated.rsplit(":", 1)[1]
        if not (simulated.startswith("0.0.0.0:") and f"*:{port}" in info.tls_endpoints):
            echo(f"  {simulated:<16} -> {real}")
    echo("")
    if info.svarut is not None:
        svarut = info.svarut
        echo(
            f"SvarUT host (SSH, {svarut.layout} layout, nginx serving the current SSL certificate):"
        )
        echo(f"  ssh -p {svarut.ssh_port} -i {svarut.client_key} {svarut.username}@{svarut.host}")
        echo(f"  host key  {svarut.host_key}")
        echo(f"  TLS       {svarut.host}:{svarut.tls_port}")
        echo("")
    echo("Renewed certificates to rotate to (PFX):")
    for role, path in info.pfx_files.items():
        echo(f"  {role:<11} {path}")
    echo(f"  password: export {info.pfx_password_env}='{info.pfx_password}'")
    echo("")
    echo("Try (one line per authentication):")
    echo(f"  export {LAB_PASSWORD_ENV}='{info.password}'")
    for label, line in status_commands(info, ways).items():
        echo(f"  # {label}")
        echo(f"  {line}")
    echo("")
    where = "kept" if kept else "removed when the lab stops; keep them with --root DIR"
    echo(f"Server files: {info.server_root} ({where})")
    echo("Press Ctrl+C to stop.")
