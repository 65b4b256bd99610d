"""Domain errors: every failure a user can meet says what went wrong and what to do next.

The CLI prints ``str(error)`` as one line and exits non-zero; library callers catch
:class:`CosDocCertsError`. Messages never carry secrets (passwords, keys, config values
that may hold connection strings).
"""

from __future__ import annotations

import re

# ``Password=…``/``Pwd=…`` in connection strings, env lines and JSON, as remote output may echo them
_PASSWORD_VALUE = re.compile(r"""(?i)(password|pwd)("?\s*[=:]\s*)("[^"]*"|'[^']*'|[^;,"'}\r\n]+)""")


def hide_passwords(text: str) -> str:
    """``text`` (remote output for a message) with the value of every ``Password=…`` hidden."""
    return _PASSWORD_VALUE.sub(r"\1\2<hidden>", text)


class CosDocCertsError(Exception):
    """Base of every error this package raises on purpose.

    ``problem`` says what was wrong, ``hint`` what the user can do about it.
    """

    exit_code = 4

    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(f"{problem} — {hint}" if hint else problem)

    def lines(self) -> list[str]:
        """One line per mistake (several when the input had several), for the CLI."""
        return [str(self)]


def problem_of(error: BaseException) -> str:
    """What went wrong, in words: our errors' problem; a stop said as a stop, not its class."""
    if isinstance(error, CosDocCertsError):
        return error.problem
    if isinstance(error, KeyboardInterrupt):  # SignalReceived's text names its signal
        return f"stopped by {error}" if str(error) else "stopped by Ctrl+C (SIGINT)"
    import asyncio  # here: the CLI's start does not load asyncio (it is loaded if cancelled)

    if isinstance(error, asyncio.CancelledError):
        return "stopped before it finished (the run was cancelled)"
    return str(error) or type(error).__name__


class InputError(CosDocCertsError):
    """A file, password, option or setting given by the user cannot be used."""


class CertificateLoadError(InputError):
    """A certificate or key file cannot be read (format, password, content)."""


class ThumbprintError(InputError):
    """A thumbprint is not 40 hex digits once invisible characters are removed."""


class ConfigFileError(InputError):
    """An appsettings.json or env file cannot be parsed or edited as asked."""


class RemoteError(CosDocCertsError):
    """A remote host could not be reached, refused us, or a remote step failed."""


class ApplyError(CosDocCertsError):
    """Applying a plan failed; the host was rolled back (see ``rolled_back``)."""

    exit_code = 5

    def __init__(self, problem: str, hint: str = "", *, rolled_back: bool = True) -> None:
        super().__init__(problem, hint)
        self.rolled_back = rolled_back
        if not rolled_back:
            self.exit_code = 6
