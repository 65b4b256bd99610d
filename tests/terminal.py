"""Drive `cosdoc-certs` on a real pseudo-terminal, as a person at a keyboard would."""

from __future__ import annotations

import os
import pty
import select
import sys
from collections.abc import Mapping


class Terminal:
    """`python -m cosdoc_certs ARGUMENTS` with a pty as its controlling terminal."""

    def __init__(self, arguments: list[str], env: Mapping[str, str] | None = None) -> None:
        self.transcript = b""
        self._unread = b""  # read from the pty after the last marker: the next read's start
        self._pid, self._fd = pty.fork()
        if self._pid == 0:  # the child: cosdoc-certs on the pty
            command = [sys.executable, "-m", "cosdoc_certs", *arguments]
            environment = {**os.environ, **(env or {}), "COLUMNS": "200"}
            os.execve(sys.executable, command, environment)  # noqa: S606 -- no shell involved

    def read_until(self, marker: bytes | None, timeout: float = 60.0) -> bytes:
        """Read until ``marker`` appears (or, for None, until the command closes the terminal).

        Returns the output up to and including ``marker``; what came after it in the same
        read (the next prompt, say) is kept for the next call.
        """
        data, self._unread = self._unread, b""
        while marker is None or marker not in data:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                raise AssertionError(f"timed out; got {data!r}")
            try:
                chunk = os.read(self._fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
        if marker is not None and marker in data:
            end = data.index(marker) + len(marker)
            data, self._unread = data[:end], data[end:]
        self.transcript += data
        return data

    def type(self, keys: bytes) -> None:
        """Send ``keys`` as typed."""
        os.write(self._fd, keys)

    def finish(self) -> int:
        """Read what is left, wait for the command and return its exit code."""
        self.read_until(None)
        _, status = os.waitpid(self._pid, 0)
        os.close(self._fd)
        return os.waitstatus_to_exitcode(status)
