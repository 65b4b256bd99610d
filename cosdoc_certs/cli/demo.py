"""``cosdoc-certs demo``: make fresh test certificates and inspect them, touching nothing else.

Generates a Buypass-like test pair as one PFX holding both keys, and an SSL certificate, in
a temporary folder that is removed afterwards, then shows them as ``inspect`` does.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

import click

from cosdoc_certs.certs import load_bundle
from cosdoc_certs.cli._common import exit_code_for, reports_errors
from cosdoc_certs.cli.inspect import console, render_bundle
from cosdoc_certs.lab.certs import write_test_files


@click.command("demo")
@reports_errors
def command() -> None:
    """Make a test Buypass pair (one two-key PFX) and an SSL certificate, and inspect them."""
    password = secrets.token_bytes(16).hex().encode()
    out = console()
    with tempfile.TemporaryDirectory(prefix="cosdoc-certs-demo-") as folder:
        files = write_test_files(Path(folder), password)
        out.print(
            f"Test certificates made: {files.pair_pfx.name} (both keys of the pair) and "
            f"{files.ssl_pfx.name}. cosdoc-certs inspect shows:"
        )
        bundle = load_bundle([files.pair_pfx, files.ssl_pfx], password)
    render_bundle(bundle, out)
    sys.exit(exit_code_for(bundle.worst_severity))
