"""Stopping a run on SIGINT, SIGTERM or SIGHUP when its host work runs in other threads.

Python runs signal handlers in the main thread only, so work in a worker thread (the
rotation's Windows phase, a blocking PowerShell-remoting call) cannot be interrupted where it
stands. A run that uses workers wraps itself in :func:`stop_on_signals` in the main thread (as
certbot's error handler does around its phases): a signal only *requests* a stop. Worker code
obeys at its next safe point with :func:`raise_if_stop_requested` (after its remote call
returned, so its journal is complete), and native-async work awaited through
:meth:`StopRequest.guard` is cancelled at once. Either way :class:`SignalReceived` is raised
where the engine's rollback catches it, so every host is restored as for Ctrl+C, then the run
stops. Further signals while that happens are logged, not obeyed.

The stop is noted the moment the signal arrives (a plain ``signal.signal`` handler, not the
loop's reader), so a check right after a phase sees a signal that came during it. In a
notebook the loop runs in a worker thread (:func:`~cosdoc_certs._aio.run_sync`) and the
kernel's interrupt is a KeyboardInterrupt in the main thread, which waits for the worker:
:func:`request_stop` passes it on to every run in progress, which rolls back and raises
:class:`SignalReceived` with the run's result attached.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = [
    "SignalReceived",
    "StopRequest",
    "guarded",
    "raise_if_stop_requested",
    "request_stop",
    "stop_on_signals",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CURRENT: ContextVar[StopRequest | None] = ContextVar("cosdoc_certs_stop_request", default=None)


class SignalReceived(KeyboardInterrupt):
    """SIGTERM or SIGHUP (or SIGINT in a guarded run) arrived: roll back like Ctrl+C, then stop.

    ``signal_name`` is the signal's name (``SIGTERM``...), for the stop message.
    """

    def __init__(self, signal_name: str, result: Any = None) -> None:
        super().__init__(f"signal {signal_name}")
        self.signal_name = signal_name
        self.result = result
        """What the stopped run did (a rotation's RotationResult), when it is known."""


def _stop_signals() -> list[signal.Signals]:
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


class StopRequest:
    """A signal noted in the main thread, for the run's workers and tasks to obey."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._event = threading.Event()
        self._signal = ""
        self._tasks: set[asyncio.Future[Any]] = set()
        self._loop = loop

    @property
    def requested(self) -> bool:
        """True once a signal asked the run to stop."""
        return self._event.is_set()

    def request(self, number: int) -> None:
        """Note signal ``number`` (from any thread, or a signal handler); stop the run's tasks."""
        first = not self.requested
        if first:
            self._signal = signal.Signals(number).name
            self._event.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._obey, number, first)

    def _obey(self, number: int, first: bool) -> None:
        """In the loop: say what happens and cancel the guarded tasks (first signal only)."""
        name = signal.Signals(number).name
        if not first:
            logger.warning("signal %s: already stopping (rolling back), please wait", name)
            return
        logger.warning("signal %s: stopping after the current step and rolling back", name)
        for task in list(self._tasks):
            task.cancel()

    def raise_if_requested(self) -> None:
        """Raise :class:`SignalReceived` if a stop was requested."""
        if self.requested:
            raise SignalReceived(self._signal)

    async def guard(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` in this task, which a stop request cancels; then SignalReceived.

        The coroutine runs in the calling task (not a task of its own), so its clean-up on
        cancellation, and any exception it raises, reach the caller's handlers as before.
        """
        if self.requested:
            coroutine.close()
            self.raise_if_requested()
        task = asyncio.current_task()
        assert task is not None, "guard() runs inside a task"
        self._tasks.add(task)
        try:
            return await coroutine
        except asyncio.CancelledError:
            if not self.requested:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: the cancellation is handled here
                task.uncancel()
            self.raise_if_requested()
            raise
        finally:
            self._tasks.discard(task)


async def guarded(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await ``coroutine`` stopping on signals, unless an outer run already guards it."""
    if _CURRENT.get() is not None:
        return await coroutine
    with stop_on_signals() as stop:
        return await stop.guard(coroutine)


_RUNNING: set[StopRequest] = set()
_RUNNING_LOCK = threading.Lock()


def request_stop(number: int = signal.SIGINT) -> bool:
    """Ask every run in progress (in any thread) to stop and roll back; False if none runs.

    :func:`~cosdoc_certs._aio.run_sync` calls it when the main thread is interrupted while a
    run's loop works in a worker thread (a notebook kernel's interrupt).
    """
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for stop in running:
        stop.request(number)
    return bool(running)


def raise_if_stop_requested() -> None:
    """In a run wrapped by :func:`stop_on_signals` (any thread): raise if a signal came."""
    stop = _CURRENT.get()
    if stop is not None:
        stop.raise_if_requested()


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Around async work on the running loop: signals request a stop instead of killing it.

    Handlers are installed only in the main thread (elsewhere Python delivers no signals);
    the previous handlers are put back afterwards. Workers started with
    ``asyncio.to_thread`` inside the block see the request (the context is copied).
    """
    stop = StopRequest(asyncio.get_running_loop())
    token = _CURRENT.set(stop)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in _stop_signals():
            previous[number] = signal.signal(number, lambda number, _: stop.request(number))
    with _RUNNING_LOCK:
        _RUNNING.add(stop)
    try:
        yield stop
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(stop)
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        _CURRENT.reset(token)
