"""The fault matrix: every injected fault ends rotated-and-verified or byte-identical.

One lab runs the whole matrix (real pypsrp to its WinRM endpoint, real asyncssh to its
SvarUT host, real TLS). It is warmed first: one rotation and its rollback, so the new
certificates are in the store with their key grants (rollback keeps them, by design) —
that state is the baseline every case is compared with: the Windows server's files, key ACLs,
binding options, service and pool states, the SvarUT host's files, and the certificate every
HTTPS binding and the SvarUT endpoint serves in a handshake. The backups a run leaves beside
files on purpose (``*.cosdoc-certs-*.bak``, ``prod.env.*``) are not part of it. A case that
rotates must verify (the desired state) and roll back to the baseline.

The faults, all through the lab's documented API (docs/lab.md): each Windows action, each
WinRM request dropped before and after it is processed, a shell lost server side, each
SvarUT operation failing or its connection dropped by the server, disk full, read-only file
systems, a service broken for another reason, the wrong certificate served, failing
handshakes, a failed read of the state reached at the end of the apply or of its undo; SIGINT
and SIGTERM at every phase boundary and inside every remote call (in this process), SIGKILL
at the same points (a ``cosdoc-certs apply`` subprocess, then ``cosdoc-certs rollback`` in
another); a second fault during the rollback. It prints ``N/M survived``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lab_cli import kill_apply_at, rollback, staging_folders

from cosdoc_certs import rotation
from cosdoc_certs._signals import SignalReceived
from cosdoc_certs.certs import load_bundle
from cosdoc_certs.errors import ApplyError, CosDocCertsError
from cosdoc_certs.journal import Outcome
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.tls import fetch_certificate

pytestmark = [pytest.mark.matrix, pytest.mark.timeout(900)]

Inject = Callable[[Lab], None]

# Progress lines at each phase boundary and inside each remote call of a rotation.
SIGNAL_POINTS = (
    "Windows: applying",  # inside the Windows call
    "Windows: all",  # the boundary between the phases
    "SvarUT: checking",  # inside the first SvarUT read
    "SvarUT: installing",
    "SvarUT: pointing",
    "SvarUT: testing the new files",
    "SvarUT: restarting",
    "SvarUT: waiting",
    "SvarUT: done",  # after the last phase
)
SVARUT_WORDS = ("cat", "install", "cp", "run", "down", "up", "ps")


def _nothing(lab: Lab) -> None:
    """No lab fault (a signal case)."""


@dataclass(frozen=True)
class Case:
    """One injected fault; ``second`` marks a fault that also hits the rollback.

    ``signal_at`` sends ``signal_number`` to this process when progress shows that line.
    ``noticed_by_verify`` marks a fault only ``verify`` can see (the run itself succeeds):
    the case survives when verify reports it and the rollback then restores everything.
    """

    name: str
    inject: Inject = _nothing
    second: bool = False
    noticed_by_verify: bool = False
    signal_at: str = ""
    signal_number: int = 0


@dataclass
class Tally:
    """What each case ended as."""

    survived: list[str]
    lost: list[str]

    def add(self, name: str, problem: str | None) -> None:
        (self.lost if problem else self.survived).append(f"{name}: {problem}" if problem else name)


def _windows_files(lab: Lab) -> dict[str, bytes]:
    root = lab.server.files.root
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".cosdoc-certs-" not in path.name
    }


def _svarut_files(lab: Lab) -> dict[str, tuple[int, bytes]]:
    assert lab.svarut is not None
    root = lab.svarut.sandbox
    return {
        str(path.relative_to(root)): (path.stat().st_mode, path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith("prod.env.") and "home" not in path.parts
    }


def _served(lab: Lab) -> dict[str, str]:
    server = lab.server
    served = {}
    for site, binding in server.bindings():
        if binding.protocol != "https":
            continue
        host, port = server.tls_endpoints()[binding.endpoint]
        key = f"{site.name} {binding.binding_information}"
        try:
            served[key] = fetch_certificate(host, port, server_name=binding.host).thumbprint
        except CosDocCertsError as error:  # a failed handshake is part of the state
            served[key] = f"no handshake: {error}"
    info = lab.connection_info().svarut
    assert info is not None
    served["svarut"] = fetch_certificate(info.host, info.tls_port).thumbprint
    return served


def snapshot(lab: Lab) -> dict[str, Any]:
    """Everything a case must leave as it was (see the module docstring)."""
    server = lab.server
    with server.lock:
        state = {
            "files": _windows_files(lab),
            "acls": {e.thumbprint: sorted(e.readers) for e in server.store.entries.values()},
            "bindings": sorted(
                (site.name, b.binding_information, b.ssl_flags, b.thumbprint or "")
                for site, b in server.bindings()
            ),
            "services": {name: s.state for name, s in server.services.items()},
            "pools": {name: p.state for name, p in server.app_pools.items()},
        }
    state["svarut"] = _svarut_files(lab)
    state["served"] = _served(lab)
    return state


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs, part by part (file names, not their bytes)."""
    found = []
    for part, value in before.items():
        if value == after[part]:
            continue
        if isinstance(value, dict):
            keys = sorted(k for k in {*value, *after[part]} if value.get(k) != after[part].get(k))
            found.append(f"{part}: {keys}")
        else:
            found.append(f"{part} differ")
    return found


@pytest.fixture(scope="module")
def matrix_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab(root=tmp_path_factory.mktemp("matrix") / "lab") as running:
        yield running


def _target(lab: Lab) -> rotation.Target:
    """The lab installation; SvarUT gets 5 s (not 60) to serve after a restart: the lab's
    stand-in serves at once or never, and two faults wait for that timeout."""
    target = rotation.lab_target(lab.connection_info(), name="testkommune")
    assert target.svarut is not None
    return dataclasses.replace(
        target, svarut=dataclasses.replace(target.svarut, restart_timeout=5.0)
    )


def _plan(lab: Lab) -> rotation.RotationPlan:
    info = lab.connection_info()
    bundle = load_bundle([info.pfx_files["pair"], info.pfx_files["ssl"]], info.pfx_password)
    return rotation.plan(_target(lab), bundle)


def _clear(lab: Lab) -> None:
    lab.faults.clear()
    lab.server.faults.clear()
    assert lab.svarut is not None
    lab.svarut.faults.__init__()  # type: ignore[misc]  # every SvarUT fault back to its default


def _progress(case: Case) -> Callable[[str], None]:
    """A progress callback that sends the case's signal once, at its line."""
    sent: list[int] = []

    def progress(message: str) -> None:
        if case.signal_at and message.startswith(case.signal_at) and not sent:
            sent.append(case.signal_number)
            os.kill(os.getpid(), case.signal_number)

    return progress


def run_case(lab: Lab, baseline: dict[str, Any], journals: Path, case: Case) -> str | None:
    """Inject, apply, recover as documented; None when the case survived, else why not."""
    rplan = _plan_cache(lab)
    target = rplan.target
    case.inject(lab)
    try:
        result = rotation.apply(rplan, journal_dir=journals, progress=_progress(case))
    except CosDocCertsError as error:  # a clear error: the host must be as it was
        _clear(lab)
        if isinstance(error, ApplyError) and not error.rolled_back:
            if not case.second:
                return f"rollback failed on a single fault: {error}"
            rotation.rollback(target, journal_dir=journals)  # the documented recovery
    except SignalReceived as stopped:
        _clear(lab)
        if stopped.result is None or stopped.result.outcome is not Outcome.ROLLED_BACK:
            return f"stopped without a rollback: {stopped.result}"
    else:
        if result.outcome is not Outcome.APPLIED:
            _clear(lab)
            return f"ended {result.outcome}"
        lab.faults.clear()  # a request fault the run did not reach must not hit verify
        report = rotation.verify(target, result.journal_path)
        _clear(lab)
        rotation.rollback(target, journal_dir=journals)
        if report.ok == case.noticed_by_verify:
            return f"verify says ok={report.ok}: {report.to_text()}"
    return _left(lab, baseline)


def _left(lab: Lab, baseline: dict[str, Any]) -> str | None:
    changed = differences(baseline, snapshot(lab))
    if staging_folders(lab):
        changed.append(f"staging left: {staging_folders(lab)}")
    return "; ".join(changed) or None


_PLANS: dict[int, rotation.RotationPlan] = {}


def _plan_cache(lab: Lab) -> rotation.RotationPlan:
    """One plan for the whole matrix: every case ends in the baseline the plan was made on."""
    if id(lab) not in _PLANS:
        _PLANS[id(lab)] = _plan(lab)
    return _PLANS[id(lab)]


def _windows_cases(actions: int, requests: int) -> list[Case]:
    cases = [
        Case(f"Windows action {n} fails", lambda lab, n=n: lab.server.faults.fail_action(n))
        for n in range(1, actions + 1)
    ]
    for n in range(1, requests + 1):
        for before in (True, False):
            when = "before" if before else "after"
            cases.append(
                Case(
                    f"WinRM request {n} dropped {when} it is processed",
                    lambda lab, n=n, before=before: lab.faults.drop_connection_at(n, before=before),
                )
            )
    cases += [
        Case("WinRM shell lost at the apply call", _lose_shell_at_apply),
        Case("apply.ps1 fails once (its undo works)", _fail_apply_once),
        Case("Windows disk full", lambda lab: lab.server.faults.disk_full(), second=True),
        Case("Windows volume read-only", lambda lab: lab.server.faults.read_only(), second=True),
        Case("a service broken for another reason", _break_a_service, second=True),
        Case("second fault: the undo's first action fails too", _fail_apply_and_undo, True),
        Case("the apply's read of the state it reached fails", _fail_post_state_read),
        Case("the undo's read of the state it reached fails", _fail_apply_and_undo_read),
        Case("second fault: every read after the undo fails", _fail_apply_and_reads, True),
        Case("Windows bindings serve the wrong certificate", _serve_old, noticed_by_verify=True),
    ]
    return cases


def _serve_old(lab: Lab) -> None:
    bound = next(b.thumbprint for _, b in lab.server.bindings() if b.thumbprint)
    lab.server.faults.serve_wrong_certificate(bound)


def _lose_shell_at_apply(lab: Lab) -> None:
    lab.faults.lose_shell_at(1, action="Command")


def _fail_apply_once(lab: Lab) -> None:
    lab.faults.fail_pipeline("apply", "The pipeline has been stopped.", times=1)


def _break_a_service(lab: Lab) -> None:
    lab.server.faults.break_service(next(iter(lab.server.services)))


def _fail_apply_and_undo(lab: Lab) -> None:
    lab.server.faults.fail_action(3)
    lab.server.faults.fail_action(1, call=2)


def _fail_post_state_read(lab: Lab) -> None:
    lab.server.faults.fail_gather(post_state_only=True)


def _fail_apply_and_undo_read(lab: Lab) -> None:
    lab.server.faults.fail_action(3)
    lab.server.faults.fail_gather(post_state_only=True)  # the stopped apply reads none


def _fail_apply_and_reads(lab: Lab) -> None:
    lab.server.faults.fail_action(3)
    lab.server.faults.fail_gather(times=2)  # the undo's own read, then the gather after it


def _svarut_cases() -> list[Case]:
    cases = []
    for word in SVARUT_WORDS:
        cases.append(Case(f"SvarUT `{word}` fails", _svarut_fault("fail_command", word)))
        cases.append(Case(f"SvarUT disconnects at `{word}`", _svarut_fault("disconnect_at", word)))
    flags = ("sftp_fails", "disk_full", "read_only", "container_exits", "handshake_fails")
    cases += [Case(f"SvarUT {flag}", _svarut_fault(flag, True)) for flag in flags]
    cases.append(Case("SvarUT serves the wrong certificate", _svarut_fault("wrong", True)))
    return cases


def _signal_cases() -> list[Case]:
    return [
        Case(f"{number.name} at {line!r}", signal_at=line, signal_number=number)
        for number in (signal.SIGINT, signal.SIGTERM)
        for line in SIGNAL_POINTS
    ]


def _svarut_fault(name: str, value: object) -> Inject:
    field = "serve_wrong_certificate" if name == "wrong" else name

    def inject(lab: Lab) -> None:
        assert lab.svarut is not None
        setattr(lab.svarut.faults, field, value)

    return inject


def _kill_case(
    lab: Lab, baseline: dict[str, Any], journals: Path, line: str, slow: bool
) -> str | None:
    """SIGKILL ``cosdoc-certs apply`` at ``line``, then ``cosdoc-certs rollback``; as run_case."""
    if slow:
        lab.faults.slow_pipeline("apply", 1.5)  # killed while the server holds the call
    kill_apply_at(lab, journals, line)
    _clear(lab)
    undone = rollback(lab, journals)
    if undone.returncode != 0:
        return f"rollback exited {undone.returncode}: {undone.stderr.strip()[-300:]}"
    return _left(lab, baseline)


def test_every_fault_ends_rotated_and_verified_or_byte_identical(
    matrix_lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = matrix_lab
    journals = tmp_path / "journals"
    warm = rotation.apply(_plan(lab), journal_dir=journals)  # imports the certificates
    rotation.rollback(_target(lab), journal_dir=journals)
    baseline = snapshot(lab)
    lab.https.recorder.reset()  # the run every case repeats, without a fault: count its parts
    clean = rotation.apply(_plan_cache(lab), journal_dir=journals)
    requests = sum(lab.https.recorder.requests.values())
    assert clean.windows is not None
    actions = len(clean.windows.results)
    assert rotation.verify(_target(lab), clean.journal_path).ok
    rotation.rollback(_target(lab), journal_dir=journals)
    assert differences(baseline, snapshot(lab)) == []
    assert warm.windows is not None
    cases = [*_windows_cases(actions, requests), *_svarut_cases(), *_signal_cases()]
    tally = Tally([], [])
    started = time.perf_counter()
    for case in cases:
        tally.add(case.name, run_case(lab, baseline, journals, case))
    kills = [(line, False) for line in SIGNAL_POINTS] + [("Windows: applying", True)]
    for number, (line, slow) in enumerate(kills):
        name = f"SIGKILL at {line!r}{' (the server still working)' if slow else ''}"
        tally.add(name, _kill_case(lab, baseline, tmp_path / f"killed-{number}", line, slow))
    seconds = time.perf_counter() - started
    total = len(tally.survived) + len(tally.lost)
    with capsys.disabled():
        print(
            f"\nfault matrix: {len(tally.survived)}/{total} survived in {seconds:.0f} s "
            f"({actions} Windows actions, {requests} WinRM requests per apply)"
        )
        for lost in tally.lost:
            print(f"  LOST {lost}")
    assert tally.lost == []
    assert total >= 90
