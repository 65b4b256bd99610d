"""Running the async core from synchronous code: scripts, the CLI and notebooks.

Jupyter already runs an event loop in the main thread, where ``asyncio.run`` refuses to
start; :func:`run_sync` then runs the coroutine on a fresh loop in a worker thread. Stopping
the kernel then interrupts the main thread only: :func:`run_sync` passes the interrupt on to
the run in the worker (which rolls back, as after Ctrl+C in the CLI) and waits for it to end.
:func:`synchronous` makes the plain twin of an ``..._async`` function with it; an expected
error (:class:`~cosdoc_certs.errors.CosDocCertsError`) leaves it with a short traceback —
the caller's line, not the event loop's and the worker thread's frames, nor the chain of
library exceptions its message already sums up (logged at DEBUG).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from cosdoc_certs._signals import request_stop
from cosdoc_certs.errors import CosDocCertsError

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion and return its result, whatever loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(asyncio.run, coroutine)
        while True:
            try:
                return future.result()
            except KeyboardInterrupt:
                if future.done() or not request_stop(signal.SIGINT):
                    raise
                # the run rolls back and ends with SignalReceived: wait for it


def short_errors(
    function: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """``function`` whose expected errors reach the caller with a short traceback.

    For the public ``..._async`` calls: an awaited :class:`CosDocCertsError` shows the
    caller's line, not every engine frame it passed and the library exceptions its message
    already sums up (those are logged at DEBUG).
    """

    @functools.wraps(function)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await function(*args, **kwargs)
        except CosDocCertsError as error:
            logger.debug("%s failed", function.__name__, exc_info=error)
            raise error.with_traceback(None) from None

    return call


def synchronous(
    function: Callable[P, Coroutine[Any, Any, T]], name: str | None = None
) -> Callable[P, T]:
    """The plain twin of ``function`` (same arguments, run by :func:`run_sync`)."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return run_sync(function(*args, **kwargs))
        except CosDocCertsError as error:
            logger.debug("%s failed", call.__name__, exc_info=error)
            raise error.with_traceback(None) from None

    call.__name__ = name or function.__name__.removesuffix("_async")
    call.__qualname__ = call.__name__
    call.__doc__ = f"Synchronous :func:`{function.__name__}`: {function.__doc__ or ''}".strip()
    return call
