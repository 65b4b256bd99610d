"""The protocol loggers stay quiet while any script runs, also when runs overlap (a fleet)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from cosdoc_certs.windows.connection import PROTOCOL_LOGGERS, protocol_logs_quiet


@pytest.fixture
def protocol_at_debug() -> Iterator[logging.Logger]:
    """pypsrp's logger at DEBUG, as a user debugging their own code might set it."""
    loggers = {name: logging.getLogger(name) for name in PROTOCOL_LOGGERS}
    saved = {name: logger.level for name, logger in loggers.items()}
    loggers["pypsrp"].setLevel(logging.DEBUG)
    yield loggers["pypsrp"]
    for name, level in saved.items():
        loggers[name].setLevel(level)


def test_a_run_that_ends_first_does_not_unquiet_a_run_still_going(
    protocol_at_debug: logging.Logger,
) -> None:
    """Two installations' scripts overlap: the first ends while the second still sends."""
    first, second = ExitStack(), ExitStack()
    first.enter_context(protocol_logs_quiet())
    second.enter_context(protocol_logs_quiet())
    first.close()
    assert protocol_at_debug.getEffectiveLevel() >= logging.INFO
    assert logging.getLogger("pypsrp.wsman").getEffectiveLevel() >= logging.INFO
    second.close()
    assert protocol_at_debug.level == logging.DEBUG


def test_a_child_logger_set_to_debug_is_held_too(protocol_at_debug: logging.Logger) -> None:
    child = logging.getLogger("psrpcore.types")
    saved = child.level
    child.setLevel(logging.DEBUG)
    try:
        with protocol_logs_quiet():
            assert child.getEffectiveLevel() >= logging.INFO
        assert child.level == logging.DEBUG
    finally:
        child.setLevel(saved)
