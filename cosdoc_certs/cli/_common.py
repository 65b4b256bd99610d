"""What every CLI command shares: exit codes, error reporting, passwords, JSON output.

Commands stay thin: they parse options, call the library and render. Domain errors become
one line on stderr and a meaningful exit code, never a traceback.
"""

from __future__ import annotations

import enum
import functools
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from cosdoc_certs.errors import CosDocCertsError, InputError
from cosdoc_certs.findings import DEFAULT_WARN_DAYS, Severity

if TYPE_CHECKING:  # imported where used: `cosdoc-certs --help` needs neither rich nor asyncio
    from cosdoc_certs.journal import Journal

F = TypeVar("F", bound=Callable[..., Any])


class ExitCode(enum.IntEnum):
    """The CLI's exit codes, documented in ``cosdoc-certs --help``."""

    OK = 0
    WARNINGS = 1  # checks found warnings (e.g. a certificate expires within the warning window)
    USAGE = 2  # click's own code for wrong options
    PROBLEMS = 3  # checks found errors (expired certificate, wrong role, unreadable key...)
    FAILED = 4  # could not do it: bad input, unreachable host, refused credentials
    ROLLED_BACK = 5  # apply failed and the host was restored to its original state
    NEEDS_HUMAN = 6  # apply failed and the rollback failed too: read the journal
    STOPPED = 130  # stopped by the user: "no" or Ctrl+C at a question, or Ctrl+C during a run


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 warnings found; 2 wrong usage; 3 problems found; "
    "4 could not do it (bad input, host unreachable); 5 apply failed and was rolled back; "
    "6 apply and rollback failed; 130 stopped by the user."
)


class OrderedGroup(click.Group):
    """A command group whose help lists its commands in the order they were added."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands in the order they were added (the order of the work)."""
        return list(self.commands)


def exit_code_for(severity: Severity | None) -> ExitCode:
    """The exit code a check command returns for the worst finding it made."""
    if severity is Severity.ERROR:
        return ExitCode.PROBLEMS
    if severity is Severity.WARNING:
        return ExitCode.WARNINGS
    return ExitCode.OK


# The library's errors name its parameters in backquotes; the command line's words for them.
# An SSH host's option is spelt with the `--svarut-` prefix where the command has one (rotate).
OPTION_FOR_PARAMETER = {
    "`password`": "--password-env VAR, or answer the password question",
    "`journal`": "--journal PATH",
    "`journal_dir`": "--journal-dir DIR",
    "`consumers`": "--consumers FILE",
    "`windows`": "--host",
    "`svarut`": "--svarut-host",
    "`name`": "--customer or --name",
    "`ConnectionOptions.ca_bundle`": "--ca-bundle FILE",
    "`SshOptions.host`": "--host",
    "`SshOptions.username`": "--user",
    "`SshOptions.client_keys`": "--identity FILE",
    "`SshOptions.pinned_host_key`": "--host-key",
    "`SvarutTarget.root`": "--root",
    "`SvarutTarget.layout`": "--layout single|samdrift",
}


def in_cli_words(message: str) -> str:
    """``message`` with each library parameter it names replaced by this command's option."""
    for parameter, option in OPTION_FOR_PARAMETER.items():
        if parameter in message:
            ssh_host = parameter.startswith(("`SshOptions.", "`SvarutTarget."))
            message = message.replace(parameter, _svarut_prefixed(option) if ssh_host else option)
    return message


def _svarut_prefixed(option: str) -> str:
    """``--host-key`` as the running command spells it (``--svarut-host-key`` in rotate)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return option
    names = {name for param in context.command.params for name in param.opts}
    flag, _, rest = option.partition(" ")
    prefixed = f"--svarut-{flag[2:]}"
    return f"{prefixed} {rest}".strip() if prefixed in names else option


def reports_errors(command: F) -> F:
    """Turn :class:`CosDocCertsError` into one line on stderr (in CLI words) and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CosDocCertsError as error:
            for line in error.lines():
                click.echo(f"error: {in_cli_words(line)}", err=True)
            sys.exit(error.exit_code)

    return wrapper  # type: ignore[return-value]


def stops_without_changes(name: str) -> Callable[[F], F]:
    """For a command that changes nothing: Ctrl+C or a signal says so (exit 130), not that
    something was restored."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt as interrupt:
                raise StoppedError(
                    f"stopped by {_signal_text(interrupt)} — {name} changes nothing, so "
                    "nothing needs restoring; run it again when you are ready"
                ) from None

        return wrapper  # type: ignore[return-value]

    return decorate


class StoppedError(click.ClickException):
    """The user stopped a command; its message says what that left behind."""

    exit_code = ExitCode.STOPPED


def use_utf8_output() -> None:
    """Write UTF-8 on stdout and stderr even under an ASCII locale (LC_ALL=C, cron, CI).

    Names, thumbprint notes and tables hold non-ASCII text; an ASCII stream would fail on
    the first of them. JSON stays valid UTF-8 for the program that reads it.
    """
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8")


def run_with_one_line_errors(run: Callable[[], Any]) -> NoReturn:
    """Run a click entry point (non-standalone) and exit; every failure is one stderr line.

    Wrong options, a "no" or Ctrl+C at a question, Ctrl+C during a run and unexpected
    errors each become one ``error: ...`` line with what to do, and their exit code. The
    traceback of an unexpected error is logged (shown with -v).
    """
    try:
        outcome = run()
    except click.UsageError as error:
        where = f" — see `{error.ctx.command_path} --help`" if error.ctx else ""
        _fail(f"{error.format_message().rstrip('.')}{where}", error.exit_code)
    except click.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except click.Abort as error:
        _fail(_stopped_message(error), ExitCode.STOPPED)
    except Exception as error:  # the last line of defence against a traceback
        import logging  # here: `--help` and the small commands need no logging

        logging.getLogger(__name__).info("unexpected error", exc_info=True)
        _fail(
            f"unexpected {type(error).__name__}: {error} — this is a bug in cosdoc-certs; "
            "run again with -v to see where, and report it",
            ExitCode.FAILED,
        )
    sys.exit(outcome if isinstance(outcome, int) else ExitCode.OK)


def _stopped_message(error: click.Abort) -> str:
    if isinstance(error.__cause__, KeyboardInterrupt):
        return (
            f"stopped by {_signal_text(error.__cause__)} — apply and rollback restore what "
            "they had changed before they stop (see the lines above); check with "
            "`cosdoc-certs status`"
        )
    if isinstance(error.__context__, (KeyboardInterrupt, EOFError)) and sys.stderr.isatty():
        click.echo(err=True)  # the question's line was left open
    return "stopped at the question — nothing was changed"


def _signal_text(interrupt: KeyboardInterrupt) -> str:
    """The signal that stopped the run: ``SIGTERM``, ``SIGHUP``, or Ctrl+C for SIGINT."""
    name = getattr(interrupt, "signal_name", "SIGINT")  # _signals.SignalReceived names its signal
    return "Ctrl+C (SIGINT)" if name == "SIGINT" else name


def _fail(message: str, exit_code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def read_password(
    password_env: str | None,
    prompt: str,
    *,
    required: bool = True,
    option: str = "--password-env",
) -> str | None:
    """A password from the environment variable ``password_env`` or a hidden prompt.

    Passwords are never taken from argv (process lists show argv to every user). ``option``
    is the command-line option that names the variable, for the hints.
    """
    if password_env:
        value = os.environ.get(password_env)
        if value is None:
            raise InputError(
                f"environment variable {password_env} is not set",
                f"export {password_env}=... first (or leave out {option})",
            )
        return value
    if not sys.stdin.isatty():
        if required:
            raise InputError(
                "a password is needed and there is no terminal to ask on",
                f"pass {option} VAR with the password in that environment variable",
            )
        return None
    value = click.prompt(prompt, hide_input=True, default="", show_default=False)
    return str(value)


def password_env_option(
    help_text: str = "Read the PFX password from this environment variable instead of prompting.",
) -> Callable[[F], F]:
    """The ``--password-env VAR`` option shared by commands that open PFX files."""
    return click.option("--password-env", metavar="VAR", default=None, help=help_text)


def journal_dir_option(command: F) -> F:
    """The ``--journal-dir DIR`` option of the commands that write or read run journals."""
    return click.option(
        "--journal-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where journals are kept (default $COSDOC_CERTS_JOURNAL_DIR or ~/.local/state).",
    )(command)


def confirm_change(
    question: str, yes: bool, review: str, *, change: str = "this changes the installation"
) -> None:
    """Ask before changing hosts; refuse without a terminal unless ``--yes``.

    ``change`` says what would be done, for the refusal (e.g. which run a rollback undoes).
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError(
            f"{change} and there is no terminal to confirm on",
            f"review `{review}` first, then run again with --yes",
        )
    click.confirm(question, abort=True, err=True)


def journal_to_undo(
    journal: Path | None, journal_dir: Path | None, *, host: str, kind: str
) -> Journal:
    """The run a rollback would undo (``journal``, else the latest undoable run on ``host``).

    Read before asking, so a missing or unreadable journal is reported first and the question
    names the run.
    """
    from cosdoc_certs import journal as journal_module

    if journal is not None:
        return journal_module.Journal.load(journal)
    return journal_module.latest_journal(journal_dir, host=host, kind=kind, undoable=True)


def confirm_rollback(run: Journal, yes: bool, review: str) -> None:
    """Ask before undoing ``run``, naming it (its host, start, outcome and journal)."""
    started = run.to_dict().get("started", "?")
    subject = f"the run of {run.host} started {started} ({run.outcome}, {run.path.name})"
    confirm_change(f"Roll back {subject}?", yes, review, change=f"rolling back {subject}")


def progress_printer(as_json: bool) -> Callable[[str], None]:
    """Progress lines on stderr (silent with --json)."""
    from rich.console import Console

    err = Console(stderr=True)

    def show(message: str) -> None:
        if not as_json:
            err.print(f"  • {message}", highlight=False, soft_wrap=True, markup=False)

    return show


warn_days_option = click.option(
    "--warn-days",
    type=click.IntRange(0),
    default=DEFAULT_WARN_DAYS,
    show_default=True,
    help="Warn about certificates that expire within this many days.",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


def echo_json(document: object) -> None:
    """Print ``document`` as indented JSON on stdout."""
    import json

    click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=str))
