"""``cosdoc-certs status``: what every consumer uses today and what is wrong with it.

The "check before you call support" step: one PowerShell session, one gather, a table per
consumer (role, thumbprint, issued to, days left) and the doctor's findings. With
``--inventory FILE --customer NAME`` the whole installation: the Windows report, what each
HTTPS binding serves in a TLS handshake and the SvarUT host. ``--json`` for monitoring; the
exit code follows the worst finding (0 ok, 1 warnings, 3 problems, 4 could not check).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cosdoc_certs.cli._common import (
    echo_json,
    exit_code_for,
    json_option,
    reports_errors,
    stops_without_changes,
    warn_days_option,
)
from cosdoc_certs.cli._inventory_options import inventory_options, target_from_inventory
from cosdoc_certs.cli._windows_options import (
    connection_options,
    consumers_from,
    save_facts_options,
    windows_options,
    write_facts,
)

if TYPE_CHECKING:  # imported where used: `--help` needs neither rich nor the library
    from rich.console import Console

    from cosdoc_certs.rotation import InstallationStatus

_MIN_PIPE_WIDTH = 160


@click.command("status")
@inventory_options
@windows_options(host_required=False)
@warn_days_option
@save_facts_options
@json_option
@stops_without_changes("status")
@reports_errors
def command(
    inventory: str | None,
    customer: str | None,
    deviations: str | None,
    warn_days: int,
    save_facts_to: Path | None,
    anonymize: bool,
    as_json: bool,
    **given: Any,
) -> None:
    """Show which certificate every CosDoc consumer uses and what is wrong (the doctor).

    Run it before calling support: it reads the server's services, IIS sites and bindings,
    LocalMachine\\My and the appsettings.json files in one round trip, and changes nothing.

    With --inventory FILE --customer NAME instead of the host options: the customer's whole
    installation (the Windows server, its HTTPS bindings' TLS and the SvarUT host).

    \b
    Example:
      export WINRM_PASSWORD=...
      cosdoc-certs status --host cosdoc-app01.kommune.local --user KOMMUNE\\drift \\
          --auth ntlm --winrm-password-env WINRM_PASSWORD
      cosdoc-certs status --inventory kunder.toml --customer testkommune
      cosdoc-certs status ... --save-facts app01-facts.json --anonymize   # to send home
    """
    from cosdoc_certs.rotation import installation_status
    from cosdoc_certs.status import status

    if inventory or customer:
        if save_facts_to is not None:
            raise click.UsageError("--save-facts reads one server: give --host, not --inventory")
        given["deviations"] = deviations
        target = target_from_inventory(inventory, customer, given)
        installation = installation_status(target, warn_days=warn_days)
        if as_json:
            echo_json(installation.to_dict())
        else:
            _print_installation(installation)
        sys.exit(exit_code_for(installation.worst))
    if not given["server"]:
        raise click.UsageError("give --host, or --inventory FILE --customer NAME")
    consumers = consumers_from(deviations)
    report = status(connection_options(given), consumers, warn_days=warn_days)
    write_facts(save_facts_to, report.facts, consumers, anonymize=anonymize)
    if as_json:
        echo_json(report.to_dict())
    else:
        report.print(_console())
    sys.exit(exit_code_for(report.worst))


def _print_installation(installation: InstallationStatus) -> None:
    """Its summary and the hosts it could not read, the Windows tables, what is served."""
    click.echo(installation.summary())
    for line in installation.error_lines():
        click.echo(line)
    if installation.windows is not None:
        click.echo()
        installation.windows.print(_console())
    for line in installation.served_lines():
        click.echo(line)


def _console() -> Console:
    from rich.console import Console

    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=max(terminal.width, _MIN_PIPE_WIDTH))
