"""The fleet read path: what a Windows-only fleet loads, and transports built in parallel."""

from __future__ import annotations

import os
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


# a fleet status read as `cosdoc-certs inventory status` does it, in a fresh interpreter: every
# server refuses the connection at once; prints what it loaded and each installation's error
_FLEET_STATUS = """
import socket, sys
from pathlib import Path
from cosdoc_certs import rotation
from cosdoc_certs.inventory import parse_inventory

with socket.socket() as unused:
    unused.bind(("127.0.0.1", 0))
    port = unused.getsockname()[1]
windows = (
    '[customers.{name}.windows]\\nhost = "127.0.0.1"\\nport = {port}\\nuser = "lab"\\n'
    'auth = "ntlm"\\nhttp = true\\npassword_env = "COSDOC_FLEET_TEST_PASSWORD"\\n'
)
text = "".join(windows.format(name=name, port=port) for name in ("a", "b", "c"))
if sys.argv[1] == "with-svarut":
    text += f'[customers.c.svarut]\\nhost = "127.0.0.1"\\nport = {port}\\n'
fleet = parse_inventory(text, Path("fleet.toml"))
statuses = rotation.status_many([rotation.Target.from_customer(c) for c in fleet.customers])
print(" ".join(sorted({"asyncssh", "rich"} & set(sys.modules))) or "-")
for read in statuses:
    print(read.target, "; ".join(read.errors))
"""


def _run(code: str, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
        env={**os.environ, "COSDOC_FLEET_TEST_PASSWORD": "not-a-secret"},
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


def test_a_windows_only_fleet_read_does_not_load_the_ssh_client() -> None:
    loaded, *reads = _run(_FLEET_STATUS, "windows-only").splitlines()
    assert [read.split()[0] for read in reads] == ["a", "b", "c"]
    assert all("Windows:" in read and "SvarUT" not in read for read in reads)  # it did read
    assert "asyncssh" not in loaded.split()


def test_a_fleet_with_a_svarut_host_loads_the_ssh_client_for_it() -> None:
    loaded, *reads = _run(_FLEET_STATUS, "with-svarut").splitlines()
    assert "SvarUT:" in reads[2]
    assert "asyncssh" in loaded.split()
