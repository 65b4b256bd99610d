"""The rotation of a whole installation against the lab: real pypsrp to the lab's WinRM endpoint,
real asyncssh to the lab SvarUT host, real TLS handshakes.

A failure on one host leaves the installation as it was on every host: the SvarUT failure after
the Windows success rolls Windows back too (the lab SvarUT host's fault injection makes its
container exit after ``up -d``).
"""

from __future__ import annotations

import gc
import json
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cosdoc_certs import rotation
from cosdoc_certs.certs import CertificateBundle, load_bundle
from cosdoc_certs.errors import ApplyError, InputError
from cosdoc_certs.journal import Journal, Outcome
from cosdoc_certs.lab.runner import Lab

pytestmark = pytest.mark.timeout(120)


def _new(bundle: CertificateBundle) -> set[str]:
    return {info.thumbprint for info in bundle.certificates if info.role}


def test_plan_spans_both_hosts_and_changes_nothing(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle
) -> None:
    before = rotation.installation_status(target)
    rplan = rotation.plan(target, bundle)
    consumers = {change.consumer for change in rplan.plan.changes}
    assert {"Digihelse", "KPR", "Authentication", "SkatteIntegrasjonApi"} <= consumers
    assert {"IIS HTTPS bindings", "E-meldinger", "SvarUT nginx"} <= consumers
    assert rplan.svarut is not None
    assert rplan.svarut.new.thumbprint == bundle.ssl.thumbprint  # type: ignore[union-attr]
    assert "<U+200E>" in rplan.to_text()  # the seeded invisible character, shown in the diff
    assert rplan.to_dict()["svarut_host"] == "127.0.0.1"
    assert before.differences(rotation.installation_status(target)) == []


def test_rotation_verifies_rolls_back_and_takes_three_windows_round_trips(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    before = rotation.installation_status(target)
    rplan = rotation.plan(target, bundle)
    lab.https.recorder.reset()
    result = rotation.apply(rplan, journal_dir=tmp_path / "journals")
    report = rotation.verify(target, result.journal_path)
    assert lab.https.recorder.script_names == ["apply", "gather"]  # plus the plan's gather: 3
    assert result.outcome is Outcome.APPLIED, str(result)
    assert report.ok, report.to_text()
    assert report.windows is not None
    kinds = {check.kind for check in report.windows.checks}
    assert kinds >= {"uses", "doctor", "service", "pool", "binding"}
    after = rotation.installation_status(target)
    changed = before.differences(after)
    assert after.svarut is not None
    assert after.svarut.served_thumbprint == bundle.ssl.thumbprint  # type: ignore[union-attr]
    assert all(thumbprint in _new(bundle) for thumbprint in after.served.values())
    assert any("KPR.Overvaker" in line for line in changed)

    undone = rotation.rollback(target, journal_dir=tmp_path / "journals")
    assert undone.outcome is Outcome.ROLLED_BACK
    assert before.differences(rotation.installation_status(target)) == []
    rolled_back = rotation.verify(target, result.journal_path)  # the desired state, not the plan
    assert not rolled_back.ok
    assert rolled_back.windows is not None
    stale = [check for check in rolled_back.windows.failed if check.kind == "uses"]
    assert stale
    assert all("not the newest valid" in check.message for check in stale)
    assert any(check.kind == "binding" for check in rolled_back.windows.failed)
    assert rolled_back.svarut is not None
    assert not rolled_back.svarut.ok
    journal = Journal.load(result.journal_path)
    assert journal.outcome is Outcome.ROLLED_BACK
    assert {step["status"] for step in journal.steps} == {"undone"}
    text = "".join(path.read_text() for path in (tmp_path / "journals").glob("*.json"))
    assert lab.connection_info().pfx_password not in text


def test_svarut_failure_after_windows_success_rolls_both_back(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    before = rotation.installation_status(target)
    rplan = rotation.plan(target, bundle)
    assert lab.svarut is not None
    lab.svarut.faults.container_exits = True
    with pytest.raises(ApplyError) as caught:
        rotation.apply(rplan, journal_dir=tmp_path)
    assert caught.value.rolled_back
    assert caught.value.exit_code == 5
    assert "both hosts were rolled back" in str(caught.value)
    assert before.differences(rotation.installation_status(target)) == []
    run = Journal.load(next(tmp_path.glob("*-rotation-*.json")))
    assert run.outcome is Outcome.ROLLED_BACK
    assert [(s["name"], s["status"]) for s in run.steps] == [
        ("windows", "undone"),
        ("svarut", "failed"),
    ]
    assert all(Path(step["details"]["journal"]).is_file() for step in run.steps)
    again = rotation.rollback(target, run.path)  # both hosts were restored already
    assert again.message == "nothing left to undo"
    assert before.differences(rotation.installation_status(target)) == []


def test_windows_failure_leaves_svarut_untouched(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    before = rotation.installation_status(target)
    rplan = rotation.plan(target, bundle)
    lab.faults.fail_pipeline("apply", "Access to the path is denied.")
    assert lab.svarut is not None
    lab.svarut.commands.clear()
    with pytest.raises(ApplyError):
        rotation.apply(rplan, journal_dir=tmp_path)
    assert not any("install" in command for command in lab.svarut.commands)
    assert before.differences(rotation.installation_status(target)) == []
    run = Journal.load(next(tmp_path.glob("*-rotation-*.json")))
    assert "SvarUT host was not touched" in run.to_dict()["message"]


def test_fleet_status_reads_every_installation_at_once(lab: Lab) -> None:
    info = lab.connection_info()
    assert info.svarut is not None
    targets = [
        rotation.lab_target(info, name="one"),
        rotation.Target("two", svarut=info.svarut.target()),
        rotation.Target("down", svarut=_unreachable(info.svarut.target())),
    ]
    one, two, down = rotation.status_many(targets)
    assert one.windows is not None
    assert "thumbprint-invisible-char" in one.windows.codes()
    assert two.svarut is not None
    assert two.svarut.served_thumbprint == one.svarut.served_thumbprint  # type: ignore[union-attr]
    assert down.errors
    assert down.errors[0].startswith("SvarUT: ")
    assert str(down.worst) == "error"


def _unreachable(svarut_target: rotation.svarut.SvarutTarget) -> rotation.svarut.SvarutTarget:
    ssh = rotation.svarut.SshOptions(
        host="127.0.0.1",
        port=1,
        username="svarut",
        pinned_host_key=svarut_target.ssh.pinned_host_key,
    )
    return rotation.svarut.SvarutTarget(ssh, connector=None)


def test_a_target_needs_a_host() -> None:
    with pytest.raises(InputError, match="neither a Windows server nor a SvarUT host"):
        rotation.Target("nothing")


def test_rollback_refuses_another_installations_run(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    result = rotation.apply(rotation.plan(target, bundle), journal_dir=tmp_path)
    other = rotation.Target("elsewhere", svarut=target.svarut)
    with pytest.raises(InputError, match="not on elsewhere"):
        rotation.rollback(other, result.journal_path)
    rotation.rollback(target, result.journal_path)


@pytest.mark.parametrize(
    ("with_svarut", "files", "reason"),
    [
        (False, ("pair", "ssl"), "no SvarUT host given"),
        (True, ("pair",), "the new files hold no SSL certificate"),
    ],
)
def test_a_svarut_host_left_alone_appears_as_a_noop_with_its_reason(
    lab: Lab, with_svarut: bool, files: tuple[str, ...], reason: str
) -> None:
    info = lab.connection_info()
    target = rotation.lab_target(info)
    if not with_svarut:
        target = rotation.Target(
            "windows-only", windows=target.windows, tls_address=target.tls_address
        )
    bundle = load_bundle([info.pfx_files[name] for name in files], info.pfx_password)
    rplan = rotation.plan(target, bundle)
    assert rplan.svarut is None
    (noop,) = [change for change in rplan.plan.changes if change.consumer == "SvarUT nginx"]
    assert noop.is_noop
    assert reason in (noop.noop_reason or "")
    assert rplan.plan.actions  # the Windows part still rotates


def test_plans_and_reports_render_for_notebooks(
    target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    rplan = rotation.plan(target, bundle)
    assert "<table>" in rplan._repr_html_()
    assert repr(rplan).startswith("<RotationPlan testkommune: ")
    result = rotation.apply(rplan, journal_dir=tmp_path)
    assert repr(result) == f"<RotationResult testkommune applied: run {result.run_id}>"
    report = rotation.verify(target, rplan)
    assert report._repr_html_().startswith("<div><h4>testkommune: verified</h4>")
    assert json.dumps(report.to_dict())
    assert json.dumps(rplan.to_dict())


def test_rollback_without_journal_skips_runs_that_changed_nothing(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    before = rotation.installation_status(target)
    rotated = rotation.apply(rotation.plan(target, bundle), journal_dir=tmp_path)
    again = rotation.apply(rotation.plan(target, bundle), journal_dir=tmp_path)
    assert again.outcome is Outcome.NOTHING_TO_DO, str(again)

    undone = rotation.rollback(target, journal_dir=tmp_path)
    assert undone.journal_path == rotated.journal_path
    assert undone.message == "rolled back"
    assert before.differences(rotation.installation_status(target)) == []
    with pytest.raises(InputError, match="no run to roll back"):
        rotation.rollback(target, journal_dir=tmp_path)  # the rotation is undone already


def test_plan_refuses_a_certificate_without_its_key_and_leaves_no_coroutine_behind(
    lab: Lab, target: rotation.Target, bundle: CertificateBundle, tmp_path: Path
) -> None:
    assert bundle.ssl is not None
    pem = tmp_path / "ssl.pem"
    pem.write_bytes(bundle.ssl.certificate.public_bytes(serialization.Encoding.PEM))
    without_key = load_bundle([pem])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError):
            rotation.plan(target, without_key)
        gc.collect()
    assert [str(w.message) for w in caught if w.category is RuntimeWarning] == []
