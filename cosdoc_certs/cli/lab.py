"""``cosdoc-certs lab``: run the simulated CosDoc application server in the foreground."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import click

from cosdoc_certs.cli._common import echo_json, json_option, reports_errors
from cosdoc_certs.errors import InputError
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
def command(scenario: str, root: Path | None, facts_file: Path | None, as_json: bool) -> None:
    """Run a simulated CosDoc application server on 127.0.0.1 until Ctrl+C.

    It speaks WinRM (PowerShell remoting) over HTTP and HTTPS with basic auth, runs this
    tool's scripts against a simulated certificate store, services and IIS, and serves the
    IIS HTTPS bindings as real TLS listeners. Prints how to connect; with --json, one JSON
    document (for scripts that start the lab as a subprocess). SIGINT or SIGTERM stop it.
    With --facts FILE the server is the one a consultant captured with --save-facts.
    """
    if root is not None:
        _make_folder(root)
    with _server(facts_file, root) as server:
        _run(server, scenario if facts_file is None else str(facts_file), root, as_json)


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


def _run(server: LabServer | None, scenario: str, root: Path | None, as_json: bool) -> None:
    stop = threading.Event()
    with Lab(scenario=scenario, server=server, root=root) as lab:
        previous = _stop_on_signals(stop)
        try:
            info = lab.connection_info()
            if as_json:
                echo_json({"scenario": scenario, **info.as_dict()})
            else:
                _print_info(info, scenario, kept=root is not None)
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


def _print_info(info: ConnectionInfo, scenario: str, *, kept: bool) -> None:
    echo = click.echo
    echo(f"CosDoc lab running: simulated application server {info.hostname} ({scenario})")
    echo("")
    echo("WinRM (PowerShell remoting, basic auth):")
    echo(f"  https://{info.host}:{info.https_port}/wsman   trust the CA file below")
    echo(f"  http://{info.host}:{info.http_port}/wsman    plain HTTP: lab only (--insecure-http)")
    echo(f"  user      {info.username}")
    echo(f"  password  {info.password}")
    echo(f"  CA file   {info.ca_file}")
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
    echo("Try:")
    echo(f"  export {LAB_PASSWORD_ENV}='{info.password}'")
    echo(
        f"  cosdoc-certs status --host {info.host} --port {info.https_port} --user "
        f"{info.username} --auth basic --ca-bundle {info.ca_file} --winrm-password-env "
        f"{LAB_PASSWORD_ENV}"
    )
    echo("")
    where = "kept" if kept else "removed when the lab stops; keep them with --root DIR"
    echo(f"Server files: {info.server_root} ({where})")
    echo("Press Ctrl+C to stop.")
