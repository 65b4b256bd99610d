"""Signals during a rotation: the host being changed is rolled back (both hosts during the
SvarUT phase), then the run stops — although the Windows phase runs in a worker thread.

One test sends SIGTERM to a real ``cosdoc-certs apply`` process while the lab holds its
``apply`` pipeline open (the lab's slow-pipeline fault); one sends SIGINT to this process
during the SvarUT phase of :func:`rotation.apply`. Real pypsrp, asyncssh and TLS throughout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cosdoc_certs import rotation, svarut
from cosdoc_certs._signals import SignalReceived
from cosdoc_certs.certs import load_bundle
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.runner import Lab

pytestmark = pytest.mark.timeout(120)

WINRM_PASSWORD_ENV = "LAB_WINRM_PASSWORD"
PFX_PASSWORD_ENV = "LAB_PFX_PASSWORD"
SLOW_APPLY_SECONDS = 2.0


def _state(lab: Lab) -> rotation.InstallationStatus:
    return rotation.installation_status(rotation.lab_target(lab.connection_info()))


def _apply_arguments(lab: Lab, journals: Path) -> list[str]:
    info = lab.connection_info()
    assert info.svarut is not None
    endpoints = [f"--tls-endpoint={key}={value}" for key, value in info.tls_endpoints.items()]
    return [
        *("apply", "--yes", "--journal-dir", str(journals)),
        *("--name", "testkommune", "--host", info.host, "--port", str(info.https_port)),
        *("--user", info.username, "--auth", "basic", "--ca-bundle", str(info.ca_file)),
        *("--winrm-password-env", WINRM_PASSWORD_ENV, *endpoints),
        *("--svarut-host", info.svarut.host, "--svarut-port", str(info.svarut.ssh_port)),
        *("--svarut-user", info.svarut.username, "--svarut-host-key", info.svarut.host_key),
        *("--svarut-identity", str(info.svarut.client_key), "--svarut-layout", "single"),
        *("--svarut-tls-port", str(info.svarut.tls_port)),
        *("--pfx", str(info.pfx_files["pair"]), "--pfx", str(info.pfx_files["ssl"])),
        *("--password-env", PFX_PASSWORD_ENV),
    ]


def _journals(folder: Path, kind: str) -> list[Journal]:
    return [Journal.load(path) for path in sorted(folder.glob(f"*-{kind}-*.json"))]


def _wait_for_line(process: subprocess.Popen[str], text: str) -> list[str]:
    """Read the process's stderr until a line contains ``text``; the lines read."""
    assert process.stderr is not None
    lines: list[str] = []
    while not any(text in line for line in lines):
        line = process.stderr.readline()
        assert line, f"the process ended before {text!r}: {''.join(lines)}"
        lines.append(line)
    return lines


def test_sigterm_to_cosdoc_certs_apply_during_the_windows_call_restores_both_hosts(
    lab: Lab, tmp_path: Path
) -> None:
    before = _state(lab)
    info = lab.connection_info()
    journals = tmp_path / "journals"
    lab.faults.slow_pipeline("apply", SLOW_APPLY_SECONDS)
    environment = {
        **os.environ,
        WINRM_PASSWORD_ENV: info.password,
        PFX_PASSWORD_ENV: info.pfx_password,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cosdoc_certs", *_apply_arguments(lab, journals)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        read = _wait_for_line(process, "Windows: applying")
        process.send_signal(signal.SIGTERM)  # the apply pipeline is being held open
        lab.faults.clear()  # the rollback's own call runs at full speed
        _, rest = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = "".join(read) + rest
    assert process.returncode == 130, stderr  # stopped by a signal, after restoring
    assert "error: stopped by SIGTERM — " in stderr
    assert "Ctrl+C" not in stderr
    assert "rolling back" in stderr
    assert "Traceback" not in stderr
    assert before.differences(_state(lab)) == []
    (windows,) = _journals(journals, "windows")
    assert windows.outcome is Outcome.ROLLED_BACK
    assert "SIGTERM" in windows.to_dict()["message"]
    (run,) = _journals(journals, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    assert [(step["name"], step["status"]) for step in run.steps] == [("windows", "failed")]
    assert _journals(journals, "svarut") == []  # SvarUT was never touched


def test_sigint_during_the_svarut_phase_restores_both_hosts_then_stops(
    lab: Lab, tmp_path: Path
) -> None:
    target = rotation.lab_target(lab.connection_info(), name="testkommune")
    info = lab.connection_info()
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    before = rotation.installation_status(target)
    handler = signal.getsignal(signal.SIGINT)
    rplan = rotation.plan(target, bundle)

    def interrupt_during_svarut(message: str) -> None:
        if message.startswith("SvarUT: installing"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SignalReceived, match="SIGINT"):
        rotation.apply(rplan, journal_dir=tmp_path, progress=interrupt_during_svarut)
    assert signal.getsignal(signal.SIGINT) == handler
    assert before.differences(rotation.installation_status(target)) == []
    (svarut,) = _journals(tmp_path, "svarut")
    assert svarut.outcome is Outcome.ROLLED_BACK
    (windows,) = _journals(tmp_path, "windows")
    assert windows.outcome is Outcome.ROLLED_BACK
    (run,) = _journals(tmp_path, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    assert [(step["name"], step["status"]) for step in run.steps] == [
        ("windows", "undone"),
        ("svarut", "failed"),
    ]


def test_sigterm_during_a_svarut_only_apply_restores_the_host_then_stops(
    lab: Lab, tmp_path: Path
) -> None:
    info = lab.connection_info()
    target = rotation.lab_target(info).svarut
    assert target is not None
    new = svarut.load_new_certificate([info.pfx_files["ssl"]], info.pfx_password)
    before = svarut.status(target)
    splan = svarut.plan(target, new)
    handler = signal.getsignal(signal.SIGTERM)

    def terminate_while_installing(message: str) -> None:
        if message.startswith("installing"):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SignalReceived, match="SIGTERM"):
        svarut.apply(target, splan, journal_dir=tmp_path, progress=terminate_while_installing)
    assert signal.getsignal(signal.SIGTERM) == handler
    after = svarut.status(target)
    assert after.served_thumbprint == before.served_thumbprint
    assert after.current_thumbprint == before.current_thumbprint
    (journal,) = _journals(tmp_path, "svarut")
    assert journal.outcome is Outcome.ROLLED_BACK


def test_keyboard_interrupt_raised_during_the_svarut_phase_restores_both_hosts(
    lab: Lab, tmp_path: Path
) -> None:
    target = rotation.lab_target(lab.connection_info(), name="testkommune")
    info = lab.connection_info()
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    before = rotation.installation_status(target)

    def interrupt_during_svarut(message: str) -> None:
        if message.startswith("SvarUT: installing"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotation.apply(
            rotation.plan(target, bundle), journal_dir=tmp_path, progress=interrupt_during_svarut
        )
    assert before.differences(rotation.installation_status(target)) == []
    (run,) = _journals(tmp_path, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    assert [(step["name"], step["status"]) for step in run.steps] == [
        ("windows", "undone"),
        ("svarut", "failed"),
    ]


def test_sigint_after_the_svarut_phase_still_restores_both_hosts_then_stops(
    lab: Lab, tmp_path: Path
) -> None:
    target = rotation.lab_target(lab.connection_info(), name="testkommune")
    info = lab.connection_info()
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    before = rotation.installation_status(target)

    def interrupt_after_svarut(message: str) -> None:
        if message.startswith("SvarUT: done"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SignalReceived, match="SIGINT"):
        rotation.apply(
            rotation.plan(target, bundle), journal_dir=tmp_path, progress=interrupt_after_svarut
        )
    assert before.differences(rotation.installation_status(target)) == []
    (run,) = _journals(tmp_path, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    assert {step["status"] for step in run.steps} == {"undone"}


def _kill_apply_at(lab: Lab, journals: Path, line: str) -> str:
    """Start ``cosdoc-certs apply``, SIGKILL it when stderr shows ``line``; its stderr."""
    info = lab.connection_info()
    environment = {
        **os.environ,
        WINRM_PASSWORD_ENV: info.password,
        PFX_PASSWORD_ENV: info.pfx_password,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cosdoc_certs", *_apply_arguments(lab, journals)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    try:
        read = _wait_for_line(process, line)
        process.kill()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return "".join(read)


def _rollback(lab: Lab, journals: Path) -> subprocess.CompletedProcess[str]:
    info = lab.connection_info()
    assert info.svarut is not None
    arguments = [
        a
        for a in _apply_arguments(lab, journals)
        if a not in ("apply", "--pfx", "--password-env", PFX_PASSWORD_ENV)
        and a not in (str(info.pfx_files["pair"]), str(info.pfx_files["ssl"]))
    ]
    return subprocess.run(
        [sys.executable, "-m", "cosdoc_certs", "rollback", "--yes", *arguments],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, WINRM_PASSWORD_ENV: info.password},
        timeout=120,
        check=False,
    )


def _staging_folders(lab: Lab) -> list[str]:
    """The staging folders in the lab SvarUT host's /tmp."""
    assert lab.svarut is not None
    return sorted(p.name for p in (lab.svarut.sandbox / "tmp").glob("cosdoc-certs-*"))


@pytest.mark.parametrize(
    "line", ["Windows: applying", "SvarUT: installing", "SvarUT: restarting"]
)
def test_rollback_after_kill_9_restores_both_hosts_and_removes_the_staged_key(
    lab: Lab, tmp_path: Path, line: str
) -> None:
    before = _state(lab)
    staging_before = _staging_folders(lab)
    journals = tmp_path / "journals"
    if line.startswith("Windows"):
        lab.faults.slow_pipeline("apply", SLOW_APPLY_SECONDS)  # killed while the server works
    _kill_apply_at(lab, journals, line)
    lab.faults.clear()
    rolled = _rollback(lab, journals)
    assert rolled.returncode == 0, rolled.stderr
    assert "nothing left to undo" not in rolled.stdout + rolled.stderr
    assert "Traceback" not in rolled.stderr
    assert before.differences(_state(lab)) == []
    assert _staging_folders(lab) == staging_before
    (run,) = _journals(journals, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    again = _rollback(lab, journals)  # nothing is left: a second rollback finds no run
    assert again.returncode != 0
    assert before.differences(_state(lab)) == []


def test_kernel_interrupt_while_the_loop_runs_in_a_worker_rolls_back_with_the_result(
    lab: Lab, tmp_path: Path
) -> None:
    """A notebook: a loop already runs in the main thread, so the run's loop is in a worker;
    the kernel's interrupt is SIGINT to the main thread, which only waits for that worker."""
    target = rotation.lab_target(lab.connection_info(), name="testkommune")
    info = lab.connection_info()
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    before = rotation.installation_status(target)
    rplan = rotation.plan(target, bundle)

    def interrupt_during_svarut(message: str) -> None:
        if message.startswith("SvarUT: installing"):
            os.kill(os.getpid(), signal.SIGINT)

    async def cell() -> rotation.RotationResult:
        return rotation.apply(rplan, journal_dir=tmp_path, progress=interrupt_during_svarut)

    loop = asyncio.new_event_loop()  # like a kernel's loop: no SIGINT handler of its own
    try:
        with pytest.raises(SignalReceived, match="SIGINT") as caught:
            loop.run_until_complete(cell())
    finally:
        loop.close()
    result = caught.value.result
    assert isinstance(result, rotation.RotationResult)
    assert result.outcome is Outcome.ROLLED_BACK
    assert before.differences(rotation.installation_status(target)) == []
    (run,) = _journals(tmp_path, "rotation")
    assert run.path == result.journal_path
