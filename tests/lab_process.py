"""`cosdoc-certs lab --json` as a subprocess, for the tests that drive the command itself."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def running_lab(*arguments: str) -> Iterator[dict[str, Any]]:
    """`cosdoc-certs lab --json ARGUMENTS` running until the block ends; its JSON document."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cosdoc_certs", "lab", "--json", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    text = ""
    try:
        for line in process.stdout:
            text += line
            if line.startswith("}"):
                break
        yield json.loads(text)
    finally:
        process.terminate()
        process.wait(timeout=30)
