"""How many WinRM round trips a rotation costs, counted by the lab's recorder.

A rotation with verification is two PowerShell pipelines — gather (plan) and apply, which
ends by reading the state it reached with gather.ps1 in the same pipeline — over one WinRM
session kept open by ``with target:``. Real pypsrp against the lab's endpoint; the figures
are counts, never times.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cosdoc_certs import rotation
from cosdoc_certs.certs import CertificateBundle
from cosdoc_certs.errors import ApplyError
from cosdoc_certs.journal import Outcome
from cosdoc_certs.lab.faults import CIM_TIMEOUT
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.plan import ChangeKind
from cosdoc_certs.windows.verify import FRESH_GATHER

pytestmark = pytest.mark.timeout(120)

IDLE = 0.5  # seconds the lab keeps an idle shell in the session-expiry test
MAX_REQUESTS = 9
"""WS-Man requests of a rotation: Create and Receive (open), Command and Receive (gather),
Send and Receive (the session key for the PFX password), Command and Receive (apply), Delete;
not counted: a Receive that got only the first command's first-use progress record (timing)."""
MAX_ROLLBACK_REQUESTS = 7
"""WS-Man requests of a rollback in one session: Create and Receive (open), Command and Receive
(the gather that looks for hand edits), Command and Receive (the undo, ending with its read of
the state it reached), Delete."""


def test_a_verified_rotation_is_two_pipelines_in_one_session(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    recorder = lab.https.recorder
    recorder.reset()
    with target:
        rplan = rotation.plan(target, bundle)
        result = rotation.apply(rplan, journal_dir=tmp_path, verify=True)
    assert result.outcome is Outcome.APPLIED, str(result)
    assert result.verification is not None
    assert result.verification.ok, result.verification.to_text()
    assert recorder.script_names == ["gather", "apply"]
    assert len(recorder.pipelines) == 2
    assert len(recorder.shells) == 1
    assert recorder.progress_only_receives <= 1  # the first-use progress record came alone
    requests = sum(recorder.requests.values()) - recorder.progress_only_receives
    assert requests <= MAX_REQUESTS, dict(recorder.requests)
    assert recorder.requests["Delete"] == 1  # the session is closed when the block ends
    assert "post-state apply.ps1 read" in result.verification.to_text()


def test_verify_run_alone_reads_the_server_afresh(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    result = rotation.apply(rotation.plan(target, bundle), journal_dir=tmp_path)
    assert result.windows is not None
    assert result.windows.post_state is not None  # read, but not used by a later verify
    lab.https.recorder.reset()
    report = rotation.verify(target, result.journal_path)
    assert lab.https.recorder.script_names == ["gather"]
    assert report.windows is not None
    assert report.windows.facts_from == FRESH_GATHER
    assert report.ok, report.to_text()


def test_a_failed_post_state_read_leaves_the_run_applied_and_verify_gathers(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    rplan = rotation.plan(target, bundle)
    lab.server.faults.fail_gather(times=1)  # the read at the end of apply.ps1
    lab.https.recorder.reset()
    with target:
        result = rotation.apply(rplan, journal_dir=tmp_path, verify=True)
    assert result.outcome is Outcome.APPLIED, str(result)
    assert result.windows is not None
    assert result.windows.post_state is None
    assert result.windows.post_state_problem is not None
    assert CIM_TIMEOUT in result.windows.post_state_problem
    assert result.windows.to_dict()["post_state_read"] is False
    assert lab.https.recorder.script_names == ["apply", "gather"]  # the fallback read
    report = result.verification
    assert report is not None
    assert report.windows is not None
    assert report.ok, report.to_text()
    assert report.windows.facts_from.startswith(FRESH_GATHER)
    assert CIM_TIMEOUT in report.windows.facts_from


def test_a_failed_apply_is_undone_and_checked_in_one_more_pipeline(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    rplan = rotation.plan(target, bundle)
    before = {path: lab.server.files.read(path) for path in _config_paths(rplan)}
    lab.server.faults.fail_action(_first_action_after_the_writes(rplan))
    lab.https.recorder.reset()
    with pytest.raises(ApplyError) as raised:
        rotation.apply(rplan, journal_dir=tmp_path, verify=True)
    assert raised.value.rolled_back
    # the apply (which stopped: no post-state), its undo, which ends by reading the state it
    # reached: the check that the original bytes are back needs no gather of its own
    assert lab.https.recorder.script_names == ["apply", "apply"]
    assert {path: lab.server.files.read(path) for path in before} == before


def test_a_failed_undo_post_state_read_is_checked_by_a_gather_of_its_own(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    rplan = rotation.plan(target, bundle)
    before = {path: lab.server.files.read(path) for path in _config_paths(rplan)}
    lab.server.faults.fail_action(_first_action_after_the_writes(rplan))
    lab.server.faults.fail_gather(post_state_only=True)  # the apply stopped: its undo's read
    lab.https.recorder.reset()
    said: list[str] = []
    with pytest.raises(ApplyError) as raised:
        rotation.apply(rplan, journal_dir=tmp_path, progress=said.append)
    assert raised.value.rolled_back
    assert lab.https.recorder.script_names == ["apply", "apply", "gather"]  # the fallback
    assert {path: lab.server.files.read(path) for path in before} == before
    assert any("gathering again" in line and CIM_TIMEOUT in line for line in said), said
    assert "a gather of its own" in raised.value.hint
    assert CIM_TIMEOUT in raised.value.hint


def test_an_apply_that_failed_before_changing_a_file_needs_no_undo_call_nor_gather(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    rplan = rotation.plan(target, bundle)
    imports = _count(rplan, ChangeKind.IMPORT_CERT)
    assert imports >= 2
    lab.server.faults.fail_action(imports)  # the last import: the others stay (by design)
    lab.https.recorder.reset()
    said: list[str] = []
    with pytest.raises(ApplyError) as raised:
        rotation.apply(rplan, journal_dir=tmp_path, progress=said.append)
    assert raised.value.rolled_back
    assert lab.https.recorder.script_names == ["apply"]  # nothing to undo, nothing to check
    assert not any("undoing" in line or "gathering" in line for line in said), said


def test_a_rollback_is_two_pipelines_checked_over_the_undos_post_state(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    rplan = rotation.plan(target, bundle)
    before = {path: lab.server.files.read(path) for path in _config_paths(rplan)}
    with target:
        result = rotation.apply(rplan, journal_dir=tmp_path)
    recorder = lab.https.recorder
    recorder.reset()
    with target:
        undone = rotation.rollback(target, result.journal_path, journal_dir=tmp_path)
    assert undone.outcome is Outcome.ROLLED_BACK, str(undone)
    assert {path: lab.server.files.read(path) for path in before} == before
    # the check for hand edits before anything changes; the undo, which reads what it reached
    assert recorder.script_names == ["gather", "apply"]
    assert len(recorder.pipelines) == 2
    assert len(recorder.shells) == 1
    assert recorder.progress_only_receives <= 1
    requests = sum(recorder.requests.values()) - recorder.progress_only_receives
    assert requests <= MAX_ROLLBACK_REQUESTS, dict(recorder.requests)
    assert undone.windows is not None
    assert undone.windows.post_state is not None  # the restored state the check was made over
    assert undone.windows.post_state_problem is None


def test_a_rollback_whose_undo_read_fails_checks_with_a_gather_of_its_own(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    rplan = rotation.plan(target, bundle)
    before = {path: lab.server.files.read(path) for path in _config_paths(rplan)}
    result = rotation.apply(rplan, journal_dir=tmp_path)
    lab.server.faults.fail_gather(post_state_only=True)
    lab.https.recorder.reset()
    said: list[str] = []
    undone = rotation.rollback(
        target, result.journal_path, journal_dir=tmp_path, progress=said.append
    )
    assert undone.outcome is Outcome.ROLLED_BACK, str(undone)
    assert {path: lab.server.files.read(path) for path in before} == before
    assert lab.https.recorder.script_names == ["gather", "apply", "gather"]
    assert undone.windows is not None
    assert undone.windows.post_state is None
    assert undone.windows.post_state_problem is not None
    assert CIM_TIMEOUT in undone.windows.post_state_problem
    assert "a gather of its own" in undone.windows.message
    assert any("gathering again" in line and CIM_TIMEOUT in line for line in said), said


def test_a_rollback_that_cannot_read_the_state_at_all_says_it_is_not_proven(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    """Both reads after the undo fail: nothing proves the restoration, so the rollback fails
    (not rolled back) and says why; run again, as documented, it ends rolled back."""
    rplan = rotation.plan(target, bundle)
    before = {path: lab.server.files.read(path) for path in _config_paths(rplan)}
    result = rotation.apply(rplan, journal_dir=tmp_path)

    def fail_the_reads_after_the_hand_edit_check(line: str) -> None:
        if "undoing" in line:  # the hand-edit check has gathered; the undo call is next
            lab.server.faults.fail_gather(times=2)

    lab.https.recorder.reset()
    with pytest.raises(ApplyError) as raised:
        rotation.rollback(
            target,
            result.journal_path,
            journal_dir=tmp_path,
            progress=fail_the_reads_after_the_hand_edit_check,
        )
    assert not raised.value.rolled_back
    assert CIM_TIMEOUT in raised.value.problem
    assert lab.https.recorder.script_names == ["gather", "apply", "gather"]
    again = rotation.rollback(target, result.journal_path, journal_dir=tmp_path)
    assert again.outcome is Outcome.ROLLED_BACK
    assert {path: lab.server.files.read(path) for path in before} == before


def _count(rplan: rotation.RotationPlan, kind: ChangeKind) -> int:
    assert rplan.windows is not None
    return sum(1 for change in rplan.windows.actions if change.kind is kind)


def _first_action_after_the_writes(rplan: rotation.RotationPlan) -> int:
    """The 1-based number of the first action after the imports and config writes."""
    return _count(rplan, ChangeKind.IMPORT_CERT) + _count(rplan, ChangeKind.EDIT_CONFIG_KEY) + 1


def _config_paths(rplan: rotation.RotationPlan) -> list[str]:
    assert rplan.windows is not None
    return sorted({str(c.details["file"]) for c in rplan.windows.actions if "file" in c.details})


def test_the_session_kept_by_the_block_is_opened_again_after_the_servers_idle_timeout(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    """The consultant read the plan longer than WinRM keeps an idle shell: apply opens the
    session again (its PFX password encrypted for the new session) and still verifies."""
    lab.https.idle_timeout = IDLE
    recorder = lab.https.recorder
    recorder.reset()
    with target:
        rplan = rotation.plan(target, bundle)
        time.sleep(IDLE * 2)
        result = rotation.apply(rplan, journal_dir=tmp_path, verify=True)
    assert result.verification is not None
    assert result.verification.ok, result.verification.to_text()
    assert recorder.faults["ShellExpired"] == 1
    assert recorder.script_names == ["gather", "apply"]
    assert len(recorder.shells) == 2


def test_a_failed_call_in_the_block_drops_its_session_and_the_next_opens_one(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    recorder = lab.https.recorder
    recorder.reset()
    with target:
        rplan = rotation.plan(target, bundle)
        lab.faults.fail_pipeline("apply", "Access is denied.", times=1)
        with pytest.raises(ApplyError):
            rotation.apply(rplan, journal_dir=tmp_path)
        assert recorder.requests["Delete"] == 1  # dropped after the failure
        again = rotation.plan(target, bundle)
        assert again.windows is not None
        assert not again.windows.is_empty  # the failed run was rolled back
    assert len(recorder.shells) == 2
    assert recorder.requests["Delete"] == 2


def test_a_target_outside_a_block_opens_a_session_per_call(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle
) -> None:
    recorder = lab.https.recorder
    recorder.reset()
    rotation.plan(target, bundle)
    rotation.plan(target, bundle)
    assert len(recorder.shells) == 2
    assert recorder.requests["Delete"] == 2


def test_every_script_of_a_session_runs_in_a_scope_of_its_own(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    """A script command without UseLocalScope runs in the runspace's global scope (PowerShell's
    Command.cs: unspecified is false for a script), so gather.ps1's functions, variables,
    StrictMode and $ErrorActionPreference would still be there when apply.ps1 runs in the same
    session. Each script asks for a scope of its own, as a .ps1 file run with & gets."""
    recorder = lab.https.recorder
    recorder.reset()
    with target:
        rplan = rotation.plan(target, bundle)
        result = rotation.apply(rplan, journal_dir=tmp_path, verify=True)
        rotation.rollback(target, result.journal_path, journal_dir=tmp_path)
    assert len(recorder.pipelines) >= 4
    assert recorder.global_scope_pipelines == []
