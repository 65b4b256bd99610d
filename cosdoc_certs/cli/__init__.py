"""The ``cosdoc-certs`` command line: a thin layer over the library, one module per command."""

from __future__ import annotations

import click

from cosdoc_certs import __version__
from cosdoc_certs.cli._common import EXIT_CODES_HELP


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="cosdoc-certs")
def main() -> None:
    """Rotate the certificates of a CosDoc installation: inspect, plan, apply, verify, roll back.

    Start with `cosdoc-certs demo` to see a whole rotation against the built-in lab.
    """


# Each command module registers itself on `main` when imported.
# Convention: cosdoc_certs/cli/<name>.py defines `command` (a click.Command or Group) and is
# listed here; modules import nothing from this file, so there is no import cycle.
from cosdoc_certs.cli import inspect as _inspect  # noqa: E402

main.add_command(_inspect.command)
from cosdoc_certs.cli import export_public as _export_public  # noqa: E402

main.add_command(_export_public.command)
from cosdoc_certs.cli import make_test_certs as _make_test_certs  # noqa: E402

main.add_command(_make_test_certs.command)
from cosdoc_certs.cli import demo as _demo  # noqa: E402

main.add_command(_demo.command)
from cosdoc_certs.cli import lab as _lab  # noqa: E402

main.add_command(_lab.command)
from cosdoc_certs.cli import status as _status  # noqa: E402

main.add_command(_status.command)
from cosdoc_certs.cli import svarut as _svarut  # noqa: E402

main.add_command(_svarut.command)
