"""``cosdoc-certs svarut status|plan|apply|verify|rollback``: the SvarUT nginx certificate.

Thin commands over :mod:`cosdoc_certs.svarut`. ``apply`` shows the plan and asks before it
changes anything (``--yes`` skips the question; without a terminal ``--yes`` is required).
Progress goes to stderr, results to stdout (``--json`` for scripts).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cosdoc_certs.cli._common import (
    OrderedGroup,
    confirm_change,
    confirm_rollback,
    echo_json,
    exit_code_for,
    journal_dir_option,
    journal_to_undo,
    json_option,
    password_env_option,
    progress_printer,
    reports_errors,
)
from cosdoc_certs.cli._svarut_options import svarut_target_from, svarut_target_options
from cosdoc_certs.cli.inspect import load_bundle_asking_password
from cosdoc_certs.findings import worst

if TYPE_CHECKING:  # the library is imported where used: `--help` needs no SSH client
    from cosdoc_certs.svarut import NewCertificate

F = TypeVar("F", bound=Callable[..., Any])


def _pfx_option(required: bool) -> Callable[[F], F]:
    return click.option(
        "--pfx",
        "pfx_files",
        multiple=True,
        required=required,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The new SSL certificate: PFX/P12 with its key (repeat to add chain PEM/CER files).",
    )


def _new_certificate(pfx_files: tuple[Path, ...], password_env: str | None) -> NewCertificate:
    from cosdoc_certs.svarut import NewCertificate

    return NewCertificate.from_bundle(load_bundle_asking_password(list(pfx_files), password_env))


@click.group("svarut", cls=OrderedGroup)
def command() -> None:
    """The SvarUT host's nginx SSL certificate over SSH: status, plan, apply, verify, rollback.

    No PFX or password is copied to the host: the PFX is converted here, the key is
    installed root-owned 0600, prod.env is edited in place (backup beside it), the
    container restarted, and the served certificate checked with a TLS handshake.
    """


@command.command(
    "status", short_help="Show prod.env's files, the served certificate, the containers."
)
@svarut_target_options()
@json_option
@reports_errors
def status_command(as_json: bool, **options: Any) -> None:
    """Show the layout, the files prod.env names, the served certificate and the containers.

    \b
    Example:
      cosdoc-certs svarut status --host svarut01.kommune.no --user drift
    """
    from cosdoc_certs import svarut

    facts = svarut.status(svarut_target_from(options))
    if as_json:
        echo_json(facts.to_dict())
    else:
        click.echo(facts.to_text())


@command.command("plan", short_help="Show what apply would change (changes nothing).")
@svarut_target_options()
@_pfx_option(required=True)
@password_env_option()
@json_option
@reports_errors
def plan_command(
    pfx_files: tuple[Path, ...], password_env: str | None, as_json: bool, **options: Any
) -> None:
    """Show what apply would change on the host (changes nothing)."""
    from cosdoc_certs import svarut

    splan = svarut.plan(svarut_target_from(options), _new_certificate(pfx_files, password_env))
    if as_json:
        echo_json(splan.to_dict())
    else:
        click.echo(splan.to_text())


@command.command(
    "apply", short_help="Install the new certificate, restart, verify; roll back on failure."
)
@svarut_target_options()
@_pfx_option(required=True)
@password_env_option()
@click.option("--yes", is_flag=True, help="Do not ask before changing the host.")
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: test sudo -n, prod.env unchanged since the plan, the folders, "
    "nginx -t in a throwaway container. Exit code as `status`.",
)
@journal_dir_option
@json_option
@reports_errors
def apply_command(
    pfx_files: tuple[Path, ...],
    password_env: str | None,
    yes: bool,
    check: bool,
    journal_dir: Path | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Install the new certificate, restart nginx and verify; roll back on any failure.

    Shows the plan and asks first (--yes without a terminal). With --check nothing is changed:
    each precondition of the apply is tested on the host (exit 0 when all hold, 3 otherwise).

    \b
    Example:
      export PFX_PW=...
      cosdoc-certs svarut apply --host svarut01.kommune.no --user drift \\
          --pfx ssl-2026.pfx --password-env PFX_PW
    """
    from cosdoc_certs import svarut
    from cosdoc_certs._aio import run_sync

    target = svarut_target_from(options)
    splan = svarut.plan(target, _new_certificate(pfx_files, password_env))
    if not as_json:
        click.echo(splan.to_text())
    if check:
        found = run_sync(svarut.check_async(target, splan))
        if as_json:
            echo_json({"plan": splan.to_dict(), "check": found.to_dict()})
        else:
            click.echo(found.to_text())
        sys.exit(exit_code_for(found.worst))
    if not splan.is_empty:
        confirm_change(f"Apply this plan to {target.ssh.host}?", yes, "cosdoc-certs svarut plan")
    progress = progress_printer(as_json)
    result = svarut.apply(target, splan, journal_dir=journal_dir, progress=progress)
    if as_json:
        echo_json({"plan": splan.to_dict(), "result": result.to_dict()})
    else:
        click.echo(str(result))


@command.command("verify", short_help="Check the served certificate, the containers and prod.env.")
@svarut_target_options()
@click.option("--thumbprint", default=None, help="The thumbprint that should be served.")
@_pfx_option(required=False)
@password_env_option()
@json_option
@reports_errors
def verify_command(
    thumbprint: str | None,
    pfx_files: tuple[Path, ...],
    password_env: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Check the served certificate (by TLS), the containers and prod.env; exit code by findings."""
    from cosdoc_certs import svarut

    if pfx_files and not thumbprint:
        thumbprint = _new_certificate(pfx_files, password_env).thumbprint
    report = svarut.verify(svarut_target_from(options), thumbprint)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.to_text())
    sys.exit(exit_code_for(worst(report.findings)))


@command.command("rollback", short_help="Undo an apply from its journal.")
@svarut_target_options()
@click.option(
    "--journal",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The journal of the run to undo (default: the latest for --host).",
)
@click.option("--yes", is_flag=True, help="Do not ask before changing the host.")
@journal_dir_option
@json_option
@reports_errors
def rollback_command(
    journal: Path | None, yes: bool, journal_dir: Path | None, as_json: bool, **options: Any
) -> None:
    """Undo an apply: point prod.env back, remove the new files, restart, verify the old cert."""
    from cosdoc_certs import svarut
    from cosdoc_certs.svarut.apply import JOURNAL_KIND

    target = svarut_target_from(options)
    run = journal_to_undo(journal, journal_dir, host=target.ssh.host, kind=JOURNAL_KIND)
    confirm_rollback(run, yes, "cosdoc-certs svarut verify")
    result = svarut.rollback(target, run, progress=progress_printer(as_json))
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(str(result))
