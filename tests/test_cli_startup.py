"""What the command line loads and does at start and exit, run as a fresh process each time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("cryptography", "asn1crypto", "pypsrp", "asyncssh", "rich", "asyncio")

# Runs the CLI as its script does, then reports from an exit handler registered before it
# (exit handlers run last-registered first, so this one sees what the CLI's left behind).
_PROBE = """
import atexit, gc, json, sys
def report():
    sys.__stderr__.write(json.dumps(
        {"modules": sorted(sys.modules), "frozen": gc.get_freeze_count()}
    ))
atexit.register(report)
from cosdoc_certs.cli import main
main(sys.argv[1:], prog_name="cosdoc-certs")
"""


def _run(*arguments: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *arguments], capture_output=True, text=True, check=True
    )
    assert "Usage: cosdoc-certs" in done.stdout or arguments[0] == "--version"
    return json.loads(done.stderr)  # type: ignore[no-any-return]


def _heavy(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return [name for name in HEAVY if name in modules]


def test_the_help_loads_no_heavy_library() -> None:
    assert _heavy(_run("--help")["modules"]) == []


# The lab's own commands (lab, demo, make-test-certs) list the lab's scenarios and defaults
# in their options, so their help loads the lab.
@pytest.mark.parametrize(
    "command",
    [
        "inspect",
        "status",
        "plan",
        "apply",
        "verify",
        "rollback",
        "svarut",
        "svarut apply",
        "inventory",
        "inventory status",
        "export-public",
    ],
)
def test_a_commands_help_loads_no_heavy_library(command: str) -> None:
    assert _heavy(_run(*command.split(), "--help")["modules"]) == []


@pytest.mark.parametrize("arguments", [("--help",), ("--version",)])
def test_at_exit_the_objects_left_are_not_garbage_collected(arguments: tuple[str, ...]) -> None:
    assert _run(*arguments)["frozen"] > 0  # type: ignore[operator]
