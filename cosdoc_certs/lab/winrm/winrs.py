"""WinRS ``cmd`` shells of the lab endpoint: what pywinrm's ``run_ps`` and pypsrp's
``execute_cmd`` use.

A cmd shell runs one command line per Command request. The lab runs only
``powershell -encodedcommand <base64 of the UTF-16LE script>`` whose script is one of the
registry's (recognised by its marker line): its output becomes stdout text lines, its error
records stderr, a terminating error exit code 1. Any other program is answered as cmd.exe
answers an unknown command.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from dataclasses import dataclass

from cosdoc_certs.lab.winrm import wsman
from cosdoc_certs.lab.winrm.faults import ScriptRun
from cosdoc_certs.lab.winrm.psrp import Services
from cosdoc_certs.lab.winrm.scripts import (
    CommandSpec,
    ScriptCall,
    ScriptNotRecognised,
    as_text_lines,
)

log = logging.getLogger(__name__)

CMD_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
_POWERSHELL = ("powershell", "powershell.exe")
_ENCODED = ("-encodedcommand", "-enc", "-e", "-ec")


@dataclass(frozen=True)
class CommandOutput:
    """What one command line wrote, and how it ended."""

    stdout: bytes
    stderr: bytes
    exit_code: int


class CmdShell:
    """One WinRS cmd shell: commands run at once; Receive returns their whole output."""

    def __init__(self, shell_id: str, services: Services) -> None:
        self.shell_id = shell_id
        self._services = services
        self._lock = threading.Lock()
        self._outputs: dict[str, CommandOutput] = {}

    def command(self, command_id: str, command_line: str, arguments: list[str]) -> None:
        """Run a command line (``rsp:Command`` and its ``rsp:Arguments``)."""
        words = command_line.split() + arguments
        output = self._run(command_id, words)
        with self._lock:
            self._outputs[command_id] = output

    def receive(self, command_id: str) -> CommandOutput:
        """The command's output (once): the command has finished by the time it is asked."""
        with self._lock:
            output = self._outputs.pop(command_id, None)
        if output is None:
            raise wsman.command_not_found()
        return output

    def forget(self, command_id: str) -> None:
        """A Signal (terminate or Ctrl+C) for a command: nothing is left running."""
        with self._lock:
            self._outputs.pop(command_id, None)

    def close(self) -> None:
        """Forget every command's output."""
        with self._lock:
            self._outputs.clear()

    def _run(self, command_id: str, words: list[str]) -> CommandOutput:
        if not words:
            return CommandOutput(b"", b"", 0)
        program = words[0].lower()
        if program not in _POWERSHELL:
            text = (
                f"'{words[0]}' is not recognized as an internal or external command,\r\n"
                "operable program or batch file.\r\n"
            )
            return CommandOutput(b"", text.encode(), 1)
        script = _encoded_script(words[1:])
        if script is None:
            message = "The lab runs powershell only as: powershell -encodedcommand <script>\r\n"
            return CommandOutput(b"", message.encode(), 1)
        return self._run_script(command_id, script)

    def _run_script(self, command_id: str, script: str) -> CommandOutput:
        services = self._services
        try:
            dispatch = services.registry.dispatch([CommandSpec(script, is_script=True)])
        except ScriptNotRecognised as error:
            return CommandOutput(b"", f"{error.message}\r\n".encode(), 1)
        call = ScriptCall(dispatch.name)
        result = dispatch.handler(call)
        injected = services.faults.failure_of(dispatch.name)
        failure = (injected or result).terminating_error
        outcome = "Failed" if failure else "Completed"
        services.recorder.script_ran(ScriptRun(self.shell_id, command_id, call, outcome))
        stdout = "".join(f"{line}\r\n" for line in as_text_lines(result.output))
        errors = [*result.errors, *([failure] if failure else [])]
        stderr = "".join(f"{line}\r\n" for line in errors)
        return CommandOutput(stdout.encode("utf-8"), stderr.encode("utf-8"), 1 if failure else 0)


def _encoded_script(arguments: list[str]) -> str | None:
    """The script of ``-encodedcommand <base64 UTF-16LE>``, or None."""
    lowered = [argument.lower() for argument in arguments]
    for flag in _ENCODED:
        if flag in lowered:
            position = lowered.index(flag)
            if position + 1 < len(arguments):
                try:
                    data = base64.b64decode(arguments[position + 1], validate=True)
                    return data.decode("utf-16-le")
                except (binascii.Error, UnicodeDecodeError):
                    return None
    return None
