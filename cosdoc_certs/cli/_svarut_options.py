"""The SvarUT host's options, defined once for `cosdoc-certs svarut` and the rotate commands.

`svarut` names them plainly (``--host``); the whole-installation commands prefix them
(``--svarut-host``) because ``--host`` there is the Windows server.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # imported where used: `--help` needs no SSH client
    from cosdoc_certs.svarut import SvarutTarget

F = TypeVar("F", bound=Callable[..., Any])


def svarut_target_options(prefix: str = "", *, host_required: bool = True) -> Callable[[F], F]:
    """Add the SSH and SvarUT layout options, named ``--<prefix>host`` and so on."""
    host = f"--{prefix}host"
    options = (
        click.option(host, required=host_required, help="The SvarUT Linux host (SSH)."),
        click.option(
            f"--{prefix}port",
            type=click.IntRange(1, 65535),
            default=22,
            show_default=True,
            help="SSH port.",
        ),
        click.option(
            f"--{prefix}user", default=None, help="SSH user (default: your local user name)."
        ),
        click.option(
            f"--{prefix}known-hosts",
            type=click.Path(dir_okay=False),
            default=None,
            help="known_hosts file to check the host key against (default ~/.ssh/known_hosts).",
        ),
        click.option(
            f"--{prefix}host-key",
            default=None,
            metavar="KEY",
            help="Accept exactly this host public key ('ssh-ed25519 AAAA...') "
            "instead of known_hosts.",
        ),
        click.option(
            f"--{prefix}identity",
            _param(prefix, "identities"),
            multiple=True,
            type=click.Path(exists=True, dir_okay=False),
            help="Private key file for the login (repeatable; default: ssh-agent and ~/.ssh keys).",
        ),
        click.option(
            f"--{prefix}jump", default=None, metavar="[USER@]HOST[:PORT]", help="SSH jump host."
        ),
        click.option(
            f"--{prefix}layout",
            type=click.Choice(["single", "samdrift"]),
            default=None,
            help="single: /usr/containers/svarut; samdrift: /usr/containers/nginx "
            "(default: detect).",
        ),
        click.option(
            f"--{prefix}root",
            default=None,
            metavar="PATH",
            help="The SvarUT compose folder, if not standard.",
        ),
        click.option(
            f"--{prefix}tls-host",
            default=None,
            help=f"Host for SvarUT's TLS check (default: {host}).",
        ),
        click.option(
            f"--{prefix}tls-port",
            type=click.IntRange(1, 65535),
            default=443,
            show_default=True,
            help="TLS port of SvarUT's nginx.",
        ),
        click.option(
            f"--{prefix}server-name", default=None, help="SNI name for SvarUT's TLS check."
        ),
    )

    def decorate(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def svarut_target_from(options: dict[str, Any], prefix: str = "") -> SvarutTarget:
    """The target the options added by :func:`svarut_target_options` describe (they are removed)."""
    from cosdoc_certs.svarut import SshOptions, SvarutTarget

    def take(name: str) -> Any:
        return options.pop(_param(prefix, name))

    ssh = SshOptions(
        host=take("host"),
        port=take("port"),
        username=take("user") or getpass.getuser(),
        known_hosts=take("known_hosts"),
        pinned_host_key=take("host_key"),
        client_keys=tuple(take("identities")) or None,
        jump_host=take("jump"),
    )
    return SvarutTarget(
        ssh,
        layout=take("layout"),
        root=take("root"),
        tls_host=take("tls_host"),
        tls_port=take("tls_port"),
        server_name=take("server_name"),
    )


def _param(prefix: str, name: str) -> str:
    """The Python parameter name click gives ``--<prefix><name>``."""
    return prefix.replace("-", "_") + name
