"""Script dispatch for the lab's WinRM endpoint: which Python twin runs a pipeline's script.

The lab does not interpret PowerShell. The project's scripts are ``.ps1`` files whose first
line is a marker such as ``# cosdoc-certs-script: gather``; the endpoint reads the marker of
the pipeline's first command and calls the Python handler registered under that name with
the command's parameters and the pipeline input. Scripts without a marker (for instance the
ones pypsrp's ``Client.copy``/``Client.fetch`` send) can be recognised by their exact text.
Anything else fails the way PowerShell fails on an unknown command: a terminating error
record with a message that says what the lab could not run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

MARKER_PREFIX = "# cosdoc-certs-script:"
_MARKER = re.compile(r"^#\s*cosdoc-certs-script:\s*(?P<name>[A-Za-z0-9_.-]+)\s*$")
_NOT_RECOGNISED_TERM = (
    "The term '{0}' is not recognized as the name of a cmdlet, function, script file, or "
    "operable program. Check the spelling of the name, or if a path was included, verify "
    "that the path is correct and try again."
)
_FORMATTERS = {"out-string"}
_TABLE_KEY_WIDTH = 31


@dataclass(frozen=True)
class ScriptCall:
    """One run of a lab script: its name, its parameters and the pipeline input.

    ``parameters`` holds the values of ``add_parameter`` (decoded to str, int, bool, bytes,
    list, dict), ``arguments`` the positional values of ``add_argument``. Values may be
    secrets (PFX passwords), so the repr shows parameter names only.
    """

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    input: list[Any] = field(default_factory=list)
    arguments: list[Any] = field(default_factory=list)

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.parameters))
        return (
            f"ScriptCall(name={self.name!r}, parameters=[{names}], "
            f"arguments={len(self.arguments)}, input={len(self.input)})"
        )


@dataclass
class ScriptResult:
    """What a lab script produced: output objects, error records, or a terminating error.

    ``errors`` are non-terminating (each becomes an ErrorRecord in ``streams.error`` while the
    pipeline still completes); ``terminating_error`` fails the pipeline with that message.
    Their records point at line ``error_line`` of the script (``At line:N char:M``).
    """

    output: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    terminating_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    error_line: int = 1


ScriptHandler = Callable[[ScriptCall], ScriptResult]


@dataclass(frozen=True)
class CommandSpec:
    """One command of a received pipeline, reduced to what dispatch needs."""

    text: str
    is_script: bool
    parameters: tuple[tuple[str | None, Any], ...] = ()
    end_of_statement: bool = True
    use_local_scope: bool | None = None  # None: PowerShell runs a script in the global scope


@dataclass(frozen=True)
class Dispatch:
    """The handler a pipeline resolved to, with the command's parameters and output shape."""

    name: str
    handler: ScriptHandler
    parameters: dict[str, Any]
    arguments: list[Any]
    as_text: bool


class ScriptNotRecognised(Exception):
    """The pipeline asks for something the lab cannot run; becomes a terminating error.

    ``category`` names a PowerShell ErrorCategory, ``exception_type`` the .NET exception.
    """

    def __init__(
        self,
        message: str,
        error_id: str,
        category: str,
        exception_type: str = "System.Management.Automation.RuntimeException",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id
        self.category = category
        self.exception_type = exception_type


def _command_not_found(command: str) -> ScriptNotRecognised:
    return ScriptNotRecognised(
        _NOT_RECOGNISED_TERM.format(command.split("\n", 1)[0][:80]),
        "CommandNotFoundException",
        "ObjectNotFound",
        "System.Management.Automation.CommandNotFoundException",
    )


def script_name(script_text: str) -> str | None:
    """Return the name in the script's first-line marker, or None if it has none."""
    first_line = script_text.lstrip("\ufeff \t\r\n").split("\n", 1)[0].strip()
    match = _MARKER.match(first_line)
    return match.group("name") if match else None


def _normalise(script_text: str) -> str:
    return "\n".join(line.strip() for line in script_text.strip().splitlines() if line.strip())


class ScriptRegistry:
    """Python handlers for the scripts the lab can run, by marker name. Thread-safe."""

    def __init__(self) -> None:
        self._handlers: dict[str, ScriptHandler] = {}
        self._known_texts: dict[str, str] = {}
        self._lock = threading.Lock()

    def register(self, name: str, handler: ScriptHandler) -> None:
        """Run ``handler`` for every pipeline whose script carries the marker ``name``."""
        if not _MARKER.match(f"{MARKER_PREFIX} {name}"):
            raise ValueError(f"script name {name!r} must be letters, digits, '.', '_' or '-'")
        with self._lock:
            self._handlers[name] = handler

    def recognise(self, script_text: str, name: str) -> None:
        """Treat a script without a marker as ``name`` when its text matches exactly."""
        with self._lock:
            self._known_texts[_normalise(script_text)] = name

    def names(self) -> list[str]:
        """The registered script names, sorted."""
        with self._lock:
            return sorted(self._handlers)

    def dispatch(self, commands: Sequence[CommandSpec]) -> Dispatch:
        """Resolve a pipeline's commands to a handler, or raise ScriptNotRecognised."""
        statement = _first_statement(commands)
        first, rest = statement[0], statement[1:]
        script_text, parameters, arguments = _script_of(first)
        name = self._name_of(script_text)
        with self._lock:
            handler = self._handlers.get(name)
        if handler is None:
            known = ", ".join(self.names()) or "none"
            raise ScriptNotRecognised(
                f"The script '{name}' is not known to the lab: no handler is registered for it "
                f"(known: {known}).",
                "ScriptNotKnownToLab",
                "ObjectNotFound",
            )
        return Dispatch(name, handler, parameters, arguments, _pipes_to_formatter(rest))

    def _name_of(self, script_text: str) -> str:
        name = script_name(script_text)
        if name is not None:
            return name
        with self._lock:
            known = self._known_texts.get(_normalise(script_text))
        if known is not None:
            return known
        first_line = script_text.strip().split("\n", 1)[0][:80]
        raise ScriptNotRecognised(
            "The lab cannot run this script: its first line is not a "
            f"'{MARKER_PREFIX} <name>' marker (first line: '{first_line}'). The lab runs "
            "Python twins of the project's scripts; it does not interpret PowerShell.",
            "ScriptNotRecognisedByLab",
            "NotImplemented",
        )


def _first_statement(commands: Sequence[CommandSpec]) -> list[CommandSpec]:
    if not commands:
        raise ScriptNotRecognised("The pipeline has no command.", "EmptyPipeline", "InvalidData")
    statement: list[CommandSpec] = []
    for command in commands:
        statement.append(command)
        if command.end_of_statement:
            break
    if len(statement) < len(commands):
        extra = commands[len(statement)].text.split("\n", 1)[0][:80]
        raise ScriptNotRecognised(
            f"The lab runs one statement per pipeline; a further statement ('{extra}') was sent.",
            "MultipleStatementsNotSupportedByLab",
            "NotImplemented",
        )
    return statement


def _script_of(command: CommandSpec) -> tuple[str, dict[str, Any], list[Any]]:
    parameters = {name: value for name, value in command.parameters if name is not None}
    arguments = [value for name, value in command.parameters if name is None]
    if command.is_script:
        return command.text, parameters, arguments
    if command.text.lower() == "invoke-expression":
        text = next((v for k, v in parameters.items() if k.lower() == "command"), None)
        if text is None and arguments:
            text = arguments[0]
        if isinstance(text, str):
            return text, {}, []
    raise _command_not_found(command.text)


def _pipes_to_formatter(rest: Sequence[CommandSpec]) -> bool:
    for command in rest:
        if command.is_script or command.text.lower() not in _FORMATTERS:
            raise _command_not_found(command.text)
    return bool(rest)


def as_text_lines(values: Iterable[Any]) -> list[str]:
    """Render output objects as ``Out-String -Stream`` would: one string per line."""
    lines: list[str] = []
    for value in values:
        lines.extend(_text_lines(value))
    return lines


def _text_lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return [str(value)]
    if isinstance(value, (bytes, bytearray)):
        return [str(b) for b in value]
    if isinstance(value, dict):
        return _table_lines(value)
    if isinstance(value, (list, tuple)):
        return as_text_lines(value)
    return str(value).splitlines() or [""]


def _table_lines(table: dict[Any, Any]) -> list[str]:
    width = _TABLE_KEY_WIDTH
    rows = [f"{'Name':<{width}}Value", f"{'----':<{width}}-----"]
    rows.extend(f"{key!s:<{width}}{value}" for key, value in table.items())
    return ["", *rows, ""]


FileReader = Callable[[str], bytes]
FileWriter = Callable[[str, bytes], str]


def register_pypsrp_file_transfer(
    registry: ScriptRegistry, read: FileReader, write: FileWriter
) -> None:
    """Let pypsrp's ``Client.fetch``/``Client.copy`` work against the lab.

    Their scripts carry no marker; they are recognised by their text (as pypsrp sends it) and
    run as ``pypsrp-fetch``/``pypsrp-copy``. ``read(path)`` returns a file's bytes (raising
    FileNotFoundError if it is missing); ``write(path, data)`` stores them and returns the
    absolute path.
    """
    from pypsrp._utils import get_pwsh_script  # the exact text Client.copy/fetch send

    registry.recognise(get_pwsh_script("copy.ps1"), "pypsrp-copy")
    registry.recognise(get_pwsh_script("fetch.ps1"), "pypsrp-fetch")
    registry.register("pypsrp-copy", lambda call: _copy(call, write))
    registry.register("pypsrp-fetch", lambda call: _fetch(call, read))


def _copy(call: ScriptCall, write: FileWriter) -> ScriptResult:
    if not call.arguments or not call.input:
        return ScriptResult(terminating_error="copy needs a destination and file data")
    try:
        chunks = [base64.b64decode(str(chunk)) for chunk in call.input]
    except binascii.Error:
        return ScriptResult(terminating_error="Transport failure, the data is not base64")
    data, expected = b"".join(chunks[:-1]), chunks[-1].decode("ascii", "replace")
    actual = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    if actual != expected:
        return ScriptResult(
            terminating_error=f"Transport failure, hash mismatch\r\nActual: {actual}\r\n"
            f"Expected: {expected}"
        )
    return ScriptResult(output=[write(str(call.arguments[0]), data)])


def _fetch(call: ScriptCall, read: FileReader) -> ScriptResult:
    if not call.arguments:
        return ScriptResult(terminating_error="fetch needs a source path")
    path = str(call.arguments[0])
    try:
        data = read(path)
    except (FileNotFoundError, IsADirectoryError):
        return ScriptResult(terminating_error=f"The path at '{path}' does not exist")
    digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    return ScriptResult(output=[base64.b64encode(data).decode("ascii"), digest])
