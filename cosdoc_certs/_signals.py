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
    "stop_on_signals",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CURRENT: ContextVar[StopRequest | None] = ContextVar("cosdoc_certs_stop_request", default=None)


class SignalReceived(KeyboardInterrupt):
    """SIGTERM or SIGHUP (or SIGINT in a guarded run) arrived: roll back like Ctrl+C, then stop.

    ``signal_name`` is the signal's name (``SIGTERM``...), for the stop message.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"signal {signal_name}")
        self.signal_name = signal_name


def _stop_signals() -> list[signal.Signals]:
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


class StopRequest:
    """A signal noted in the main thread, for the run's workers and tasks to obey."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._signal = ""
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def requested(self) -> bool:
        """True once a signal asked the run to stop."""
        return self._event.is_set()

    def request(self, number: int) -> None:
        """Note signal ``number``; cancel the guarded tasks on the first one."""
        name = signal.Signals(number).name
        if self.requested:
            logger.warning("signal %s: already stopping (rolling back), please wait", name)
            return
        self._signal = name
        self._event.set()
        logger.warning("signal %s: stopping after the current step and rolling back", name)
        for task in self._tasks:
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
    stop = StopRequest()
    token = _CURRENT.set(stop)
    loop = asyncio.get_running_loop()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in _stop_signals():
            previous[number] = signal.getsignal(number)
            loop.add_signal_handler(number, stop.request, number)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            loop.remove_signal_handler(number)
            if handler is not None:
                signal.signal(number, handler)
        _CURRENT.reset(token)
