"""What the simulated Windows server says when an operation fails, in Windows' own words.

The script twins turn a :class:`SimulatedWindowsError` into a PowerShell error record, so a
client sees the message, the FullyQualifiedErrorId and the HRESULT a real server would give.
"""

from __future__ import annotations

from cosdoc_certs.errors import RemoteError


class SimulatedWindowsError(RemoteError):
    """An operation on the simulated server failed the way it fails on Windows.

    ``message`` is the text Windows shows, ``error_id`` the PowerShell FullyQualifiedErrorId,
    ``category`` the PowerShell ErrorCategory name and ``hresult`` the Win32/COM code (0 if none).
    """

    def __init__(
        self,
        message: str,
        *,
        error_id: str,
        category: str = "NotSpecified",
        hresult: int = 0,
        target: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id
        self.category = category
        self.hresult = hresult
        self.target = target


class PathNotFoundError(SimulatedWindowsError):
    """A file or folder of the simulated server does not exist."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"Cannot find path '{path}' because it does not exist.",
            error_id="PathNotFound,Microsoft.PowerShell.Commands.GetContentCommand",
            category="ObjectNotFound",
            hresult=0x80070002,
            target=path,
        )
