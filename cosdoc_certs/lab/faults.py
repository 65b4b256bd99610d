"""Faults of the simulated Windows server, injected by a documented API (no patching).

Every :class:`~cosdoc_certs.lab.model.CosDocServer` has ``faults``, a :class:`ServerFaults`
(``lab.server.faults`` on a running lab). Together with the WinRM endpoint's
:class:`~cosdoc_certs.lab.winrm.faults.Faults` (``lab.faults``: dropped requests, a lost
shell, failing or slow scripts) and the SvarUT host's
:class:`~cosdoc_certs.lab.svarut_host.LabFaults` (``lab.svarut.faults``) they make every
failure a rotation must survive reproducible. ``docs/lab.md`` lists them all.

The faults here act where Windows would fail, not in our code: the ``apply.ps1`` twin asks
:meth:`ServerFaults.action_failure` before each action, the service control rules ask
:meth:`ServerFaults.service_failure`, and the file system refuses writes while the disk is
"full" or the volume read-only. Thread-safe: the WinRM threads and a test use one server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["CIM_TIMEOUT", "DISK_FULL", "READ_ONLY", "ServerFaults"]

CIM_TIMEOUT = (
    "The WS-Management service cannot complete the operation within the time specified in "
    "OperationTimeout."
)
DISK_FULL = "There is not enough space on the disk."
READ_ONLY = "The media is write protected."
_CRASH = "The process terminated unexpectedly. (Exception 0xc0000005: access violation)"


@dataclass(frozen=True)
class _ActionRule:
    call: int
    action: int
    message: str


class ServerFaults:
    """Faults of one simulated server; change them at any time, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._actions: list[_ActionRule] = []
        self._services: dict[str, str] = {}
        self._writes: str | None = None
        self._served: str | None = None
        self._gathers: list[tuple[str, bool]] = []  # (message, only a post-state read)

    def fail_action(self, n: int, message: str = "", *, call: int = 1) -> None:
        """Fail the ``n``-th action (1-based) of the ``call``-th ``apply`` call from now.

        ``call=1`` is the next call — the apply; its undo is the next call, so the undo is
        not affected (a fault that fails apply but not its rollback). ``call=2`` fails an
        action of the undo call: a second fault during the rollback.
        """
        if n < 1 or call < 1:
            raise ValueError("n and call count from 1")
        text = message or f"Injected failure of action {n} (the lab's fail_action)."
        with self._lock:
            self._actions.append(_ActionRule(self._calls + call, n - 1, text))

    def break_service(self, name: str, reason: str = _CRASH) -> None:
        """Make service ``name`` fail to start for a reason that is not a certificate."""
        with self._lock:
            self._services[name.casefold()] = reason

    def disk_full(self) -> None:
        """Every file write fails as on a full disk (0x80070070)."""
        with self._lock:
            self._writes = DISK_FULL

    def read_only(self) -> None:
        """Every file write fails as on a write-protected volume (0x80070013)."""
        with self._lock:
            self._writes = READ_ONLY

    def serve_wrong_certificate(self, thumbprint: str) -> None:
        """Every HTTPS binding serves the store certificate ``thumbprint``, whatever it names.

        As a proxy or load balancer in front of the server that was not updated.
        """
        with self._lock:
            self._served = thumbprint.upper()

    def fail_gather(
        self, message: str = CIM_TIMEOUT, *, times: int = 1, post_state_only: bool = False
    ) -> None:
        """The next ``times`` reads of gather.ps1 fail as a whole with ``message``.

        A gather of its own or the one at the end of an apply (or of an undo): as when WMI
        does not answer within gather.ps1's ``-OperationTimeoutSec`` while services restart.
        ``post_state_only``: only the reads at the end of an ``apply.ps1`` call count (its
        ``-PostStateScript``); gathers of their own pass, e.g. the one a rollback makes before
        its undo call.
        """
        if times < 1:
            raise ValueError("times counts from 1")
        with self._lock:
            self._gathers += [(message, post_state_only)] * times

    def clear(self) -> None:
        """Remove every fault (the call count goes on)."""
        with self._lock:
            self._gathers.clear()
            self._actions.clear()
            self._services.clear()
            self._writes = None
            self._served = None

    # -- asked by the model and the twins ---------------------------------------------------
    def apply_call_started(self) -> None:
        """An ``apply`` call begins (the twin counts them for :meth:`fail_action`)."""
        with self._lock:
            self._calls += 1

    def action_failure(self, index: int) -> str | None:
        """The injected failure of action ``index`` (0-based) of the current call, if any."""
        with self._lock:
            for rule in self._actions:
                if rule.call == self._calls and rule.action == index:
                    self._actions.remove(rule)
                    return rule.message
        return None

    def service_failure(self, name: str) -> str | None:
        """Why service ``name`` cannot start besides its certificates, if it is broken."""
        with self._lock:
            return self._services.get(name.casefold())

    def served_instead(self) -> str | None:
        """The thumbprint every binding serves instead of its own, if one is forced."""
        with self._lock:
            return self._served

    def gather_failure(self, *, post_state: bool = False) -> str | None:
        """Why this read of gather.ps1 fails as a whole, if an injected failure is due.

        ``post_state``: the read at the end of an ``apply.ps1`` call.
        """
        with self._lock:
            for position, (message, post_state_only) in enumerate(self._gathers):
                if post_state or not post_state_only:
                    del self._gathers[position]
                    return message
        return None

    def write_failure(self) -> str | None:
        """Why a file write fails now (disk full, read-only), if it does."""
        with self._lock:
            return self._writes
