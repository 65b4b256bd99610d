"""The ``cosdoc-certs`` command line: a thin layer over the library, one module per command.

Command modules are imported only when their command runs (``cosdoc-certs --help`` lists
them from :data:`COMMANDS` without importing any), so the help and small commands start fast
even though the lab and the remoting clients are heavy to import.
"""

from __future__ import annotations

import atexit
import functools
import gc
import importlib
from collections.abc import Sequence
from typing import Any

import click

from cosdoc_certs import __version__
from cosdoc_certs.cli._common import EXIT_CODES_HELP, run_with_one_line_errors, use_utf8_output

# name -> ("module[:attribute]" of the click command (default attribute `command`), the
# one-line help `cosdoc-certs --help` shows; tests check it matches the command's own help),
# in the runbook's order, which `cosdoc-certs --help` keeps
COMMANDS: dict[str, tuple[str, str]] = {
    "inspect": ("cosdoc_certs.cli.inspect", "Show the certificates in PFX/P12, PEM or DER files."),
    "status": ("cosdoc_certs.cli.status", "Show what every consumer uses and what is wrong."),
    "plan": (
        "cosdoc_certs.cli.rotate:plan_command",
        "Show what rotating the new certificates would change.",
    ),
    "apply": (
        "cosdoc_certs.cli.rotate:apply_command",
        "Rotate the installation: Windows, then SvarUT.",
    ),
    "verify": (
        "cosdoc_certs.cli.rotate:verify_command",
        "Check that a rotation took effect on every host.",
    ),
    "rollback": (
        "cosdoc_certs.cli.rotate:rollback_command",
        "Undo a rotation on every host it changed.",
    ),
    "svarut": ("cosdoc_certs.cli.svarut", "The SvarUT host's nginx certificate over SSH."),
    "inventory": ("cosdoc_certs.cli.inventory", "Check an inventory; status of every customer."),
    "export-public": (
        "cosdoc_certs.cli.export_public",
        "Write the public certificates as PEM/DER.",
    ),
    "make-test-certs": ("cosdoc_certs.cli.make_test_certs", "Write test certificates to a folder."),
    "lab": ("cosdoc_certs.cli.lab", "Run a simulated CosDoc server on 127.0.0.1."),
    "demo": ("cosdoc_certs.cli.demo", "Rotate a whole installation in the built-in lab."),
}

# Their DEBUG output shows raw PSRP messages, including the parameters' values.
_QUIET_LIBRARIES = ("pypsrp", "psrpcore", "asyncssh")


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is used."""

    def __init__(self, *args: object, lazy: dict[str, tuple[str, str]], **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, in the order of :data:`COMMANDS`, then any added eagerly."""
        return list(self.lazy) + [
            name for name in super().list_commands(ctx) if name not in self.lazy
        ]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module on first use."""
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = self.lazy[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute or "command")
        self.add_command(command, cmd_name)
        return command  # type: ignore[no-any-return]

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; standalone, every error is one line on stderr (no usage dump)."""
        run = functools.partial(
            super().main, args, prog_name, complete_var, standalone_mode=False, **extra
        )
        if not standalone_mode:
            return run()
        use_utf8_output()
        leave_objects_to_the_os_at_exit()
        run_with_one_line_errors(run)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands with their one-line help, without importing them."""
        rows = [(name, short) for name, (_, short) in self.lazy.items()]
        rows += [
            (name, command.get_short_help_str())
            for name, command in self.commands.items()
            if name not in self.lazy
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def leave_objects_to_the_os_at_exit() -> None:
    """At exit, skip the garbage collections Python runs while it shuts down.

    With pypsrp, asyncssh and cryptography loaded, those full collections take 60-90 ms of
    every command. ``gc.freeze()`` at exit moves every object to a generation the collector
    skips: an object whose last reference goes still gets its ``__del__`` (files are flushed
    and closed), only unreachable reference cycles are left to the operating system, which
    Python does not promise to finalize at exit anyway. Registered once per process.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def configure_logging(verbose: int) -> None:
    """With -v, our loggers at INFO (-vv: DEBUG) on stderr; the remoting libraries never DEBUG.

    Without -v nothing is configured: Python's last-resort handler shows warnings only.
    """
    if not verbose:
        return
    import logging  # here: without -v nothing needs it

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("cosdoc_certs").setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    for name in _QUIET_LIBRARIES:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))


@click.group(cls=LazyGroup, lazy=COMMANDS, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="cosdoc-certs")
@click.option("-v", "--verbose", count=True, help="Log what is done (-vv: in detail) on stderr.")
def main(verbose: int) -> None:
    """Rotate the certificates of a CosDoc installation: inspect, plan, apply, verify, roll back.

    Start with `cosdoc-certs demo` to see a whole rotation against the built-in lab.
    """
    configure_logging(verbose)
