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
from pathlib import Path

import pytest
from lab_cli import (
    apply_arguments,
    journals_of,
    kill_apply_at,
    rollback,
    staging_folders,
    start,
    wait_for_line,
)

from cosdoc_certs import rotation, svarut
from cosdoc_certs._signals import SignalReceived
from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.journal import Outcome
from cosdoc_certs.lab.runner import Lab

pytestmark = pytest.mark.timeout(120)

SLOW_APPLY_SECONDS = 2.0


def _state(lab: Lab) -> rotation.InstallationStatus:
    return rotation.installation_status(rotation.lab_target(lab.connection_info()))


def _rotation_of(
    lab: Lab,
) -> tuple[rotation.Target, CertificateBundle, rotation.InstallationStatus]:
    """The lab installation, the lab's new certificates, and the installation's state now."""
    target = rotation.lab_target(lab.connection_info(), name="testkommune")
    info = lab.connection_info()
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    return target, bundle, rotation.installation_status(target)


def test_sigterm_to_cosdoc_certs_apply_during_the_windows_call_restores_both_hosts(
    lab: Lab, tmp_path: Path
) -> None:
    before = _state(lab)
    journals = tmp_path / "journals"
    lab.faults.slow_pipeline("apply", SLOW_APPLY_SECONDS)
    process = start(lab, apply_arguments(lab, journals))
    try:
        read = wait_for_line(process, "Windows: applying")
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
    (windows,) = journals_of(journals, "windows")
    assert windows.outcome is Outcome.ROLLED_BACK
    assert "SIGTERM" in windows.to_dict()["message"]
    (run,) = journals_of(journals, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    assert [(step["name"], step["status"]) for step in run.steps] == [("windows", "failed")]
    assert journals_of(journals, "svarut") == []  # SvarUT was never touched


def test_sigint_during_the_svarut_phase_restores_both_hosts_then_stops(
    lab: Lab, tmp_path: Path
) -> None:
    target, bundle, before = _rotation_of(lab)
    handler = signal.getsignal(signal.SIGINT)
    rplan = rotation.plan(target, bundle)

    def interrupt_during_svarut(message: str) -> None:
        if message.startswith("SvarUT: installing"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SignalReceived, match="SIGINT"):
        rotation.apply(rplan, journal_dir=tmp_path, progress=interrupt_during_svarut)
    assert signal.getsignal(signal.SIGINT) == handler
    assert before.differences(rotation.installation_status(target)) == []
    (svarut,) = journals_of(tmp_path, "svarut")
    assert svarut.outcome is Outcome.ROLLED_BACK
    (windows,) = journals_of(tmp_path, "windows")
    assert windows.outcome is Outcome.ROLLED_BACK
    (run,) = journals_of(tmp_path, "rotation")
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
    (journal,) = journals_of(tmp_path, "svarut")
    assert journal.outcome is Outcome.ROLLED_BACK


def test_keyboard_interrupt_raised_during_the_svarut_phase_restores_both_hosts(
    lab: Lab, tmp_path: Path
) -> None:
    target, bundle, before = _rotation_of(lab)

    def interrupt_during_svarut(message: str) -> None:
        if message.startswith("SvarUT: installing"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotation.apply(
            rotation.plan(target, bundle), journal_dir=tmp_path, progress=interrupt_during_svarut
        )
    assert before.differences(rotation.installation_status(target)) == []
    (run,) = journals_of(tmp_path, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    assert [(step["name"], step["status"]) for step in run.steps] == [
        ("windows", "undone"),
        ("svarut", "failed"),
    ]


def test_sigint_after_the_svarut_phase_still_restores_both_hosts_then_stops(
    lab: Lab, tmp_path: Path
) -> None:
    target, bundle, before = _rotation_of(lab)

    def interrupt_after_svarut(message: str) -> None:
        if message.startswith("SvarUT: done"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SignalReceived, match="SIGINT"):
        rotation.apply(
            rotation.plan(target, bundle), journal_dir=tmp_path, progress=interrupt_after_svarut
        )
    assert before.differences(rotation.installation_status(target)) == []
    (run,) = journals_of(tmp_path, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    assert {step["status"] for step in run.steps} == {"undone"}


@pytest.mark.parametrize(
    "line", ["Windows: applying", "SvarUT: installing", "SvarUT: restarting"]
)
def test_rollback_after_kill_9_restores_both_hosts_and_removes_the_staged_key(
    lab: Lab, tmp_path: Path, line: str
) -> None:
    before = _state(lab)
    staging_before = staging_folders(lab)
    journals = tmp_path / "journals"
    if line.startswith("Windows"):
        lab.faults.slow_pipeline("apply", SLOW_APPLY_SECONDS)  # killed while the server works
    kill_apply_at(lab, journals, line)
    lab.faults.clear()
    rolled = rollback(lab, journals)
    assert rolled.returncode == 0, rolled.stderr
    assert "nothing left to undo" not in rolled.stdout + rolled.stderr
    assert "Traceback" not in rolled.stderr
    assert before.differences(_state(lab)) == []
    assert staging_folders(lab) == staging_before
    (run,) = journals_of(journals, "rotation")
    assert run.outcome is Outcome.ROLLED_BACK
    again = rollback(lab, journals)  # nothing is left: a second rollback finds no run
    assert again.returncode != 0
    assert before.differences(_state(lab)) == []


def test_kernel_interrupt_while_the_loop_runs_in_a_worker_rolls_back_with_the_result(
    lab: Lab, tmp_path: Path
) -> None:
    """A notebook: a loop already runs in the main thread, so the run's loop is in a worker;
    the kernel's interrupt is SIGINT to the main thread, which only waits for that worker."""
    target, bundle, before = _rotation_of(lab)
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
    (run,) = journals_of(tmp_path, "rotation")
    assert run.path == result.journal_path
