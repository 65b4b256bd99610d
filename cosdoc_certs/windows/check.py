"""Check mode on the Windows server: ``apply.ps1 -Check`` tests the plan's steps, changes nothing.

:func:`check_windows` compiles the plan exactly as
:func:`~cosdoc_certs.windows.apply.apply_windows` does (the same actions, PFX files and
one-time password) and makes the same single ``apply.ps1`` call with ``-Check``: the
script's own code paths run on the server, each action tested instead of done. No journal is
written (nothing changes, nothing needs undoing).

The result holds a verdict per action — *would do …* or *cannot because … (the fix)* — and
the session's checks (elevated administrator, Full Language mode, WebAdministration). Its
:attr:`WindowsCheckResult.worst` maps onto the exit codes of ``status``: a blocker is an error.
"""

from __future__ import annotations

import dataclasses
import html
import secrets
from collections.abc import Callable
from typing import Any

from cosdoc_certs.certs import CertificateBundle
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.findings import Severity
from cosdoc_certs.plan import Plan
from cosdoc_certs.windows.apply import (
    compile_windows_plan,
    describe_action,
    new_run_id,
    run_apply_script,
)
from cosdoc_certs.windows.apply_contract import SCRIPT_NAME, ApplyDocument, SessionCheck
from cosdoc_certs.windows.connection import WindowsHost, load_script

__all__ = ["ActionVerdict", "WindowsCheckResult", "check_windows"]

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class ActionVerdict:
    """One action of the plan under ``-Check``: whether it would run, and what the server said."""

    index: int
    action: str
    description: str
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class WindowsCheckResult:
    """What ``apply.ps1 -Check`` found on one server: per action, and about the session."""

    host: str
    verdicts: tuple[ActionVerdict, ...] = ()
    environment: tuple[SessionCheck, ...] = ()
    error: str | None = None
    manual_steps: tuple[str, ...] = ()

    @property
    def blockers(self) -> tuple[ActionVerdict, ...]:
        """The actions that would fail."""
        return tuple(verdict for verdict in self.verdicts if not verdict.ok)

    @property
    def ok(self) -> bool:
        """True when every action and every session check would pass."""
        return self.worst is not Severity.ERROR

    @property
    def worst(self) -> Severity | None:
        """ERROR for a blocker, a failed session check or a script error; else None."""
        failed = self.blockers or any(not item.ok for item in self.environment) or self.error
        return Severity.ERROR if failed else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "host": self.host,
            "ok": self.ok,
            "error": self.error,
            "environment": [item.to_dict() for item in self.environment],
            "actions": [verdict.to_dict() for verdict in self.verdicts],
            "manual_steps": list(self.manual_steps),
        }

    def to_text(self) -> str:
        """Lines for a terminal: the session, then each action as would do / cannot because."""
        lines = [str(self)]
        if self.error:
            lines.append(f"  cannot check: {self.error}")
        lines += [
            f"  {'ok  ' if item.ok else 'FAIL'} session: {item.message}"
            for item in self.environment
        ]
        for verdict in self.verdicts:
            if verdict.ok:
                lines.append(f"  ok   {verdict.index + 1}. {verdict.message}")
            else:
                lines.append(
                    f"  FAIL {verdict.index + 1}. {verdict.description}: cannot, because "
                    f"{verdict.message}"
                )
        lines += [f"  manual step: {step}" for step in self.manual_steps]
        return "\n".join(lines)

    def __str__(self) -> str:
        if self.error:
            return f"{self.host}: check could not run"
        if not self.verdicts:
            return f"{self.host}: nothing to do"
        blockers = len(self.blockers) + sum(not item.ok for item in self.environment)
        if blockers:
            return (
                f"{self.host}: check found {blockers} blocker(s) in {len(self.verdicts)} action(s)"
            )
        return f"{self.host}: check passed — all {len(self.verdicts)} action(s) would run"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{v.index + 1}</td><td>{html.escape(v.description)}</td>"
            f"<td>{'would do' if v.ok else 'cannot'}</td><td>{html.escape(v.message)}</td></tr>"
            for v in self.verdicts
        )
        return (
            f"<div><b>{html.escape(str(self))}</b><table><tr><th>#</th><th>action</th>"
            f"<th>verdict</th><th>message</th></tr>{rows}</table></div>"
        )


def _quiet(_: str) -> None:
    """The default progress callback: nothing."""


def check_windows(
    host: WindowsHost,
    plan: Plan,
    bundle: CertificateBundle,
    facts: WindowsFacts,
    *,
    progress: Progress | None = None,
) -> WindowsCheckResult:
    """Run the plan's Windows actions with ``-Check`` on the open ``host``: one call, no change."""
    say = progress or _quiet
    host_name = plan.hosts[0] if plan.hosts else "windows"
    load_script(SCRIPT_NAME)
    run_id, password = new_run_id(), secrets.token_urlsafe(24)
    compiled = compile_windows_plan(
        plan, bundle, facts, run_id=run_id, pfx_password=password.encode("ascii")
    )
    if not compiled.steps:
        return WindowsCheckResult(host_name, manual_steps=compiled.manual_steps)
    say(f"checking {len(compiled.steps)} action(s) on {host_name} in one call")
    document = run_apply_script(
        host, compiled.actions, run_id, compiled.pfx_files, password, check=True
    )
    return _result(host_name, compiled.actions, document, compiled.manual_steps)


def _result(
    host_name: str, actions: Any, document: ApplyDocument, manual_steps: tuple[str, ...]
) -> WindowsCheckResult:
    verdicts = tuple(
        ActionVerdict(
            result.index,
            result.action,
            describe_action(actions[result.index]),
            result.ok,
            result.message,
        )
        for result in document.results
    )
    return WindowsCheckResult(
        host_name, verdicts, document.environment, document.error, manual_steps
    )
