"""Driving the real ``cosdoc-certs`` CLI in a subprocess against a lab in this process.

For the tests that need a process of their own: signals from outside (SIGTERM, and SIGKILL,
which no handler can catch), then ``rollback`` from a fresh process reading the journals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cosdoc_certs.journal import Journal
from cosdoc_certs.lab.runner import Lab

WINRM_PASSWORD_ENV = "LAB_WINRM_PASSWORD"
PFX_PASSWORD_ENV = "LAB_PFX_PASSWORD"


def installation_arguments(lab: Lab, journals: Path) -> list[str]:
    """The options naming the lab installation (both hosts) and the journal folder."""
    info = lab.connection_info()
    assert info.svarut is not None
    endpoints = [f"--tls-endpoint={key}={value}" for key, value in info.tls_endpoints.items()]
    return [
        *("--yes", "--journal-dir", str(journals)),
        *("--name", "testkommune", "--host", info.host, "--port", str(info.https_port)),
        *("--user", info.username, "--auth", "basic", "--ca-bundle", str(info.ca_file)),
        *("--winrm-password-env", WINRM_PASSWORD_ENV, *endpoints),
        *("--svarut-host", info.svarut.host, "--svarut-port", str(info.svarut.ssh_port)),
        *("--svarut-user", info.svarut.username, "--svarut-host-key", info.svarut.host_key),
        *("--svarut-identity", str(info.svarut.client_key), "--svarut-layout", "single"),
        *("--svarut-tls-port", str(info.svarut.tls_port)),
    ]


def apply_arguments(lab: Lab, journals: Path) -> list[str]:
    """``apply`` of the lab's new certificates into the lab installation."""
    info = lab.connection_info()
    return [
        "apply",
        *installation_arguments(lab, journals),
        *("--pfx", str(info.pfx_files["pair"]), "--pfx", str(info.pfx_files["ssl"])),
        *("--password-env", PFX_PASSWORD_ENV),
    ]


def environment(lab: Lab) -> dict[str, str]:
    """This process's environment plus the lab's passwords in the variables named above."""
    info = lab.connection_info()
    return {**os.environ, WINRM_PASSWORD_ENV: info.password, PFX_PASSWORD_ENV: info.pfx_password}


def start(lab: Lab, arguments: list[str]) -> subprocess.Popen[str]:
    """``python -m cosdoc_certs ARGUMENTS`` with stderr piped, no stdin."""
    return subprocess.Popen(
        [sys.executable, "-m", "cosdoc_certs", *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(lab),
    )


def journals_of(folder: Path, kind: str) -> list[Journal]:
    """The journals of ``kind`` in ``folder``, oldest first."""
    return [Journal.load(path) for path in sorted(folder.glob(f"*-{kind}-*.json"))]


def wait_for_line(process: subprocess.Popen[str], text: str) -> list[str]:
    """Read the process's stderr until a line contains ``text``; the lines read."""
    assert process.stderr is not None
    lines: list[str] = []
    while not any(text in line for line in lines):
        line = process.stderr.readline()
        assert line, f"the process ended before {text!r}: {''.join(lines)}"
        lines.append(line)
    return lines


def kill_apply_at(lab: Lab, journals: Path, line: str) -> str:
    """Start ``cosdoc-certs apply``, SIGKILL it when stderr shows ``line``; its stderr."""
    process = start(lab, apply_arguments(lab, journals))
    try:
        read = wait_for_line(process, line)
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return "".join(read)


def rollback(lab: Lab, journals: Path) -> subprocess.CompletedProcess[str]:
    """``cosdoc-certs rollback --yes`` of the latest run in ``journals``, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "cosdoc_certs", "rollback", *installation_arguments(lab, journals)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environment(lab),
        timeout=120,
        check=False,
    )


def staging_folders(lab: Lab) -> list[str]:
    """The staging folders in the lab SvarUT host's /tmp."""
    assert lab.svarut is not None
    return sorted(p.name for p in (lab.svarut.sandbox / "tmp").glob("cosdoc-certs-*"))
