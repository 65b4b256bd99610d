"""``cosdoc-certs make-test-certs --out DIR``: test certificates to try the tool safely.

Writes a Buypass-like test pair (two PFX files and one PFX holding both keys), an SSL
certificate (PFX, and PEM certificate + key for nginx) and the test CA, all issued by
"Buypass Class 3 CA 3 (TEST)". Never use these certificates in production.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import click

from cosdoc_certs.cli._common import password_env_option, read_password, reports_errors
from cosdoc_certs.errors import InputError
from cosdoc_certs.lab.certs import (
    DEFAULT_HOSTNAMES,
    DEFAULT_ORGANISATION,
    DEFAULT_ORGANISATION_NUMBER,
    TestFilesExistError,
    write_test_files,
)

_GENERATED_PASSWORD_BYTES = 12
_MAX_NAME_ATTRIBUTE = 64  # X.520 upper bound for O, CN and serialNumber
_DNS_NAME = re.compile(
    r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _subject_text(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A subject attribute: 1 to 64 characters."""
    if not 1 <= len(value.strip()) <= _MAX_NAME_ATTRIBUTE:
        raise click.BadParameter(f"give 1 to {_MAX_NAME_ATTRIBUTE} characters, not {value!r}")
    return value.strip()


def _dns_names(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """DNS names for the SSL certificate, e.g. cosdoc.testkommune.no or *.testkommune.no."""
    for value in values:
        if len(value) > 253 or not _DNS_NAME.fullmatch(value):
            raise click.BadParameter(f"{value!r} is not a DNS name (e.g. cosdoc.testkommune.no)")
    return values


@click.command("make-test-certs")
@click.option(
    "--out",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the files to (created if missing; existing files are not replaced).",
)
@password_env_option(
    "Protect the PFX files with the password in this environment variable "
    "(default: a generated password, printed once)."
)
@click.option(
    "--organisation",
    default=DEFAULT_ORGANISATION,
    show_default=True,
    callback=_subject_text,
    help="The customer's name in the certificates' subject (O=).",
)
@click.option(
    "--organisation-number",
    default=DEFAULT_ORGANISATION_NUMBER,
    show_default=True,
    callback=_subject_text,
    help="Its organisation number (the Buypass pair's serialNumber).",
)
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    default=DEFAULT_HOSTNAMES,
    show_default=True,
    callback=_dns_names,
    help="DNS name for the SSL certificate (repeat for more).",
)
@click.option("--legacy", is_flag=True, help="3DES/SHA-1 PFX files, for Windows before 2016.")
@click.option("--force", is_flag=True, help="Replace test files already in the folder.")
@reports_errors
def command(
    folder: Path,
    password_env: str | None,
    organisation: str,
    organisation_number: str,
    hostnames: tuple[str, ...],
    legacy: bool,
    force: bool,
) -> None:
    """Write a test Buypass pair, an SSL certificate and the test CA into a folder.

    Issued by a throwaway test CA: for trying inspect, plan and apply on a test server or
    the lab, never for production.

    \b
    Example:
      cosdoc-certs make-test-certs --out ./test-certs --organisation "Testkommune"
    """
    password = read_password(password_env, "PFX password") if password_env else None
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(_GENERATED_PASSWORD_BYTES)
    try:
        files = write_test_files(
            folder,
            password.encode("utf-8"),
            organisation=organisation,
            organisation_number=organisation_number,
            hostnames=hostnames,
            legacy=legacy,
            overwrite=force,
        )
    except TestFilesExistError as error:
        raise InputError(
            error.problem, "choose an empty folder for test certificates, or pass --force"
        ) from None
    for path in files.paths():
        click.echo(str(path))
    if generated:
        click.echo(f"Generated PFX password (shown only now): {password}")
    click.echo(f"Try: cosdoc-certs inspect {files.pair_pfx} {files.ssl_pfx}")
