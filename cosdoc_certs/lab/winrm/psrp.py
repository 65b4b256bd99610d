"""Server side of PowerShell remoting for one lab shell, on psrpcore's sans-IO runspace pool.

A :class:`ShellSession` is one WS-Management shell = one PSRP RunspacePool. It feeds the
fragments pypsrp sends (``creationXml``, Command arguments, Send streams) to psrpcore's
``ServerRunspacePool``, runs each pipeline's script through the registry on a worker thread,
and queues psrpcore's outgoing fragments *per target* (the pool or one pipeline) so a Receive
for a pipeline gets only its own messages, never more than the client's MaxEnvelopeSize.
psrpcore is not thread-safe: every touch of the pool happens under the session's condition
lock, and handlers run outside it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psrpcore import (
    CreatePipelineEvent,
    EndOfPipelineInputEvent,
    GetAvailableRunspacesEvent,
    GetCommandMetadataEvent,
    PipelineInputEvent,
    PSRPCoreError,
    PSRPEvent,
    PSRPPayload,
    ResetRunspaceStateEvent,
    ServerPipeline,
    SetMaxRunspacesEvent,
    SetMinRunspacesEvent,
    StreamType,
)
from psrpcore.types import PSDouble, PSInvocationState, PSSecureString, RunspacePoolState

from cosdoc_certs.lab.winrm import records, wsman
from cosdoc_certs.lab.winrm.faults import CallRecorder, Faults, ScriptRun
from cosdoc_certs.lab.winrm.scripts import (
    CommandSpec,
    Dispatch,
    ScriptCall,
    ScriptNotRecognised,
    ScriptRegistry,
    ScriptResult,
    as_text_lines,
)

log = logging.getLogger(__name__)

# Outgoing fragments are cut to fit the smallest MaxEnvelopeSize WinRM accepts (32 KiB), so
# any Receive can carry whole fragments whatever envelope size the client negotiated.
FRAGMENT_SIZE = wsman.base64_budget(32 * 1024)
_FINISHED = (PSInvocationState.Completed, PSInvocationState.Failed, PSInvocationState.Stopped)
_CTRL_C = {
    "powershell/signal/ctrl_c",
    "powershell/signal/crtl_c",  # sic: what real servers' clients send
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c",
}
_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"


@dataclass
class _Pipeline:
    server: ServerPipeline
    command_id: str
    input: list[Any] = field(default_factory=list)
    dispatched: Dispatch | None = None
    call: ScriptCall | None = None
    script: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    first_use_unread: bool = False  # the first-use progress record waits for a Receive


@dataclass(frozen=True)
class Services:
    """What every shell of an endpoint shares: scripts, faults and the recorder."""

    registry: ScriptRegistry
    faults: Faults
    recorder: CallRecorder


class ShellSession:
    """One shell (RunspacePool) of the lab endpoint, driven by WS-Management requests."""

    def __init__(
        self,
        shell_id: str,
        services: Services,
        powershell_version: str = records.POWERSHELL_VERSION,
    ) -> None:
        self.shell_id = shell_id
        self._services = services
        self._pool = records.WindowsRunspacePool(powershell_version)
        self._modules_loaded = False
        self._cond = threading.Condition()
        self._queues: dict[uuid.UUID | None, deque[bytes]] = {None: deque()}
        self._pipelines: dict[uuid.UUID, _Pipeline] = {}
        self._closed = False
        self._last_answers: dict[uuid.UUID | None, tuple[str, tuple[bytes, bool]]] = {}

    def open(self, creation: bytes) -> None:
        """Process ``creationXml`` (SESSION_CAPABILITY + INIT_RUNSPACEPOOL)."""
        with self._cond:
            self._feed(creation, None)
            if self._pool.state != RunspacePoolState.Opened:
                raise wsman.invalid_message("creationXml did not open a runspace pool")

    def command(self, command_id: str, arguments: bytes) -> None:
        """Create a pipeline and process the first fragments (CREATE_PIPELINE)."""
        pipeline_id = _pipeline_id(command_id)
        with self._cond:
            server = ServerPipeline(self._pool, pipeline_id)
            self._pipelines[pipeline_id] = _Pipeline(server, command_id.upper())
            self._queues[pipeline_id] = deque()
            self._feed(arguments, pipeline_id)

    def send(self, command_id: str | None, data: bytes) -> None:
        """Process fragments sent to the pool or to a pipeline (input, pool requests)."""
        pipeline_id = self._known(command_id) if command_id else None
        with self._cond:
            self._feed(data, pipeline_id)

    def receive(
        self, command_id: str | None, budget: int, timeout: float, message_id: str = ""
    ) -> tuple[bytes, bool]:
        """Wait up to ``timeout`` for output; return (fragments, command done).

        Raises the OperationTimeout fault when nothing arrived in time, as WinRM does. A
        request repeated with the same ``message_id`` (pypsrp retries a Receive whose HTTP
        read timed out) gets the same answer again instead of losing it.
        """
        target = self._known(command_id) if command_id else None
        with self._cond:
            self._cond.wait_for(
                lambda: self._ready(target) or self._answered(target, message_id), timeout
            )
            if self._closed:
                raise wsman.shell_not_found(self.shell_id)
            if self._answered(target, message_id):
                return self._last_answers[target][1]
            queue = self._queues.get(target, deque())
            data = _take(queue, budget)
            finished = self._finished(target)
            if not data and not finished:
                raise wsman.operation_timed_out()
            answer = (data, finished and not queue)
            self._last_answers[target] = (message_id, answer)
            self._note_first_use_read(target, finished)
            return answer

    def signal(self, command_id: str, code: str) -> None:
        """Handle Ctrl+C (stop the pipeline) and Terminate (forget it); acknowledge others."""
        pipeline_id = self._known(command_id)
        code = code.strip().lower()
        with self._cond:
            pipe = self._pipelines.get(pipeline_id)
            if pipe is None:
                return
            if code in _CTRL_C or code == _TERMINATE:
                self._stop(pipe)
            if code == _TERMINATE:
                pipe.server.close()
                del self._pipelines[pipeline_id]
                self._queues.pop(pipeline_id, None)
                self._last_answers.pop(pipeline_id, None)
            self._drain()
            self._cond.notify_all()

    def close(self) -> None:
        """Forget the shell; running pipelines are cancelled, waiting Receives released."""
        with self._cond:
            self._closed = True
            for pipe in self._pipelines.values():
                pipe.cancelled.set()
            self._cond.notify_all()

    def _known(self, command_id: str) -> uuid.UUID:
        pipeline_id = _pipeline_id(command_id)
        with self._cond:
            if pipeline_id not in self._pipelines:
                raise wsman.command_not_found()
        return pipeline_id

    def _note_first_use_read(self, target: uuid.UUID | None, finished: bool) -> None:
        """Record a Receive that carried the first-use progress record before any output."""
        pipe = self._pipelines.get(target) if target else None
        if pipe is None or not pipe.first_use_unread:
            return
        pipe.first_use_unread = False
        if not finished:
            self._services.recorder.progress_only_receive()

    def _ready(self, target: uuid.UUID | None) -> bool:
        return self._closed or bool(self._queues.get(target)) or self._finished(target)

    def _answered(self, target: uuid.UUID | None, message_id: str) -> bool:
        last = self._last_answers.get(target)
        return bool(message_id) and last is not None and last[0] == message_id

    def _finished(self, target: uuid.UUID | None) -> bool:
        pipe = self._pipelines.get(target) if target else None
        return pipe is not None and pipe.server.state in _FINISHED

    def _feed(self, data: bytes, pipeline_id: uuid.UUID | None) -> None:
        try:
            self._pool.receive_data(PSRPPayload(data, StreamType.default, pipeline_id))
            while (event := self._pool.next_event()) is not None:
                self._on_event(event)
        except Exception as error:  # any malformed PSRP data becomes a fault, not a crash
            log.info("PSRP data could not be processed", exc_info=True)
            raise wsman.invalid_message(f"PSRP data could not be processed ({error})") from None
        finally:
            self._drain()
            self._cond.notify_all()

    def _drain(self) -> None:
        while (payload := self._pool.data_to_send(FRAGMENT_SIZE)) is not None:
            self._queues.setdefault(payload.pipeline_id, deque()).append(payload.data)

    def _on_event(self, event: PSRPEvent[Any, Any]) -> None:
        if isinstance(event, (SetMaxRunspacesEvent, SetMinRunspacesEvent, ResetRunspaceStateEvent)):
            self._pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, GetAvailableRunspacesEvent):
            self._pool.runspace_availability_response(event.ci, self._pool.max_runspaces)
        elif isinstance(event, CreatePipelineEvent):
            self._on_create_pipeline(self._pipelines[event.pipeline_id])
        elif isinstance(event, PipelineInputEvent):
            self._pipelines[event.pipeline_id].input.append(_to_python(event.data))
        elif isinstance(event, EndOfPipelineInputEvent):
            self._start(self._pipelines[event.pipeline_id])
        elif isinstance(event, GetCommandMetadataEvent):
            pipe = self._pipelines[event.pipeline_id]
            _mark_running(pipe.server)
            records.fail(
                pipe.server, "The lab does not answer command metadata requests.", "NotImplemented"
            )

    def _on_create_pipeline(self, pipe: _Pipeline) -> None:
        metadata = pipe.server.metadata
        commands = [
            CommandSpec(
                text=str(cmd.command_text),
                is_script=bool(cmd.is_script),
                parameters=tuple((name, _to_python(value)) for name, value in cmd.parameters),
                end_of_statement=bool(cmd.end_of_statement),
                use_local_scope=cmd.use_local_scope,
            )
            for cmd in getattr(metadata, "commands", [])
        ]
        pipe.script = next((cmd.text for cmd in commands if cmd.is_script), "")
        scope = next((cmd.use_local_scope for cmd in commands if cmd.is_script), None)
        self._services.recorder.pipeline_created(pipe.command_id, local_scope=scope is True)
        try:
            pipe.dispatched = self._services.registry.dispatch(commands)
        except ScriptNotRecognised as error:
            log.info("pipeline %s not runnable: %s", pipe.command_id, error.error_id)
            _mark_running(pipe.server)
            where = records.position(pipe.script, 1) if pipe.script else None
            records.fail(
                pipe.server,
                error.message,
                error.category,
                error.error_id,
                error.exception_type,
                where,
            )
            return
        if getattr(metadata, "no_input", True):
            self._start(pipe)

    def _start(self, pipe: _Pipeline) -> None:
        dispatched = pipe.dispatched
        if dispatched is None or pipe.server.state != PSInvocationState.NotStarted:
            return
        pipe.call = ScriptCall(
            dispatched.name, dispatched.parameters, list(pipe.input), dispatched.arguments
        )
        _mark_running(pipe.server)
        if not self._modules_loaded:  # PowerShell loads its modules for the first command
            records.first_use_progress(pipe.server)
            pipe.first_use_unread = True
            self._modules_loaded = True
        worker = threading.Thread(
            target=self._run,
            args=(pipe, dispatched, pipe.call),
            name=f"lab-pipeline-{pipe.command_id[:8]}",
            daemon=True,
        )
        worker.start()

    def _run(self, pipe: _Pipeline, dispatched: Dispatch, call: ScriptCall) -> None:
        result = self._result_of(pipe, dispatched, call)
        if result is None:
            return
        with self._cond:
            if pipe.server.state != PSInvocationState.Running:
                return
            try:
                _write(pipe.server, result, dispatched.as_text, pipe.script)
            except (PSRPCoreError, ValueError, TypeError) as error:
                log.exception("the output of script %r cannot be sent", call.name)
                records.fail(
                    pipe.server,
                    f"The lab cannot send the output of '{call.name}': {error}",
                    "InvalidResult",
                )
            self._drain()
            self._cond.notify_all()
            outcome = pipe.server.state.name
        self._record(pipe, call, outcome)

    def _result_of(
        self, pipe: _Pipeline, dispatched: Dispatch, call: ScriptCall
    ) -> ScriptResult | None:
        faults = self._services.faults
        delay = faults.delay_of(call.name)
        if delay and pipe.cancelled.wait(delay):
            return None
        failure = faults.failure_of(call.name)
        if failure is not None:
            return failure
        try:
            return dispatched.handler(call)
        except Exception as error:
            log.exception("the lab handler for script %r raised", call.name)
            return ScriptResult(
                terminating_error=f"The lab's handler for '{call.name}' failed: "
                f"{type(error).__name__}: {error}"
            )

    def _stop(self, pipe: _Pipeline) -> None:
        pipe.cancelled.set()
        if pipe.server.state == PSInvocationState.NotStarted:
            _mark_running(pipe.server)  # stopped while waiting for its input
        if pipe.server.state != PSInvocationState.Running:
            return
        pipe.server.begin_stop()
        pipe.server.stop()
        if pipe.call is not None:
            self._record(pipe, pipe.call, PSInvocationState.Stopped.name)

    def _record(self, pipe: _Pipeline, call: ScriptCall, outcome: str) -> None:
        run = ScriptRun(self.shell_id, pipe.command_id, call, outcome)
        self._services.recorder.script_ran(run)


def _pipeline_id(command_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(command_id)
    except ValueError:
        raise wsman.command_not_found() from None


def _take(queue: deque[bytes], budget: int) -> bytes:
    taken: list[bytes] = []
    size = 0
    while queue and (not taken or size + len(queue[0]) <= budget):
        chunk = queue.popleft()
        taken.append(chunk)
        size += len(chunk)
    return b"".join(taken)


def _write(server: ServerPipeline, result: ScriptResult, as_text: bool, script: str) -> None:
    output = as_text_lines(result.output) if as_text else result.output
    for value in output:
        server.write_output(_to_powershell(value))
    for message in result.warnings:
        server.write_warning(message)
    where = records.position(script, result.error_line) if script else None
    for message in result.errors:
        records.write_error(server, message, where)
    if result.terminating_error is not None:
        error = result.terminating_error
        records.fail(server, error, "OperationStopped", error, where=where)
    else:
        server.complete()


def _mark_running(server: ServerPipeline) -> None:
    """The pipeline runs. Windows sends no PIPELINE_STATE message for Running (only for the
    end states), so the state changes without one (psrpcore's private call, hence the pin)."""
    server._change_state(PSInvocationState.Running, emit=False)


def _to_python(value: Any) -> Any:
    """Turn a value psrpcore deserialised into plain Python (str, int, bool, bytes, list, dict).

    A SecureString (sent after ``RunspacePool.exchange_keys()``) arrives decrypted, as str.
    """
    if value is None:
        return None
    for kind, convert in _TO_PYTHON:
        if isinstance(value, kind):
            return convert(value)
    return str(value)


_TO_PYTHON: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (PSSecureString, lambda secure: str(secure.decrypt())),
    (bool, bool),
    (str, str),
    (int, int),
    (float, float),
    ((bytes, bytearray), bytes),
    (dict, lambda d: {_to_python(k): _to_python(v) for k, v in d.items()}),
    ((list, tuple), lambda items: [_to_python(v) for v in items]),
)


def _to_powershell(value: Any) -> Any:
    """Prepare a handler's output value for psrpcore (floats as Double, containers deep)."""
    if isinstance(value, float):
        return PSDouble(value)
    if isinstance(value, dict):
        return {k: _to_powershell(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_powershell(v) for v in value]
    return value
