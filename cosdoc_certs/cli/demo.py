"""``cosdoc-certs demo``: a whole rotation of a CosDoc installation, in the built-in lab.

Starts the lab in this process (a simulated Windows application server behind a WinRM
endpoint, and a SvarUT host over SSH), shows ``status`` before (with the seeded invisible
character in a thumbprint), plans the rotation to the lab's renewed certificates across both
hosts, applies it and verifies it in the same call (services, pools, config values from the
state the apply pipeline read at its end, and real TLS handshakes on every HTTPS binding and
the SvarUT endpoint) over one WinRM session, shows what changed, rolls the run back and
checks that everything uses and serves the old certificates again. Ends with the timings
and round trips. Exit 0 only when the rotation and the rollback were both verified.

:func:`run_demo` is the same run for scripts and ``benchmarks/bench_demo.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from cosdoc_certs import rotation
from cosdoc_certs.certs import load_bundle
from cosdoc_certs.cli._common import ExitCode, echo_json, json_option, reports_errors
from cosdoc_certs.lab.runner import Lab
from cosdoc_certs.lab.scenarios import SCENARIOS

INVISIBLE_CHARACTER_FINDING = "thumbprint-invisible-char"


@dataclass
class DemoRun:
    """What the demo did: each phase's time and result, and the lab's round trips."""

    root: Path | None = None
    phases: dict[str, float] = field(default_factory=dict)
    before: rotation.InstallationStatus | None = None
    plan: rotation.RotationPlan | None = None
    applied: rotation.RotationResult | None = None
    verified: rotation.RotationVerifyReport | None = None
    after: rotation.InstallationStatus | None = None
    rotated: list[str] = field(default_factory=list)
    rolled_back: rotation.RotationResult | None = None
    left_over: list[str] = field(default_factory=list)
    round_trips: dict[str, int] = field(default_factory=dict)

    @property
    def restored(self) -> bool:
        """True when, after the rollback, everything uses and serves what it did before."""
        return self.rolled_back is not None and not self.left_over

    @property
    def ok(self) -> bool:
        """True when the rotation verified and the rollback restored everything."""
        return bool(self.verified and self.verified.ok and self.rotated and self.restored)

    def key_providers(self) -> dict[str, dict[str, str | bool | None]]:
        """Per role, the key provider of the keys in use before and after the rotation."""
        before = self.before.key_providers() if self.before else {}
        after = self.after.key_providers() if self.after else {}
        return {
            role: {
                "before": before.get(role),
                "after": after.get(role),
                "same": before.get(role) == after.get(role),
            }
            for role in dict.fromkeys([*before, *after])
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``cosdoc-certs demo --json``)."""
        return {
            "ok": self.ok,
            "lab_files": str(self.root) if self.root else None,
            "seconds": {name: round(value, 3) for name, value in self.phases.items()},
            "round_trips": self.round_trips,
            "status_before": self.before.to_dict() if self.before else None,
            "plan": self.plan.to_dict() if self.plan else None,
            "apply": self.applied.to_dict() if self.applied else None,
            "verify": self.verified.to_dict() if self.verified else None,
            "rotated": self.rotated,
            "key_providers": self.key_providers(),
            "rollback": self.rolled_back.to_dict() if self.rolled_back else None,
            "restored": self.restored,
            "not_restored": self.left_over,
        }


@contextmanager
def _phase(run: DemoRun, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        run.phases[name] = time.perf_counter() - started


def run_demo(
    *,
    keep: bool = False,
    show: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
    scenario: str = "default",
) -> DemoRun:
    """Run the whole demo against a fresh lab of ``scenario``; ``show`` prints each phase."""
    say = show or (lambda _: None)
    run = DemoRun(root=Path(tempfile.mkdtemp(prefix="cosdoc-demo-")) if keep else None)
    started = time.perf_counter()
    with Lab(scenario=scenario, root=run.root) as lab:
        run.phases["lab start"] = time.perf_counter() - started
        _rotate_and_roll_back(run, lab, say, progress)
    return run


def _rotate_and_roll_back(
    run: DemoRun, lab: Lab, say: Callable[[str], None], progress: Callable[[str], None] | None
) -> None:
    info = lab.connection_info()
    target = rotation.lab_target(info, name="testkommune-lab")
    journals = lab.client_folder / "journals"
    with _phase(run, "status before"):
        run.before = rotation.installation_status(target)
    say(_status_text("1. Status before the rotation", run.before))
    with _phase(run, "load new certificates"):
        files = [info.pfx_files["pair"], info.pfx_files["ssl"]]
        bundle = load_bundle(files, info.pfx_password)
    say(
        f"2. The renewed certificates the lab wrote to {files[0].parent} "
        f"({', '.join(path.name for path in files)}):\n{bundle}"
    )
    lab.https.recorder.reset()
    with target:  # one WinRM session from plan to verify, closed at the end of the block
        with _phase(run, "plan"):
            run.plan = rotation.plan(target, bundle)
        say(f"3. The plan\n{run.plan.to_text()}")
        if lab.svarut is not None:
            lab.svarut.commands.clear()
        say("4. Applying, then verifying (no question asked: this is the lab)")
        started = time.perf_counter()
        run.applied = rotation.apply(run.plan, journal_dir=journals, progress=progress, verify=True)
    verify_seconds = run.applied.phase_seconds.get("verify", 0.0)
    run.phases["apply"] = time.perf_counter() - started - verify_seconds
    run.phases["verify"] = verify_seconds
    run.verified = run.applied.verification
    run.round_trips = _round_trips(lab)
    say(run.applied.to_text(verification=False))
    verified = run.verified.to_text() if run.verified else "not verified: nothing was changed"
    say(f"5. Verify (made by apply, after its last phase)\n{verified}")
    with _phase(run, "status after"):
        run.after = after = rotation.installation_status(target)
    run.rotated = run.before.differences(after)
    say(_status_text("6. Status after the rotation", after, run.rotated))
    providers = ", ".join(
        f"{role}: {entry['after']}" + ("" if entry["same"] else f" (was {entry['before']})")
        for role, entry in run.key_providers().items()
    )
    say(f"   New keys' providers — {providers}")
    say("7. Rolling the run back")
    with _phase(run, "rollback"):
        run.rolled_back = rotation.rollback(
            target, run.applied.journal_path, journal_dir=journals, progress=progress
        )
    say(str(run.rolled_back))
    with _phase(run, "status after rollback"):
        restored = rotation.installation_status(target)
    run.left_over = run.before.differences(restored)
    verdict = (
        "every config value, binding and the SvarUT endpoint are as before the rotation"
        if not run.left_over
        else "NOT restored:\n  " + "\n  ".join(run.left_over)
    )
    say(f"8. After the rollback: {verdict}")


def _round_trips(lab: Lab) -> dict[str, int]:
    """Windows scripts run from plan to verify (the session's close included); SvarUT host
    commands during apply and verify."""
    recorder = lab.https.recorder
    return {
        "windows_scripts": len(recorder.scripts),
        "windows_sessions": len(recorder.shells),
        "windows_http_requests": sum(recorder.requests.values()),
        # of those, a Receive that got only the first command's "Preparing modules for first
        # use." progress record (the script still ran): a real server may cost it too
        "windows_progress_only_receives": recorder.progress_only_receives,
        "svarut_commands": len(lab.svarut.commands) if lab.svarut else 0,
    }


def _status_text(
    title: str, state: rotation.InstallationStatus, changed: list[str] | None = None
) -> str:
    lines = [title]
    if state.windows is not None:
        lines.append(state.windows.render(width=150).rstrip())
        if INVISIBLE_CHARACTER_FINDING in state.windows.codes():
            lines.append(
                "  ↑ the seeded finding: a thumbprint copied with an invisible U+200E character"
            )
    lines += [f"  binding {name}: serves {served}" for name, served in state.served.items()]
    if state.svarut is not None:
        lines.append(f"  SvarUT {state.svarut.endpoint}: serves {state.svarut.served_thumbprint}")
    lines += [f"  error: {error}" for error in state.errors]
    if changed is not None:
        lines.append(f"  {len(changed)} value(s) changed by the rotation:")
        lines += [f"    {line}" for line in changed]
    return "\n".join(lines)


def _progress_note(trips: dict[str, int]) -> str:
    extra = trips.get("windows_progress_only_receives", 0)
    return f", {extra} of them for the first-use progress record alone" if extra else ""


def _summary(run: DemoRun) -> str:
    lines = ["9. Summary"]
    lines += [f"  {name:<22} {seconds:6.2f} s" for name, seconds in run.phases.items()]
    lines.append(f"  {'total':<22} {sum(run.phases.values()):6.2f} s")
    trips = run.round_trips
    lines.append(
        f"  round trips: {trips.get('windows_scripts', 0)} PowerShell script call(s) on the "
        f"Windows server from plan to verify, in {trips.get('windows_sessions', 0)} session(s) "
        f"({trips.get('windows_http_requests', 0)} WinRM requests{_progress_note(trips)}); "
        f"{trips.get('svarut_commands', 0)} command(s) on the SvarUT host in apply and verify"
    )
    lines.append(
        "  result: rotation verified and rollback restored everything"
        if run.ok
        else "  result: NOT everything verified — see above"
    )
    if run.root is not None:
        lines.append(f"  lab files kept in {run.root}")
    return "\n".join(lines)


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the lab's files (server, journals, PFX files).")
@click.option(
    "--scenario",
    type=click.Choice(sorted(SCENARIOS)),
    default="default",
    show_default=True,
    help="Which installation the lab simulates, e.g. norwegian (a Norwegian-language "
    "Windows Server); see docs/lab.md.",
)
@json_option
@reports_errors
def command(keep: bool, scenario: str, as_json: bool) -> None:
    """Rotate a whole installation in the built-in lab: status, plan, apply, verify, rollback.

    Needs nothing but this package: the lab runs in this process on 127.0.0.1 and is
    removed afterwards (unless --keep). Exit 0 only when the rotation and the rollback were
    both verified. Example: cosdoc-certs demo --scenario norwegian
    """
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def show(text: str) -> None:
        if not as_json:
            out.print(text, markup=False)
            out.print()

    def progress(message: str) -> None:
        if not as_json:
            err.print(f"  • {message}", markup=False)

    run = run_demo(keep=keep, show=show, progress=progress, scenario=scenario)
    if as_json:
        echo_json(run.to_dict())
    else:
        out.print(_summary(run), markup=False)
    sys.exit(ExitCode.OK if run.ok else ExitCode.PROBLEMS)
