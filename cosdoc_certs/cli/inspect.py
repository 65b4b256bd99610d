"""``cosdoc-certs inspect FILE...``: show what certificate files hold, as a person checks them.

One column per certificate: role, «Utstedt til» (Issued to) with the organisation number,
serial number, issuer, validity, days left, thumbprint, key usages, private key yes/no and
the findings — the facts the E-meldinger step (DIPS Communicator) asks to compare with the
issuer's information. The exit code follows the worst finding.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cosdoc_certs.cli._common import (
    echo_json,
    exit_code_for,
    json_option,
    password_env_option,
    read_password,
    reports_errors,
    warn_days_option,
)
from cosdoc_certs.findings import DEFAULT_WARN_DAYS, Severity

if TYPE_CHECKING:  # imported where used: `--help` needs neither rich nor the certificate core
    from rich.console import Console
    from rich.table import Table

    from cosdoc_certs.certs import CertificateBundle, CertificateInfo

ROLE_TITLES = {  # by Role's value
    "signing": "signing (Non-Repudiation)",
    "encryption": "encryption / authentication",
    "ssl": "SSL",
}
_SEVERITY_STYLES = {Severity.INFO: "cyan", Severity.WARNING: "yellow", Severity.ERROR: "bold red"}
_MIN_PIPE_WIDTH = 160
_PASSWORD_TRIES = 3
E_MELDINGER_NOTE = (
    "E-meldinger (DIPS Communicator): select the signing certificate and the "
    "authentication (encryption) certificate, then compare serial number, validity dates and "
    "«Utstedt til» (Issued to) with the issuer's information."
)


def load_bundle_asking_password(
    paths: Sequence[Path],
    password_env: str | None,
    *,
    warn_days: int = DEFAULT_WARN_DAYS,
    now: datetime.datetime | None = None,
) -> CertificateBundle:
    """Load ``paths``; ask for a password (or read ``password_env``) only if a file needs one.

    On a terminal a wrong password is asked for again, up to three tries.
    """
    from cosdoc_certs.certs import PasswordRequiredError, WrongPasswordError, load_bundle

    if password_env:
        password = read_password(password_env, "PFX password")
        return load_bundle(paths, password, now=now, warn_days=warn_days)
    try:
        return load_bundle(paths, None, now=now, warn_days=warn_days)
    except PasswordRequiredError:
        pass
    for attempt in range(1, _PASSWORD_TRIES + 1):
        password = read_password(None, "PFX password")
        try:
            return load_bundle(paths, password, now=now, warn_days=warn_days)
        except WrongPasswordError as error:
            if attempt == _PASSWORD_TRIES:
                raise
            click.echo(f"{error.problem}; try again.", err=True)
    raise AssertionError("unreachable")  # pragma: no cover


def console() -> Console:
    """A rich console on stdout, wide enough that thumbprints never wrap when piped."""
    from rich.console import Console

    terminal = Console()
    if terminal.is_terminal:
        return terminal
    return Console(width=max(terminal.width, _MIN_PIPE_WIDTH))


def render_bundle(bundle: CertificateBundle, out: Console) -> None:
    """Print the certificate table, the chain and the findings."""
    from rich.markup import escape

    from cosdoc_certs.certs import Role
    from cosdoc_certs.certs.model import name_text

    if bundle.certificates:
        out.print(_table(bundle))
    else:
        out.print("No end-entity certificates in the files, only CA certificates.")
    for certificate in bundle.chain:
        subject = escape(name_text(certificate.subject))
        out.print(f"Chain: {subject} (valid to {certificate.not_valid_after_utc:%Y-%m-%d})")
    if any(info.role in (Role.SIGNING, Role.ENCRYPTION) for info in bundle.certificates):
        out.print(E_MELDINGER_NOTE)
    for finding in bundle.findings:
        style = _SEVERITY_STYLES[finding.severity]
        where = f"{finding.subject}: " if finding.subject else ""
        text = escape(f"{finding.code}: {where}{finding.message}")
        out.print(f"[{style}]{finding.severity}[/{style}] {text}", highlight=False)
    if not bundle.findings:
        out.print("[green]No findings.[/green]")


def _table(bundle: CertificateBundle) -> Table:
    """One column per certificate, one row per fact."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Certificates", show_lines=True)
    table.add_column("", style="bold", no_wrap=True)
    for number in range(1, len(bundle.certificates) + 1):
        table.add_column(f"#{number}", overflow="fold")
    for label, values in _rows(bundle):
        table.add_row(label, *(escape(value) for value in values))
    return table


def _rows(bundle: CertificateBundle) -> list[tuple[str, list[str]]]:
    infos = bundle.certificates
    return [
        ("Role", [ROLE_TITLES[info.role] if info.role else "unknown" for info in infos]),
        ("Utstedt til / Issued to", [info.issued_to for info in infos]),
        ("Organisation number", [info.organisation_number or "-" for info in infos]),
        ("Subject", [info.subject for info in infos]),
        ("Serial number", [info.serial_number for info in infos]),
        ("Utstedt av / Issued by", [info.issued_by for info in infos]),
        ("Valid from", [f"{info.not_before:%Y-%m-%d %H:%M} UTC" for info in infos]),
        ("Valid to", [f"{info.not_after:%Y-%m-%d %H:%M} UTC" for info in infos]),
        ("Days left", [str(info.days_left()) for info in infos]),
        ("Thumbprint", [info.thumbprint for info in infos]),
        ("Key usage", [", ".join(info.key_usage) or "-" for info in infos]),
        ("Extended key usage", [", ".join(info.extended_key_usage) or "-" for info in infos]),
        ("DNS names", [", ".join(info.dns_names) or "-" for info in infos]),
        ("Private key", ["yes" if info.has_private_key else "no" for info in infos]),
        ("Key provider (PFX)", [info.key_provider or "-" for info in infos]),
        ("File", [info.source for info in infos]),
        ("Findings", [_findings_of(bundle, info) for info in infos]),
    ]


def _findings_of(bundle: CertificateBundle, info: CertificateInfo) -> str:
    codes = [finding.code for finding in bundle.findings if finding.subject == info.label]
    return ", ".join(codes) or "-"


@click.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@password_env_option()
@warn_days_option
@json_option
@reports_errors
def command(
    files: tuple[Path, ...], password_env: str | None, warn_days: int, as_json: bool
) -> None:
    """Show the certificates in PFX/P12, PEM or DER FILES: roles, keys, dates, thumbprints.

    The password is asked for only when a file needs one (or read from --password-env VAR).
    Exit code 0 when all is well, 1 with warnings, 3 with problems (expired, wrong usage...).
    Run it on the files from Buypass before anything else: it tells which file holds the
    signing and encryption pair and which the SSL certificate.

    \b
    Example:
      cosdoc-certs inspect signing+encryption.pfx ssl.pfx
    """
    bundle = load_bundle_asking_password(files, password_env, warn_days=warn_days)
    if as_json:
        echo_json(bundle.to_dict())
    else:
        render_bundle(bundle, console())
    sys.exit(exit_code_for(bundle.worst_severity))
