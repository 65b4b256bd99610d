"""What a stop says: a command that changes nothing says so, and a stopped SvarUT phase is
reported as a stop, not as ``CancelledError()``. Against the lab (real pypsrp, asyncssh, TLS).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cosdoc_certs import rotation
from cosdoc_certs._signals import SignalReceived
from cosdoc_certs.certs import load_bundle
from cosdoc_certs.journal import Journal
from cosdoc_certs.lab.runner import Lab

pytestmark = pytest.mark.timeout(120)

WINRM_PASSWORD_ENV = "STOP_TEST_WINRM_PASSWORD"
SLOW_GATHER_SECONDS = 3.0


def test_ctrl_c_during_verify_says_verify_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    info = lab.connection_info()
    lab.faults.slow_pipeline("gather", SLOW_GATHER_SECONDS)
    arguments = [
        *("verify", "--name", "lab", "--host", info.host, "--port", str(info.https_port)),
        *("--user", info.username, "--auth", "basic", "--ca-bundle", str(info.ca_file)),
        *("--winrm-password-env", WINRM_PASSWORD_ENV, "--journal", str(_a_run(lab, tmp_path))),
    ]
    lab.https.recorder.reset()
    process = subprocess.Popen(
        [sys.executable, "-m", "cosdoc_certs", *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, WINRM_PASSWORD_ENV: info.password},
    )
    try:
        while not lab.https.recorder.requests:  # the session is being opened
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "verify changes nothing" in stderr
    assert "rollback" not in stderr
    assert "Traceback" not in stderr


def _a_run(lab: Lab, folder: Path) -> Path:
    """The journal of a finished rotation of the lab (applied, then kept)."""
    info = lab.connection_info()
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    target = rotation.lab_target(info)
    return rotation.apply(rotation.plan(target, bundle), journal_dir=folder).journal_path


def test_a_stopped_svarut_phase_is_reported_as_a_stop(lab: Lab, tmp_path: Path) -> None:
    info = lab.connection_info()
    target = rotation.lab_target(info)
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    said: list[str] = []

    def interrupt_during_svarut(message: str) -> None:
        said.append(message)
        if message.startswith("SvarUT: installing"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SignalReceived):
        rotation.apply(
            rotation.plan(target, bundle), journal_dir=tmp_path, progress=interrupt_during_svarut
        )
    (journal,) = [Journal.load(path) for path in tmp_path.glob("*-svarut-*.json")]
    words = [*said, str(journal.to_dict())]
    assert not [line for line in words if "CancelledError" in line], words
    assert any("stopped" in line for line in said), said
