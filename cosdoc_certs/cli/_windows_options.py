"""The WinRM connection options ``status`` and the rotate commands share, and what they build.

One definition of ``--host --port --user --winrm-password-env --auth --ca-bundle --http
--insecure-http --delegate --client-cert --client-key`` (and ``--consumers``), so every command that
talks to the Windows server spells them the same way. ``--winrm-password-env`` is not
``--password-env``: that one names the PFX password in the commands that open PFX files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cosdoc_certs.cli._common import read_password
from cosdoc_certs.windows.auth_methods import AUTH_METHODS, PASSWORDLESS_AUTHS

if TYPE_CHECKING:  # the library is imported where used: `--help` needs none of it
    from cosdoc_certs.consumers import Consumer
    from cosdoc_certs.facts import WindowsFacts
    from cosdoc_certs.windows.connection import ConnectionOptions

F = TypeVar("F", bound=Callable[..., Any])

_PASSWORD_OPTION = "--winrm-password-env"  # noqa: S105 -- an option name


def windows_options(*, host_required: bool) -> Callable[[F], F]:
    """Add the WinRM connection options to a command (``--host`` required or not)."""
    options = (
        click.option(
            "--host",
            "server",
            required=host_required,
            default=None,
            help="The CosDoc application server (WinRM), e.g. cosdoc-app01.kommune.local.",
        ),
        click.option(
            "--port", type=click.IntRange(1, 65535), help="WinRM port [5986 HTTPS, 5985 HTTP]."
        ),
        click.option("--user", "username", default=None, help="Account, e.g. DOMAIN\\admin."),
        click.option(
            "--winrm-password-env",
            metavar="VAR",
            default=None,
            help="Read the WinRM password from this environment variable (else a prompt).",
        ),
        click.option(
            "--auth",
            type=click.Choice(AUTH_METHODS),
            default="negotiate",
            show_default=True,
            help="WinRM authentication (basic and ntlm need --user).",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(exists=True, dir_okay=False),
            help="CA certificate(s) (PEM) to trust for the server's WinRM HTTPS certificate.",
        ),
        click.option(
            "--http",
            "plain_http",
            is_flag=True,
            help="Use HTTP with negotiate/kerberos/ntlm message encryption instead of HTTPS.",
        ),
        click.option(
            "--insecure-http",
            is_flag=True,
            help="Plain HTTP, no encryption (basic auth readable on the wire): "
            "the lab or a test VM only.",
        ),
        click.option(
            "--delegate",
            is_flag=True,
            help="Forward your Kerberos ticket to the server (kinit -f), so it can read "
            "config files on a UNC share (the second hop).",
        ),
        click.option(
            "--client-cert",
            type=click.Path(exists=True, dir_okay=False),
            help="Client certificate (PEM) for --auth certificate.",
        ),
        click.option(
            "--client-key",
            type=click.Path(exists=True, dir_okay=False),
            help="Its private key (PEM, unencrypted) for --auth certificate.",
        ),
        click.option(
            "--consumers",
            "deviations",
            type=click.Path(dir_okay=False),
            help="A TOML file of this customer's deviations from the CosDoc catalog.",
        ),
    )

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def connection_options(given: dict[str, Any]) -> ConnectionOptions:
    """The WinRM connection the options in ``given`` describe, asking for a password if needed."""
    from cosdoc_certs.windows.connection import ConnectionOptions

    return ConnectionOptions(
        server=given["server"],
        port=given["port"],
        username=given["username"],
        password=_password(given["username"], given["auth"], given["winrm_password_env"]),
        auth=given["auth"],
        https=not given["plain_http"],
        ca_bundle=given["ca_bundle"],
        insecure_http=given["insecure_http"],
        client_certificate=given["client_cert"],
        client_key=given["client_key"],
        delegate=given["delegate"],
    )


def consumers_from(deviations: str | None) -> tuple[Consumer, ...]:
    """The CosDoc catalog, with the customer's deviations file applied if one is given."""
    from cosdoc_certs.consumers import COSDOC_CATALOG, load_deviations

    return load_deviations(deviations) if deviations else COSDOC_CATALOG


def _password(username: str | None, auth: str, password_env: str | None) -> str | None:
    if password_env:
        return read_password(password_env, "WinRM password", option=_PASSWORD_OPTION)
    if username is None or auth in PASSWORDLESS_AUTHS:
        return None
    return read_password(None, f"WinRM password for {username}", option=_PASSWORD_OPTION)


def save_facts_options(command: F) -> F:
    """Add ``--save-facts FILE`` and ``--anonymize`` (what gather returned, scrubbed)."""
    command = click.option(
        "--anonymize",
        is_flag=True,
        help="With --save-facts: replace the computer name, domain accounts and binding host "
        "names by stand-ins.",
    )(command)
    return click.option(
        "--save-facts",
        "save_facts_to",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        default=None,
        metavar="FILE",
        help="Write what the server reported to FILE (passwords and connection strings "
        "scrubbed) to send home or replay with `cosdoc-certs lab --facts FILE`.",
    )(command)


def write_facts(
    path: Path | None,
    facts: WindowsFacts | None,
    consumers: Sequence[Consumer],
    *,
    anonymize: bool,
) -> None:
    """Save the facts when ``--save-facts`` was given (a line on stderr says where)."""
    if path is None or facts is None:
        return
    from cosdoc_certs.captured import save_facts

    save_facts(path, facts, consumers, anonymize=anonymize)
    click.echo(f"facts saved to {path}{' (anonymized)' if anonymize else ''}", err=True)
