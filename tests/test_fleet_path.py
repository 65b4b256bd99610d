"""The fleet read path: what a Windows-only fleet loads, and transports built in parallel."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import pytest

from cosdoc_certs.windows.connection import ConnectionOptions

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class _Overlaps:
    """ElementTree's register_namespace, slowed down, counting calls that overlap."""

    def __init__(self, register: Callable[[str, str], None]) -> None:
        self._register = register
        self._lock = threading.Lock()
        self.inside = self.most = self.calls = 0

    def __call__(self, prefix: str, uri: str) -> None:
        with self._lock:
            self.inside += 1
            self.calls += 1
            self.most = max(self.most, self.inside)
        try:
            time.sleep(0.002)  # a thread switch here lets another build delete this prefix
            self._register(prefix, uri)
        finally:
            with self._lock:
                self.inside -= 1


def test_transports_built_in_parallel_threads_register_namespaces_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pypsrp's WSMan() deletes and re-adds its prefixes in ElementTree's process-wide map;
    # two builds at once broke a 32-installation fleet read ("dictionary keys changed
    # during iteration")
    overlaps = _Overlaps(ElementTree.register_namespace)
    monkeypatch.setattr(ElementTree, "register_namespace", overlaps)
    options = ConnectionOptions("127.0.0.1", username="u", password="p", auth="ntlm", https=False)
    threads = [threading.Thread(target=options.wsman) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps.calls >= 4  # each build registered its prefixes
    assert overlaps.most == 1
