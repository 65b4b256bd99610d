"""Fault injection and call recording for the lab's WinRM endpoint.

:class:`Faults` makes the endpoint misbehave on purpose (a dropped connection at the N-th
request, latency on every request, a script that fails or is slow) so tests and demos can
show how the client copes. :class:`CallRecorder` counts what the endpoint saw (requests by
WS-Management action, shells, pipelines, scripts run) for tests and benchmarks. Both are
thread-safe: the endpoint serves each HTTP connection on its own thread.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import Counter
from dataclasses import dataclass

from cosdoc_certs.lab.winrm.scripts import ScriptCall, ScriptResult

log = logging.getLogger(__name__)


class DropPoint(enum.Enum):
    """Whether a dropped request is dropped before or after the endpoint processed it."""

    NONE = "none"
    BEFORE = "before"
    AFTER = "after"
    SHELL_LOST = "shell-lost"
    """Not a drop: the server forgets the request's shell first (its PowerShell host died)."""


@dataclass(frozen=True)
class _DropRule:
    nth: int
    action: str | None
    point: DropPoint


class Faults:
    """Faults the endpoint injects. Change them at any time, from any thread.

    Wrong credentials need no rule: the endpoint answers them with HTTP 401.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency = 0.0
        self._drops: list[_DropRule] = []
        self._seen: Counter[str | None] = Counter()
        self._failing: dict[str, tuple[ScriptResult, int | None]] = {}
        self._slow: dict[str, float] = {}

    @property
    def latency_per_request(self) -> float:
        """Seconds the endpoint waits before handling each request."""
        with self._lock:
            return self._latency

    @latency_per_request.setter
    def latency_per_request(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency_per_request must be >= 0 seconds")
        with self._lock:
            self._latency = seconds

    def drop_connection_at(self, n: int, *, before: bool = True, action: str | None = None) -> None:
        """Close the connection at the n-th request (1-based, counted from now).

        ``before=True`` closes it without processing the request; ``before=False`` processes
        the request (its effects happen) and closes the connection instead of answering.
        ``action`` (e.g. ``"Command"``) counts only requests of that WS-Management action.
        """
        if n < 1:
            raise ValueError("n counts requests from 1")
        point = DropPoint.BEFORE if before else DropPoint.AFTER
        with self._lock:
            self._drops.append(_DropRule(self._seen[action] + n, action, point))

    def fail_pipeline(
        self, name: str, message: str, *, times: int | None = None, line: int = 1
    ) -> None:
        """Make runs of script ``name`` end with a terminating error ``message``, thrown at
        ``line`` of the script.

        Every run by default; ``times=1`` fails only the next one — e.g. an ``apply`` whose
        undo (the next ``apply`` call) then succeeds.
        """
        if times is not None and times < 1:
            raise ValueError("times counts runs from 1")
        if line < 1:
            raise ValueError("line counts the script's lines from 1")
        failure = ScriptResult(terminating_error=message, error_line=line)
        with self._lock:
            self._failing[name] = (failure, times)

    def lose_shell_at(self, n: int, *, action: str | None = None) -> None:
        """At the n-th request (1-based, from now), the server loses the request's shell.

        As when wsmprovhost.exe dies or an administrator closes the session: the request (and
        every later one on that shell) is answered with "the shell was not found"; a running
        script in it is stopped.
        """
        if n < 1:
            raise ValueError("n counts requests from 1")
        with self._lock:
            self._drops.append(_DropRule(self._seen[action] + n, action, DropPoint.SHELL_LOST))

    def slow_pipeline(self, name: str, seconds: float) -> None:
        """Delay the output of script ``name`` by ``seconds`` (beyond the operation timeout)."""
        with self._lock:
            self._slow[name] = seconds

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._latency = 0.0
            self._drops.clear()
            self._failing.clear()
            self._slow.clear()

    def on_request(self, action: str) -> DropPoint:
        """Count a request of ``action`` and say whether to drop its connection."""
        with self._lock:
            self._seen[None] += 1
            self._seen[action] += 1
            for rule in self._drops:
                if self._seen[rule.action] == rule.nth and rule.action in (None, action):
                    self._drops.remove(rule)
                    log.info("dropping the connection %s request %s", rule.point.value, action)
                    return rule.point
        return DropPoint.NONE

    def failure_of(self, name: str) -> ScriptResult | None:
        """The injected terminating error for script ``name``, if any."""
        with self._lock:
            if name not in self._failing:
                return None
            failure, times = self._failing[name]
            if times is not None:
                if times <= 1:
                    del self._failing[name]
                else:
                    self._failing[name] = (failure, times - 1)
            return failure

    def delay_of(self, name: str) -> float:
        """The injected delay in seconds for script ``name`` (0 if none)."""
        with self._lock:
            return self._slow.get(name, 0.0)


@dataclass(frozen=True)
class ScriptRun:
    """One script the endpoint ran: which shell, which pipeline, the call, how it ended."""

    shell_id: str
    command_id: str
    call: ScriptCall
    outcome: str


class CallRecorder:
    """What the endpoint saw, for tests and benchmarks. Thread-safe; ``reset()`` clears it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._shells: list[str] = []
        self._pipelines: list[str] = []
        self._global_scope_pipelines: list[str] = []
        self._scripts: list[ScriptRun] = []
        self._largest: dict[str, int] = {}
        self._progress_only_receives = 0

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._shells.clear()
            self._pipelines.clear()
            self._global_scope_pipelines.clear()
            self._scripts.clear()
            self._largest.clear()
            self._progress_only_receives = 0

    def request(self, action: str) -> None:
        """Record a request of a WS-Management action (``Create``, ``Receive``...)."""
        with self._lock:
            self._requests[action] += 1

    def response(self, action: str, size: int) -> None:
        """Record the size in bytes of an answer to a request of ``action``."""
        with self._lock:
            self._largest[action] = max(size, self._largest.get(action, 0))

    def progress_only_receive(self) -> None:
        """Record a Receive answered with the first-use progress record alone (the script
        was still running): a real server's first command may cost this one Receive more."""
        with self._lock:
            self._progress_only_receives += 1

    @property
    def progress_only_receives(self) -> int:
        """Receives answered with the first-use progress record alone."""
        with self._lock:
            return self._progress_only_receives

    def fault(self, kind: str) -> None:
        """Record a fault the endpoint answered or injected (``OperationTimeout``...)."""
        with self._lock:
            self._faults[kind] += 1

    def shell_created(self, shell_id: str) -> None:
        """Record a new shell (RunspacePool)."""
        with self._lock:
            self._shells.append(shell_id)

    def pipeline_created(self, command_id: str, *, local_scope: bool = True) -> None:
        """Record a new pipeline (Command); ``local_scope`` False for a script PowerShell runs
        in the runspace's global scope (a script command without UseLocalScope=true)."""
        with self._lock:
            self._pipelines.append(command_id)
            if not local_scope:
                self._global_scope_pipelines.append(command_id)

    def script_ran(self, run: ScriptRun) -> None:
        """Record a finished (or stopped) script run."""
        with self._lock:
            self._scripts.append(run)

    @property
    def requests(self) -> Counter[str]:
        """Requests by WS-Management action name."""
        with self._lock:
            return Counter(self._requests)

    @property
    def global_scope_pipelines(self) -> list[str]:
        """Pipelines whose script ran in the runspace's global scope: what it defined (its
        functions, variables, StrictMode, $ErrorActionPreference) stays for the next script of
        the same session, as PowerShell does for a script command without UseLocalScope."""
        with self._lock:
            return list(self._global_scope_pipelines)

    @property
    def faults(self) -> Counter[str]:
        """Faults answered or injected, by kind."""
        with self._lock:
            return Counter(self._faults)

    @property
    def largest_response(self) -> dict[str, int]:
        """The largest answer in bytes, by action (Receive answers stay within MaxEnvelopeSize)."""
        with self._lock:
            return dict(self._largest)

    @property
    def shells(self) -> list[str]:
        """Ids of the shells created, in order."""
        with self._lock:
            return list(self._shells)

    @property
    def pipelines(self) -> list[str]:
        """Ids of the pipelines created, in order."""
        with self._lock:
            return list(self._pipelines)

    @property
    def scripts(self) -> list[ScriptRun]:
        """The script runs, in the order they ended."""
        with self._lock:
            return list(self._scripts)

    @property
    def script_names(self) -> list[str]:
        """Names of the scripts run, in the order they ended."""
        with self._lock:
            return [run.call.name for run in self._scripts]
