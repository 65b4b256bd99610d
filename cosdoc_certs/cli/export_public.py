"""``cosdoc-certs export-public FILE... --out DIR``: the public certificates, never a key.

Writes each leaf certificate as PEM (``<role>.pem``) and DER (``<role>.cer``), named by its
role, for upload to the NHN address register (E-meldinger) or to anyone who needs the public
part. Private keys are never written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cosdoc_certs.cli._common import echo_json, json_option, password_env_option, reports_errors
from cosdoc_certs.cli.inspect import load_bundle_asking_password
from cosdoc_certs.errors import InputError

if TYPE_CHECKING:  # imported where used: `--help` needs no cryptography
    from cosdoc_certs.certs import CertificateBundle, CertificateInfo


def export_public(
    bundle: CertificateBundle, folder: Path
) -> list[tuple[CertificateInfo, Path, Path]]:
    """Write every leaf of ``bundle`` as ``<name>.pem`` and ``<name>.cer`` into ``folder``."""
    from cryptography.hazmat.primitives import serialization

    if not bundle.certificates:
        raise InputError(
            "the files hold only CA certificates, nothing to export",
            "give the PFX or certificate files of the enterprise pair or the SSL certificate",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"cannot create the folder {folder} ({error.strerror})",
            "choose a folder you can write to with --out",
        ) from None
    written = []
    for info in bundle.certificates:
        stem = _file_stem(bundle, info)
        pem_path, der_path = folder / f"{stem}.pem", folder / f"{stem}.cer"
        _write(pem_path, info.certificate.public_bytes(serialization.Encoding.PEM))
        _write(der_path, info.certificate.public_bytes(serialization.Encoding.DER))
        written.append((info, pem_path, der_path))
    return written


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise InputError(
            f"cannot write {path} ({error.strerror})",
            "choose another folder with --out, or move what is in the way",
        ) from None


def _file_stem(bundle: CertificateBundle, info: CertificateInfo) -> str:
    """The role name, with the thumbprint's start when the role is not unique or unknown."""
    if info.role is not None and len(bundle.with_role(info.role)) == 1:
        return info.role.value
    return f"{info.role.value if info.role else 'certificate'}-{info.thumbprint[:8]}"


@click.command("export-public")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the public certificates to (created if missing).",
)
@password_env_option()
@json_option
@reports_errors
def command(files: tuple[Path, ...], folder: Path, password_env: str | None, as_json: bool) -> None:
    """Write the public certificates in FILES as PEM and DER (.cer), named by role.

    For the NHN address register (E-meldinger): upload signing.cer and encryption.cer.
    Private keys are never written.
    """
    bundle = load_bundle_asking_password(files, password_env)
    written = export_public(bundle, folder)
    if as_json:
        echo_json(
            [
                {
                    "role": info.role.value if info.role else None,
                    "thumbprint": info.thumbprint,
                    "serial_number": info.serial_number,
                    "pem": str(pem),
                    "der": str(der),
                }
                for info, pem, der in written
            ]
        )
        return
    for info, pem, der in written:
        click.echo(f"{info.role or 'unknown role'}: {der} and {pem} ({info.thumbprint})")
