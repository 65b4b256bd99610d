"""What Windows PowerShell 5.1 puts in the PSRP messages it sends, on psrpcore's server side.

Compared with pypsrp's recordings of real servers (``tests/tests_pypsrp/responses/*.yml`` in
jborean93/pypsrp), psrpcore alone differs in ways a client could trip over. This module
closes those gaps:

- every message the server sends starts its XML with the UTF-8 byte order mark;
- the session data (APPLICATION_PRIVATE_DATA) carries ``PSVersionTable`` with PSVersion,
  CLRVersion and BuildVersion;
- an error record carries ``InvocationInfo`` with the script position (``At line:N char:M``);
- the first command of a session reports "Preparing modules for first use." as progress.
"""

from __future__ import annotations

import uuid
from typing import Any

from psrpcore import ServerPipeline, ServerRunspacePool, StreamType
from psrpcore.types import (
    CommandOrigin,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    InvocationInfo,
    NETException,
    ProgressRecordType,
    PSInvocationState,
    PSObject,
    PSRPMessageType,
    PSVersion,
)

UTF8_BOM = b"\xef\xbb\xbf"
_HEADER = 40  # destination (4), message type (4), runspace pool id (16), pipeline id (16)

POWERSHELL_VERSION = "5.1.20348.2849"
"""Windows PowerShell on an up-to-date Windows Server 2022 (build 20348)."""
_CLR_VERSION = "4.0.30319.42000"  # .NET Framework 4.6 and later report this
_FIRST_USE = "Preparing modules for first use."
_RUNTIME_EXCEPTION = "System.Management.Automation.RuntimeException"
_WRITE_ERROR = "Microsoft.PowerShell.Commands.WriteErrorException"
_SHOWN = 66  # a position message shows this much of a long line, then " ..."


class WindowsRunspacePool(ServerRunspacePool):
    """psrpcore's server runspace pool, sending what Windows sends: each message's XML after
    a UTF-8 BOM, and a ``PSVersionTable`` in the session data."""

    def __init__(self, powershell_version: str = POWERSHELL_VERSION) -> None:
        super().__init__(application_private_data=session_data(powershell_version))

    def prepare_message(
        self,
        message: PSObject | None,
        message_type: PSRPMessageType | None = None,
        pipeline_id: uuid.UUID | None = None,
        stream_type: StreamType = StreamType.default,
    ) -> None:
        """Queue ``message`` as psrpcore does, then put the BOM before its XML (psrpcore's
        send buffer is private: psrpcore is pinned for this)."""
        super().prepare_message(message, message_type, pipeline_id, stream_type)
        queued = self._send_buffer[-1]
        if len(queued) > _HEADER:
            queued._data[_HEADER:_HEADER] = UTF8_BOM


def session_data(powershell_version: str) -> dict[str, Any]:
    """APPLICATION_PRIVATE_DATA as Windows PowerShell sends it: its ``$PSVersionTable``."""
    build = powershell_version.split(".", 2)[2] if powershell_version.count(".") >= 2 else "0"
    compatible = ["1.0", "2.0", "3.0", "4.0", "5.0", powershell_version]
    major_minor = tuple(int(part) for part in powershell_version.split(".")[:2])
    return {
        "PSVersionTable": {
            "PSVersion": PSVersion(powershell_version),
            "PSEdition": "Desktop",
            "PSCompatibleVersions": [
                PSVersion(version)
                for version in compatible
                if tuple(int(p) for p in version.split(".")[:2]) <= major_minor
            ],
            "CLRVersion": PSVersion(_CLR_VERSION),
            "BuildVersion": PSVersion(f"10.0.{build}"),
            "WSManStackVersion": PSVersion("3.0"),
            "PSRemotingProtocolVersion": PSVersion("2.3"),
            "SerializationVersion": PSVersion("1.1.0.1"),
        }
    }


def first_use_progress(server: ServerPipeline) -> None:
    """The progress record a session's first command reports while PowerShell loads its
    modules (as recorded: activity id 0, status " ", type Completed)."""
    server.write_progress(_FIRST_USE, 0, " ", record_type=ProgressRecordType.Completed)


def position(script: str, line: int) -> InvocationInfo:
    """Where a statement at ``line`` (1-based) of ``script`` is, as PowerShell reports it for
    a script sent as text (no file name): line, column, and the position message."""
    lines = script.splitlines() or [""]
    line = min(max(line, 1), len(lines))
    text = lines[line - 1]
    column = len(text) - len(text.lstrip()) + 1
    statement = text.strip()
    shown = statement if len(statement) <= _SHOWN + 4 else statement[:_SHOWN] + " ..."
    marker = " " * (column - 1) + "~" * min(len(statement), _SHOWN + 4)
    message = f"At line:{line} char:{column}\r\n+ {' ' * (column - 1)}{shown}\r\n+ {marker}"
    return InvocationInfo(
        BoundParameters={},
        CommandOrigin=CommandOrigin.Internal,
        ExpectingInput=False,
        HistoryId=-1,
        InvocationName="",
        Line=text + "\n",
        OffsetInLine=column,
        PipelineLength=0,
        PipelinePosition=0,
        PositionMessage=message,
        PSScriptRoot="",
        ScriptLineNumber=line,
        ScriptName="",
        UnboundArguments=[],
    )


def exception(message: str, dotnet_type: str = _RUNTIME_EXCEPTION) -> NETException:
    """A .NET exception of ``dotnet_type`` with ``message``."""
    error = NETException(Message=message, HResult=-2146233087)
    error.PSObject.type_names = [dotnet_type, "System.Exception", "System.Object"]
    return error


def write_error(server: ServerPipeline, message: str, where: InvocationInfo | None) -> None:
    """A non-terminating error as ``Write-Error`` writes it (with its position)."""
    server.write_error(
        exception(message, _WRITE_ERROR),
        ErrorCategoryInfo(
            Category=ErrorCategory.NotSpecified,
            Activity="Write-Error",
            Reason="WriteErrorException",
        ),
        fully_qualified_error_id=_WRITE_ERROR,
        invocation_info=where,
        pipeline_iteration_info=[0, 0],
        script_stack_trace=_stack_trace(where),
    )


def fail(
    server: ServerPipeline,
    message: str,
    category: str,
    error_id: str = "",
    exception_type: str = _RUNTIME_EXCEPTION,
    where: InvocationInfo | None = None,
) -> None:
    """End the pipeline with a terminating error, as a ``throw`` in a script does: state
    Failed with the error record, its InvocationInfo and script stack trace."""
    record = ErrorRecord(
        Exception=exception(message, exception_type),
        CategoryInfo=ErrorCategoryInfo(
            Category=ErrorCategory[category], Reason=exception_type.rsplit(".", 1)[-1]
        ),
        FullyQualifiedErrorId=error_id or message,
        InvocationInfo=where,
        ScriptStackTrace=_stack_trace(where),
    )
    # psrpcore has no public way to fail a pipeline; psrpcore is pinned for this call.
    server._change_state(PSInvocationState.Failed, error=record)


def _stack_trace(where: InvocationInfo | None) -> str | None:
    if where is None:
        return None
    return f"at <ScriptBlock>, <No file>: line {where.ScriptLineNumber}"
