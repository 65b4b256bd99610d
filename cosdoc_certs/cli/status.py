"""``cosdoc-certs status --host H``: what every consumer uses today and what is wrong with it.

The "check before you call support" step: one PowerShell session, one gather, a table per
consumer (role, thumbprint, issued to, days left) and the doctor's findings. ``--json`` for
monitoring; the exit code follows the worst finding (0 ok, 1 warnings, 3 problems, 4 could
not check).
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

from cosdoc_certs.cli._common import (
    echo_json,
    exit_code_for,
    json_option,
    password_env_option,
    read_password,
    reports_errors,
)
from cosdoc_certs.consumers import COSDOC_CATALOG, load_deviations
from cosdoc_certs.facts import DEFAULT_WARN_DAYS
from cosdoc_certs.status import status
from cosdoc_certs.windows.connection import AUTH_METHODS, ConnectionOptions

_PASSWORDLESS_AUTHS = frozenset({"kerberos", "certificate"})
_MIN_PIPE_WIDTH = 160


@click.command("status")
@click.option("--host", "server", required=True, help="The CosDoc application server (WinRM).")
@click.option("--port", type=click.IntRange(1, 65535), help="WinRM port [5986 HTTPS, 5985 HTTP].")
@click.option("--user", "username", help="Account to connect as, e.g. DOMAIN\\admin.")
@password_env_option("Read the WinRM password from this environment variable (else a prompt).")
@click.option(
    "--auth",
    type=click.Choice(AUTH_METHODS),
    default="negotiate",
    show_default=True,
    help="WinRM authentication.",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    help="CA certificate(s) (PEM) to trust for the server's WinRM HTTPS certificate.",
)
@click.option(
    "--http",
    "plain_http",
    is_flag=True,
    help="Use HTTP with negotiate/kerberos/ntlm message encryption instead of HTTPS.",
)
@click.option(
    "--insecure-http",
    is_flag=True,
    help="Plain HTTP, no encryption (basic auth readable on the wire): the lab or a test VM only.",
)
@click.option(
    "--client-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Client certificate (PEM) for --auth certificate.",
)
@click.option(
    "--client-key",
    type=click.Path(exists=True, dir_okay=False),
    help="Its private key (PEM, unencrypted) for --auth certificate.",
)
@click.option(
    "--consumers",
    "deviations",
    type=click.Path(dir_okay=False),
    help="A TOML file of this customer's deviations from the CosDoc catalog.",
)
@click.option(
    "--warn-days",
    type=click.IntRange(0),
    default=DEFAULT_WARN_DAYS,
    show_default=True,
    help="Warn about certificates expiring within this many days.",
)
@json_option
@reports_errors
def command(
    server: str,
    port: int | None,
    username: str | None,
    password_env: str | None,
    auth: str,
    ca_bundle: str | None,
    plain_http: bool,
    insecure_http: bool,
    client_cert: str | None,
    client_key: str | None,
    deviations: str | None,
    warn_days: int,
    as_json: bool,
) -> None:
    """Show which certificate every CosDoc consumer uses and what is wrong (the doctor).

    Run it before calling support: it reads the server's services, IIS sites and bindings,
    LocalMachine\\My and the appsettings.json files in one round trip, and changes nothing.
    """
    consumers = load_deviations(deviations) if deviations else COSDOC_CATALOG
    options = ConnectionOptions(
        server=server,
        port=port,
        username=username,
        password=_password(username, auth, password_env),
        auth=auth,
        https=not plain_http,
        ca_bundle=ca_bundle,
        insecure_http=insecure_http,
        client_certificate=client_cert,
        client_key=client_key,
    )
    report = status(options, consumers, warn_days=warn_days)
    if as_json:
        echo_json(report.to_dict())
    else:
        report.print(_console())
    sys.exit(exit_code_for(report.worst))


def _password(username: str | None, auth: str, password_env: str | None) -> str | None:
    if password_env:
        return read_password(password_env, "WinRM password")
    if username is None or auth in _PASSWORDLESS_AUTHS:
        return None
    return read_password(None, f"WinRM password for {username}")


def _console() -> Console:
    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=max(terminal.width, _MIN_PIPE_WIDTH))
