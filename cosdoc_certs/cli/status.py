"""``cosdoc-certs status --host H``: what every consumer uses today and what is wrong with it.

The "check before you call support" step: one PowerShell session, one gather, a table per
consumer (role, thumbprint, issued to, days left) and the doctor's findings. ``--json`` for
monitoring; the exit code follows the worst finding (0 ok, 1 warnings, 3 problems, 4 could
not check).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from cosdoc_certs.cli._common import (
    echo_json,
    exit_code_for,
    json_option,
    reports_errors,
    warn_days_option,
)
from cosdoc_certs.cli._windows_options import (
    connection_options,
    consumers_from,
    save_facts_options,
    windows_options,
    write_facts,
)
from cosdoc_certs.status import status

_MIN_PIPE_WIDTH = 160


@click.command("status")
@windows_options(host_required=True)
@warn_days_option
@save_facts_options
@json_option
@reports_errors
def command(
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

    \b
    Example:
      export WINRM_PASSWORD=...
      cosdoc-certs status --host cosdoc-app01.kommune.local --user KOMMUNE\\drift \\
          --auth ntlm --winrm-password-env WINRM_PASSWORD
      cosdoc-certs status ... --save-facts app01-facts.json --anonymize   # to send home
    """
    consumers = consumers_from(deviations)
    report = status(connection_options(given), consumers, warn_days=warn_days)
    write_facts(save_facts_to, report.facts, consumers, anonymize=anonymize)
    if as_json:
        echo_json(report.to_dict())
    else:
        report.print(_console())
    sys.exit(exit_code_for(report.worst))


def _console() -> Console:
    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=max(terminal.width, _MIN_PIPE_WIDTH))
