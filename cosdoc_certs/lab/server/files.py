"""The simulated server's file system: real files under a local folder, addressed by Windows paths.

``C:\\Program Files\\DIPS\\x\\appsettings.json`` lives at ``<root>/C/Program Files/DIPS/x/
appsettings.json``. Lookups are case-insensitive like NTFS: an existing file or folder is
found whatever the case of the path asked for, and a new one keeps the case it was written
with. Absolute drive paths (``X:\\...``, either slash) and UNC paths (``\\\\server\\share\\...``,
kept under ``<root>/UNC/server/share``) are accepted.

The remoting session that runs the scripts does not see every file the way the services do
(:meth:`WindowsFileSystem.read_in_session`, :meth:`WindowsFileSystem.test_path`): a file whose
ACL leaves out the administrators (``denied``) cannot be read and ``Test-Path`` says it is not
there; a file another process holds open without sharing (``locked``) cannot be read; a UNC
path is a second hop, which the session's credentials do not reach without Kerberos delegation
or CredSSP — access denied, and ``Test-Path`` says False. ``Join-Path`` asks the file-system
provider, which throws for a drive letter the server does not have (:meth:`join_path`).

Files carry the attributes that matter to a write (``ReadOnly``, ``Hidden``):
:meth:`WindowsFileSystem.write_all_bytes` fails on them as .NET's ``File.WriteAllBytes``
does (``CreateFile`` with ``CREATE_ALWAYS`` is denied on a read-only file and on a hidden
or system file), while :meth:`WindowsFileSystem.write` is the lab's own setter. A file
whose ACL denies the administrators write (:meth:`WindowsFileSystem.deny_write`) refuses
``File.WriteAllBytes`` whatever its attributes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from cosdoc_certs.lab.server.errors import PathNotFoundError, SimulatedWindowsError

logger = logging.getLogger(__name__)

_DRIVE_PATH = re.compile(r"^([A-Za-z]):[\\/](.*)$", re.DOTALL)
_UNC_PATH = re.compile(r"^[\\/]{2}([^\\/]+[\\/][^\\/]+)(?:[\\/](.*))?$", re.DOTALL)
UNAUTHORIZED = "System.UnauthorizedAccessException"
IO_EXCEPTION = "System.IO.IOException"
_DENIED = ("Access to the path '{path}' is denied.", UNAUTHORIZED, "PermissionDenied", 0x80070005)
_LOCKED = (
    "The process cannot access the file '{path}' because it is being used by another process.",
    IO_EXCEPTION,
    "ReadError",
    0x80070020,
)
_NO_FOLDER = (
    "Could not find a part of the path '{path}'.",
    "System.IO.DirectoryNotFoundException",
    "ObjectNotFound",
    0x80070003,
)
_NO_FILE = (
    "Could not find file '{path}'.",
    "System.IO.FileNotFoundException",
    "ObjectNotFound",
    0x80070002,
)
_FORBIDDEN_NAMES = frozenset({"", ".", ".."})
BLOCKING_ATTRIBUTES = frozenset({"ReadOnly", "Hidden", "System"})
"""Attributes on which ``File.WriteAllBytes`` (CREATE_ALWAYS) is denied."""


class WindowsFileSystem:
    """Files of one simulated Windows server, kept as real files under ``root``."""

    def __init__(self, root: Path, write_failure: Callable[[], str | None] = lambda: None):
        self.root = root
        self._write_failure = write_failure  # a full disk or read-only volume (lab faults)
        root.mkdir(parents=True, exist_ok=True)
        self._attributes: dict[Path, frozenset[str]] = {}
        self.drives: set[str] = {"C", "D"}
        self.denied: set[str] = set()
        self.locked: set[str] = set()
        self._write_denied: set[Path] = set()

    def read_in_session(self, path: str) -> bytes:
        """``[IO.File]::ReadAllBytes`` in the remoting session (see the module docstring)."""
        problem = self._session_problem(path)
        if problem is not None:
            message, error_id, category, hresult = problem
            raise SimulatedWindowsError(
                message.replace("{path}", path),
                error_id=error_id,
                category=category,
                hresult=hresult,
                target=path,
            )
        return self.read(path)

    def _session_problem(self, path: str) -> tuple[str, str, str, int] | None:
        """What .NET throws when the session reads ``path``: message, type, category, HRESULT."""
        folded = path.casefold()
        if folded in self.denied or _UNC_PATH.match(path):
            return _DENIED
        if folded in self.locked:
            return _LOCKED
        if not self.drive_exists(path):
            return _NO_FOLDER
        return None if self.is_file(path) else _NO_FILE

    def test_path(self, path: str) -> bool:
        """``Test-Path -PathType Leaf`` in the session: False when it cannot see the file."""
        if path.casefold() in self.denied or _UNC_PATH.match(path) or not self.drive_exists(path):
            return False
        return self.is_file(path)

    def drive_exists(self, path: str) -> bool:
        """True for a UNC path or a path on a drive letter this server has."""
        match = _DRIVE_PATH.match(path)
        return match is None or match.group(1).upper() in self.drives

    def join_path(self, folder: str, child: str) -> str:
        """``Join-Path``: like :func:`windows_join`, but the drive must exist (provider check)."""
        if not self.drive_exists(folder):
            drive = folder[:1].upper()
            raise SimulatedWindowsError(
                f"Cannot find drive. A drive with the name '{drive}' does not exist.",
                error_id="DriveNotFound,Microsoft.PowerShell.Commands.JoinPathCommand",
                category="ObjectNotFound",
                target=drive,
            )
        return windows_join(folder, child)

    def real_path(self, path: str) -> Path:
        """The local file that holds the Windows ``path`` (resolved case-insensitively)."""
        drive, parts = _split(path)
        current = self.root / drive
        for part in parts:
            current = _child(current, part)
        return current

    def exists(self, path: str) -> bool:
        """True if ``path`` names an existing file or folder."""
        return self.real_path(path).exists()

    def is_file(self, path: str) -> bool:
        """True if ``path`` names an existing file."""
        return self.real_path(path).is_file()

    def read(self, path: str) -> bytes:
        """The bytes of the file ``path``; :class:`PathNotFoundError` if there is none."""
        real = self.real_path(path)
        if not real.is_file():
            raise PathNotFoundError(path)
        return real.read_bytes()

    def write(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path``, creating missing folders (keeps an existing name's case)."""
        real = self.real_path(path)
        refused = self._write_failure()
        if refused is not None:
            raise SimulatedWindowsError(
                refused, error_id="System.IO.IOException", category="WriteError", target=path
            )
        if real.is_dir():
            raise SimulatedWindowsError(
                f"Access to the path '{path}' is denied.",
                error_id="UnauthorizedAccess,Microsoft.PowerShell.Commands.SetContentCommand",
                category="PermissionDenied",
                hresult=0x80070005,
                target=path,
            )
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(data)
        logger.debug("wrote %d bytes to %s", len(data), path)

    def write_all_bytes(self, path: str, data: bytes) -> None:
        """``[System.IO.File]::WriteAllBytes``: denied on an existing ReadOnly or Hidden file."""
        denied = self.write_denied(path)
        if denied or (self.is_file(path) and self.attributes(path) & BLOCKING_ATTRIBUTES):
            raise SimulatedWindowsError(
                f"Access to the path '{path}' is denied.",
                error_id="UnauthorizedAccessException",
                category="PermissionDenied",
                hresult=0x80070005,
                target=path,
            )
        self.write(path, data)

    def deny_write(self, path: str) -> None:
        """Put a Deny Write rule for ``BUILTIN\\Administrators`` on the file's ACL."""
        self._write_denied.add(self.real_path(path))

    def write_denied(self, path: str) -> bool:
        """True when the file's ACL denies the administrators write."""
        return self.real_path(path) in self._write_denied

    def copy(self, source: str, destination: str) -> None:
        """``Copy-Item -Force``: the bytes and the attributes (over a read-only copy too)."""
        self.write(destination, self.read(source))
        self.set_attributes(destination, self.attributes(source))

    def attributes(self, path: str) -> frozenset[str]:
        """The file's attributes that this model keeps (``ReadOnly``, ``Hidden``)."""
        real = self.real_path(path)
        if not real.is_file():
            raise PathNotFoundError(path)
        return self._attributes.get(real, frozenset())

    def set_attributes(self, path: str, attributes: frozenset[str]) -> None:
        """Set the file's attributes (``(Get-Item -Force).Attributes = ...``)."""
        real = self.real_path(path)
        if not real.is_file():
            raise PathNotFoundError(path)
        self._attributes[real] = frozenset(attributes)

    def delete(self, path: str) -> None:
        """Delete the file ``path`` (``Remove-Item -Force``: read-only too)."""
        real = self.real_path(path)
        if not real.is_file():
            raise PathNotFoundError(path)
        real.unlink()
        self._attributes.pop(real, None)

    def list_folder(self, path: str) -> list[str]:
        """Names of the entries of the folder ``path``, sorted case-insensitively."""
        real = self.real_path(path)
        if not real.is_dir():
            raise PathNotFoundError(path)
        return sorted((entry.name for entry in real.iterdir()), key=str.casefold)


def windows_join(folder: str, *names: str) -> str:
    """``folder`` and ``names`` joined with backslashes, as Windows' Join-Path does."""
    return "\\".join([folder.rstrip("\\/"), *names])


def windows_parent(path: str) -> str:
    """The folder that holds ``path`` (``C:\\a\\b.exe`` → ``C:\\a``)."""
    head, _, _ = path.replace("/", "\\").rstrip("\\").rpartition("\\")
    return head + "\\" if head.endswith(":") else head


def _split(path: str) -> tuple[str, list[str]]:
    unc = _UNC_PATH.match(path)
    if unc is not None:
        server_share, rest = unc.group(1), unc.group(2) or ""
        parts = [part for part in re.split(r"[\\/]+", f"{server_share}\\{rest}") if part]
        return "UNC", parts
    match = _DRIVE_PATH.match(path)
    if match is None:
        raise SimulatedWindowsError(
            f"The path '{path}' is not an absolute drive path such as C:\\folder\\file.",
            error_id="ArgumentException,Microsoft.PowerShell.Commands.GetContentCommand",
            category="InvalidArgument",
            target=path,
        )
    drive, rest = match.groups()
    parts = [part for part in re.split(r"[\\/]+", rest) if part]
    if any(part in _FORBIDDEN_NAMES for part in parts):
        raise SimulatedWindowsError(
            f"The path '{path}' may not contain '.' or '..' parts.",
            error_id="ArgumentException,Microsoft.PowerShell.Commands.GetContentCommand",
            category="InvalidArgument",
            target=path,
        )
    return drive.upper(), parts


def _child(folder: Path, name: str) -> Path:
    """``folder/name``, using an existing entry whose name differs only in case."""
    candidate = folder / name
    if candidate.exists() or not folder.is_dir():
        return candidate
    wanted = name.casefold()
    for entry in folder.iterdir():
        if entry.name.casefold() == wanted:
            return entry
    return candidate
