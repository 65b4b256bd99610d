"""The rotation of a whole CosDoc installation: the Windows server and the SvarUT host together.

A :class:`Target` describes one customer installation — how to reach its Windows
application server (:class:`~cosdoc_certs.windows.connection.ConnectionOptions`), its
consumers (the CosDoc catalog or the customer's deviations) and, optionally, its SvarUT host.
:func:`plan` gathers both hosts at once and returns one :class:`RotationPlan`; :func:`apply`
runs it in guarded phases — Windows first, then SvarUT — and when the SvarUT phase fails after
the Windows phase succeeded, the Windows host is rolled back too, so the installation ends
either rotated or as it was. Each host keeps its own journal; the run's own journal (its file
name is the run id) links them, and :func:`rollback` undoes a finished run from it.
:func:`verify` re-gathers both hosts and checks what they use and serve in TLS handshakes;
``apply(..., verify=True)`` checks the Windows server over the facts its apply pipeline read at
its end instead (two PowerShell pipelines for a whole rotation), the handshakes made anew.

``with target:`` keeps one PowerShell-remoting session to the Windows server open for every
call inside the block (plan, apply, verify, rollback): the session is opened once and closed
when the block ends. Without it, each call opens and closes its own.

The async functions are the core (hosts in parallel: one thread per PowerShell-remoting
host, asyncssh natively; :func:`status_many_async` runs a whole fleet); the functions of the
same name without ``_async`` wrap them for scripts and notebooks.

Library use::

    from cosdoc_certs import load_bundle, rotation
    target = rotation.Target("testkommune", windows=options, svarut=svarut_target)
    bundle = load_bundle(["pair.pfx", "ssl.pfx"], password)
    with target:                                   # one WinRM session for the whole run
        rplan = rotation.plan(target, bundle)      # read it first: print(rplan)
        result = rotation.apply(rplan, verify=True)  # ApplyError (rolled back) on failure
    print(result.verification)
    report = rotation.verify(target, result.journal_path)  # later: a fresh read
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from cosdoc_certs import svarut
from cosdoc_certs._aio import short_errors, synchronous
from cosdoc_certs._signals import SignalReceived, StopRequest, stop_on_signals
from cosdoc_certs.certs import CertificateBundle, Role
from cosdoc_certs.consumers import COSDOC_CATALOG, Consumer, SvarutConsumer
from cosdoc_certs.display import Displayed, html_list, html_table, html_text
from cosdoc_certs.errors import ApplyError, CosDocCertsError, InputError, problem_of
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.findings import DEFAULT_WARN_DAYS, Severity, worst
from cosdoc_certs.inventory import Customer, load_inventory
from cosdoc_certs.journal import (
    Journal,
    Outcome,
    ParentStep,
    StepStatus,
    latest_journal,
)
from cosdoc_certs.plan import Change, Plan
from cosdoc_certs.status import StatusReport, gather, status
from cosdoc_certs.svarut.planning import CONSUMER as SVARUT_CONSUMER
from cosdoc_certs.tls import fetch_certificate
from cosdoc_certs.windows.apply import WindowsApplyResult, apply_windows, rollback_windows
from cosdoc_certs.windows.check import WindowsCheckResult, check_windows
from cosdoc_certs.windows.connection import (
    ConnectionOptions,
    PoolFactory,
    WindowsHost,
    default_pool,
)
from cosdoc_certs.windows.gather import BindingFact
from cosdoc_certs.windows.planning import plan_windows
from cosdoc_certs.windows.verify import (
    FRESH_GATHER,
    POST_STATE,
    TlsAddress,
    WindowsVerifyReport,
    endpoint_map,
    newest_valid,
    verify_desired,
    verify_desired_facts,
)

if TYPE_CHECKING:
    from cosdoc_certs.lab.runner import ConnectionInfo

__all__ = [
    "JOURNAL_KIND",
    "InstallationStatus",
    "RotationCheck",
    "RotationPlan",
    "RotationResult",
    "RotationVerifyReport",
    "Target",
    "apply",
    "apply_async",
    "check",
    "check_async",
    "endpoint_map",
    "installation_status",
    "installation_status_async",
    "lab_target",
    "plan",
    "plan_async",
    "rollback",
    "rollback_async",
    "status_many",
    "status_many_async",
    "verify",
    "verify_async",
]

logger = logging.getLogger(__name__)

JOURNAL_KIND = "rotation"
MAX_THREADS = 32

T = TypeVar("T")
# the thread pool of a fleet read (status_many_async); None: the loop's default executor
_EXECUTOR: contextvars.ContextVar[concurrent.futures.Executor | None] = contextvars.ContextVar(
    "cosdoc_certs_executor", default=None
)
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default progress callback: nothing."""


class _SharedSession:
    """The Windows session ``with target:`` keeps open: opened on first use, one user at a time."""

    def __init__(self) -> None:
        self.depth = 0
        self.host: WindowsHost | None = None
        self.busy = threading.Lock()

    def close(self) -> None:
        host, self.host = self.host, None
        if host is not None:
            host.close()

    def __reduce__(self) -> tuple[type[_SharedSession], tuple[()]]:
        """A copy (or a pickled target) starts without a session: an open one is not shared."""
        return (_SharedSession, ())


@dataclass(frozen=True, repr=False)
class Target(Displayed):
    """One customer installation: its Windows server, consumers and (optionally) SvarUT host.

    ``tls_address`` maps an HTTPS binding to where its TLS handshake connects (default: the
    Windows server's name and the binding's port). ``journal_dir`` is where its runs'
    journals go when a call is not given one (a lab's own folder for :func:`lab_target`;
    None: ``$COSDOC_CERTS_JOURNAL_DIR``, else the home folder). ``pool_factory`` replaces how
    PowerShell sessions are opened (tests inject wrapped pools).

    Used as a context manager (``with target:``), it keeps one session to the Windows server
    open for the calls inside the block and closes it at the end.
    """

    name: str
    windows: ConnectionOptions | None = None
    svarut: svarut.SvarutTarget | None = None
    consumers: tuple[Consumer, ...] = COSDOC_CATALOG
    tls_address: TlsAddress | None = field(default=None, compare=False, repr=False)
    pool_factory: PoolFactory = field(default=default_pool, compare=False, repr=False)
    journal_dir: Path | None = field(default=None, compare=False)
    _session: _SharedSession = field(
        default_factory=_SharedSession, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.windows is None and self.svarut is None:
            raise InputError(
                f"installation {self.name!r} has neither a Windows server nor a SvarUT host",
                "pass `windows` (the Windows server) and/or `svarut` (the SvarUT host)",
            )

    @classmethod
    def from_inventory(
        cls, inventory: str | os.PathLike[str], customer: str, *, password: str | None = None
    ) -> Target:
        """The target of ``customer`` in the inventory file ``inventory``."""
        return cls.from_customer(load_inventory(inventory).customer(customer), password=password)

    def __repr__(self) -> str:
        hosts = [self.windows_host, self.svarut.ssh.host if self.svarut else None]
        named = ", ".join(host for host in hosts if host)
        return f"<Target {self.name}: {named}, {len(self.consumers)} consumer(s)>"

    def to_text(self) -> str:
        """The installation's hosts and consumers, one per line."""
        lines = [f"installation {self.name}"]
        if self.windows is not None:
            lines.append(f"  Windows server {self.windows.address} ({self.windows.auth})")
        if self.svarut is not None:
            lines.append(f"  SvarUT host {self.svarut.ssh.host}:{self.svarut.ssh.port}")
        lines.append(f"  consumers: {', '.join(consumer.name for consumer in self.consumers)}")
        if self.journal_dir is not None:
            lines.append(f"  journals in {self.journal_dir}")
        return "\n".join(lines)

    @classmethod
    def from_customer(cls, customer: Customer, *, password: str | None = None) -> Target:
        """The target of an inventory customer (the WinRM password from its env var).

        The customer's ``tls_endpoints`` say where each HTTPS binding's TLS check connects.
        """
        return cls(
            customer.name,
            windows=customer.windows.options(password) if customer.windows else None,
            svarut=customer.svarut.target() if customer.svarut else None,
            consumers=customer.consumers(),
            tls_address=endpoint_map(customer.tls_endpoints) if customer.tls_endpoints else None,
        )

    @property
    def windows_host(self) -> str | None:
        """The Windows server's name as given (the host of its plan changes and journal)."""
        return self.windows.server if self.windows else None

    def open_windows(self) -> WindowsHost:
        """A new PowerShell-remoting session to the Windows server (use ``with``)."""
        if self.windows is None:
            raise InputError(
                f"{self.name} has no Windows server", "pass `windows` (the Windows server)"
            )
        return WindowsHost(self.windows, pool_factory=self.pool_factory)

    def __enter__(self) -> Target:
        self._session.depth += 1
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._session.depth -= 1
        if self._session.depth == 0:
            self._session.close()

    async def __aenter__(self) -> Target:
        return self.__enter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.__exit__, kind, error, traceback)

    @contextmanager
    def windows_session(self) -> Iterator[WindowsHost]:
        """The open session to use for one call (in a worker thread or not).

        Inside ``with target:``, the block's session (opened the first time); a call made
        while another uses it (threads) gets a session of its own. A call that fails drops
        the block's session: the next one opens a new one. Outside a block: a new session,
        closed when the call ends.
        """
        shared = self._session
        if shared.depth and shared.busy.acquire(blocking=False):
            try:
                if shared.host is None:
                    host = self.open_windows()
                    host.open()
                    shared.host = host
                yield shared.host
            except BaseException:
                shared.close()
                raise
            finally:
                shared.busy.release()
            return
        with self.open_windows() as host:
            yield host


def lab_target(info: ConnectionInfo, *, name: str = "lab") -> Target:
    """The :class:`Target` of a running lab (its WinRM endpoint, SvarUT host, TLS listeners)."""
    return Target(
        name,
        windows=info.options(),
        svarut=info.svarut.target() if info.svarut else None,
        tls_address=endpoint_map(info.tls_endpoints),
        journal_dir=info.journal_dir,
    )


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationPlan(Displayed):
    """What rotating ``bundle`` into the installation changes, on each host.

    ``windows`` is the Windows engine's plan (with the facts it was made from), ``svarut``
    the SvarUT plan; :attr:`plan` is both as one :class:`~cosdoc_certs.plan.Plan`. When
    SvarUT is left alone, ``svarut_noop`` says why.
    """

    target: Target
    bundle: CertificateBundle = field(repr=False)
    windows: Plan | None
    windows_facts: WindowsFacts | None = field(repr=False)
    svarut: svarut.SvarutPlan | None
    svarut_noop: Change | None = None

    @property
    def plan(self) -> Plan:
        """The whole installation's plan: the Windows changes, then the SvarUT ones."""
        windows = self.windows.changes if self.windows else ()
        linux = self.svarut.plan.changes if self.svarut else ()
        noop = (self.svarut_noop,) if self.svarut_noop else ()
        return Plan(windows + linux + noop, title=self.title)

    @property
    def title(self) -> str:
        """What is rotated into which installation."""
        roles = ", ".join(
            f"{info.role} {info.thumbprint}" for info in self.bundle.certificates if info.role
        )
        return f"Rotation of {self.target.name}: {roles}"

    @property
    def is_empty(self) -> bool:
        """True when applying would change nothing on any host."""
        return self.plan.is_empty

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: the whole plan and which host each part concerns."""
        return {
            "target": self.target.name,
            "windows_host": self.target.windows_host,
            "svarut_host": self.target.svarut.ssh.host if self.target.svarut else None,
            **self.plan.to_dict(),
        }

    def to_text(self) -> str:
        """The plan for a terminal, with diffs."""
        return self.plan.to_text()

    def __repr__(self) -> str:
        whole = self.plan
        return (
            f"<RotationPlan {self.target.name}: {len(whole.actions)} change(s), "
            f"{len(whole.noops)} no-op(s)>"
        )

    def _repr_html_(self) -> str:
        return self.plan._repr_html_()


@short_errors
async def plan_async(
    target: Target,
    bundle: CertificateBundle,
    *,
    now: dt.datetime | None = None,
    key_providers: Mapping[Role, str] | None = None,
) -> RotationPlan:
    """Gather the Windows server and the SvarUT host at once and plan the rotation.

    ``key_providers`` overrides the Windows key provider chosen for a role's new key
    (``{Role.SIGNING: "Microsoft Enhanced RSA and AES Cryptographic Provider"}``).
    """
    reason = _svarut_left_alone(target, bundle)
    # Checked before any coroutine exists: a bundle without the SSL key raises here.
    new_ssl = svarut.NewCertificate.from_bundle(bundle) if target.svarut and not reason else None
    svarut_plan = (
        svarut.plan_async(target.svarut, new_ssl, today=now.date() if now else None)
        if target.svarut and new_ssl is not None
        else _none()
    )
    windows = (
        _in_thread(_plan_windows, target, bundle, now, key_providers)
        if target.windows
        else _no_windows()
    )
    (windows_plan, facts), splan = await asyncio.gather(windows, svarut_plan)
    host = target.svarut.ssh.host if target.svarut else "(no SvarUT host)"
    noop = Change.noop(host, SVARUT_CONSUMER, reason) if reason else None
    return RotationPlan(target, bundle, windows_plan, facts, splan, noop)


def _svarut_left_alone(target: Target, bundle: CertificateBundle) -> str | None:
    """Why the SvarUT host is not part of this rotation (None when it is)."""
    if not any(isinstance(consumer, SvarutConsumer) for consumer in target.consumers):
        return None
    if target.svarut is None:
        return "no SvarUT host given; pass `svarut` (the SvarUT host), or rotate SvarUT later"
    if bundle.ssl is None:
        return "the new files hold no SSL certificate"
    return None


def _plan_windows(
    target: Target,
    bundle: CertificateBundle,
    now: dt.datetime | None,
    key_providers: Mapping[Role, str] | None = None,
) -> tuple[Plan, WindowsFacts]:
    with target.windows_session() as host:
        facts = gather(host, target.consumers)
    assert target.windows_host is not None
    wplan = plan_windows(
        facts,
        bundle,
        target.consumers,
        host=target.windows_host,
        now=now,
        key_providers=key_providers,
    )
    return wplan, facts


# -- apply -----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class RotationResult(Displayed):
    """How a run ended on each host, how long each took, and where its journals are.

    ``phase_seconds`` gives each host phase's duration (``"windows"``, ``"svarut"``, and
    ``"verify"`` when asked to verify); ``verification`` is the verify report when
    :func:`apply` was asked to verify.
    """

    target: str
    outcome: Outcome
    journal_path: Path
    windows: WindowsApplyResult | None
    svarut: svarut.RunResult | None
    message: str = ""
    seconds: float = 0.0
    phase_seconds: Mapping[str, float] = field(default_factory=dict)
    verification: RotationVerifyReport | None = None

    @property
    def run_id(self) -> str:
        """The run's id (its journal's file name without ``.json``)."""
        return self.journal_path.stem

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "target": self.target,
            "run_id": self.run_id,
            "outcome": str(self.outcome),
            "journal": str(self.journal_path),
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "windows": self.windows.to_dict() if self.windows else None,
            "svarut": self.svarut.to_dict() if self.svarut else None,
            "phase_seconds": {name: round(value, 3) for name, value in self.phase_seconds.items()},
            "verification": self.verification.to_dict() if self.verification else None,
        }

    def __repr__(self) -> str:
        return f"<RotationResult {self.target} {self.outcome}: run {self.run_id}>"

    def hosts(self) -> list[tuple[str, str, str, str, str]]:
        """Per host: which, its outcome, its seconds, what happened, its journal."""
        rows = []
        for phase, result in (("windows", self.windows), ("svarut", self.svarut)):
            if result is not None:
                seconds = self.phase_seconds.get(phase)
                took = f"{seconds:.1f} s" if seconds is not None else "-"
                where = f"{'Windows' if phase == 'windows' else 'SvarUT'} {result.host}"
                rows.append(
                    (where, str(result.outcome), took, result.message, str(result.journal_path))
                )
        return rows

    def _verified_text(self) -> str:
        if self.verification is None:
            return "not verified yet: run verify(target, result.journal_path)"
        return self.verification.to_text()

    def to_text(self, *, verification: bool = True) -> str:
        """The outcome; per host its outcome, time, actions and journal; verification; journal.

        ``verification=False`` leaves the verification out (to show it apart).
        """
        lines = [
            f"{self.target}: {self.outcome} — {self.message} "
            f"(run {self.run_id}, {self.seconds:.1f} s)"
        ]
        for where, outcome, took, message, journal in self.hosts():
            lines.append(f"  {where}: {outcome} in {took} — {message}; journal {journal}")
        if self.windows is not None:
            lines += [f"    {line}" for line in self.windows.to_text().splitlines()[1:]]
        if verification:
            lines += [f"  {line}" for line in self._verified_text().splitlines()]
        lines.append(f"  run journal {self.journal_path}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        hosts = html_table(("host", "outcome", "time", "what happened", "journal"), self.hosts())
        actions = self.windows._repr_html_() if self.windows is not None else ""
        verified = (
            self.verification._repr_html_()
            if self.verification is not None
            else f"<p>{html_text(self._verified_text())}</p>"
        )
        return (
            f"<div><h3>{html_text(self.target)}: {html_text(self.outcome)}</h3>"
            f"<p>{html_text(self.message)} — run <code>{html_text(self.run_id)}</code>, "
            f"{self.seconds:.1f} s</p>{hosts}<h4>Windows actions</h4>{actions}"
            f"<h4>Verified</h4>{verified}"
            f"<p>run journal <code>{html_text(self.journal_path)}</code></p></div>"
        )


@overload
async def apply_async(
    rplan: RotationPlan,
    *,
    check: Literal[False] = False,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> RotationResult: ...


@overload
async def apply_async(
    rplan: RotationPlan,
    *,
    check: Literal[True],
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> RotationCheck: ...


@short_errors
async def apply_async(
    rplan: RotationPlan,
    *,
    check: bool = False,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> RotationResult | RotationCheck:
    """Apply a plan: Windows, then SvarUT; a failure leaves every host as it was.

    With ``check=True`` nothing changes: :func:`check_async` runs the plan's preconditions on
    the hosts and its :class:`RotationCheck` is returned (``journal_dir`` and ``verify`` are
    not used).

    ``journal_dir`` defaults to the target's. With ``verify``, a run that changed something
    is verified at once against the desired state, as :func:`verify_async` does, and the
    report kept in the result's ``verification``: the Windows checks use the facts the apply
    pipeline read at its end (the report's ``facts_from`` says so; when that read failed, a
    gather of its own), the TLS handshakes and the SvarUT host are checked anew.

    Raises :class:`~cosdoc_certs.errors.ApplyError` when a phase failed (``rolled_back``
    says whether every host was restored). Run in the main thread, SIGINT, SIGTERM and SIGHUP
    stop it the same way: the host being changed is rolled back (and the Windows server too
    during the SvarUT phase), then
    :class:`~cosdoc_certs._signals.SignalReceived` is raised.
    """
    if check:
        return await check_async(rplan, progress=progress)
    return await _apply_and_verify(rplan, journal_dir=journal_dir, progress=progress, verify=verify)


async def _apply_and_verify(
    rplan: RotationPlan, *, journal_dir: Path | None, progress: Progress | None, verify: bool
) -> RotationResult:
    """:func:`apply_async` without ``check``: the phases, then the verification if asked."""
    folder = journal_dir or rplan.target.journal_dir
    with stop_on_signals() as stop:
        result = await _apply_phases(rplan, folder, progress or _quiet, stop)
    if verify and result.outcome is Outcome.APPLIED:
        started = time.perf_counter()
        report = await _verify(rplan.target, rplan, folder, _post_state_of(result.windows))
        seconds = {**result.phase_seconds, "verify": time.perf_counter() - started}
        result = dataclasses.replace(result, verification=report, phase_seconds=seconds)
    return result


@dataclass(frozen=True)
class _PostState:
    """What the Windows apply pipeline read at its end: the facts, or why there are none."""

    facts: WindowsFacts | None
    problem: str | None


def _post_state_of(windows: WindowsApplyResult | None) -> _PostState | None:
    """The post-state of a Windows phase that ran (None: no phase, so nothing to reuse)."""
    if windows is None:
        return None
    return _PostState(windows.post_state, windows.post_state_problem)


# -- check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationCheck(Displayed):
    """What applying the plan would hit on each host, found without changing anything."""

    target: str
    windows: WindowsCheckResult | None
    svarut: svarut.SvarutCheck | None
    seconds: float = 0.0

    @property
    def worst(self) -> Severity | None:
        """ERROR when a host has a blocker (exit codes as ``status``)."""
        found = [part.worst for part in (self.windows, self.svarut) if part is not None]
        return max((severity for severity in found if severity is not None), default=None)

    @property
    def ok(self) -> bool:
        """True when every host would accept every step of the plan."""
        return self.worst is not Severity.ERROR

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "target": self.target,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "windows": self.windows.to_dict() if self.windows else None,
            "svarut": self.svarut.to_dict() if self.svarut else None,
        }

    def to_text(self) -> str:
        """Each host's verdicts, then one line saying whether apply would go through."""
        lines = [part.to_text() for part in (self.windows, self.svarut) if part is not None]
        verdict = "would apply" if self.ok else "would NOT apply: fix the FAIL lines first"
        lines.append(f"{self.target}: check {verdict} (nothing was changed)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<RotationCheck {self.target}: {'ok' if self.ok else 'blocked'}>"


@short_errors
async def check_async(rplan: RotationPlan, *, progress: Progress | None = None) -> RotationCheck:
    """Run the plan's steps as checks on each host (``apply.ps1 -Check``; SvarUT pre-flight).

    One PowerShell call on the Windows server; on the SvarUT host, read-only commands. Nothing
    is changed and no journal is written.
    """
    started = time.perf_counter()
    say = progress or _quiet
    target = rplan.target
    windows_check = (
        _in_thread(_check_windows, rplan, _prefixed("Windows", say))
        if rplan.windows is not None and rplan.windows_facts is not None
        else _none()
    )
    svarut_check = (
        svarut.check_async(target.svarut, rplan.svarut)
        if target.svarut is not None and rplan.svarut is not None
        else _none()
    )
    windows_result, svarut_result = await asyncio.gather(windows_check, svarut_check)
    return RotationCheck(target.name, windows_result, svarut_result, time.perf_counter() - started)


def _check_windows(rplan: RotationPlan, say: Progress) -> WindowsCheckResult:
    assert rplan.windows is not None
    assert rplan.windows_facts is not None
    with rplan.target.windows_session() as host:
        return check_windows(host, rplan.windows, rplan.bundle, rplan.windows_facts, progress=say)


async def _apply_phases(
    rplan: RotationPlan, journal_dir: Path | None, say: Progress, stop: StopRequest
) -> RotationResult:
    started = time.perf_counter()
    target = rplan.target
    journal = Journal.start(
        kind=JOURNAL_KIND,
        host=target.name,
        old_thumbprint=None,
        new_thumbprint=None,
        directory=journal_dir,
        context=_journal_context(rplan),
    )
    phase_seconds: dict[str, float] = {}
    try:
        windows_result, svarut_result = await _phases(
            rplan, journal, journal_dir, say, stop, phase_seconds
        )
    except SignalReceived as stopped:  # every host restored (or the journal says what is not)
        if journal.outcome is Outcome.RUNNING:
            journal.finish(Outcome.NOTHING_TO_DO, "stopped before any host was touched")
        stopped.result = RotationResult(
            target.name,
            journal.outcome,
            journal.path,
            None,
            None,
            str(journal.to_dict()["message"]),
            time.perf_counter() - started,
            phase_seconds,
        )
        raise
    message = _applied_message(windows_result, svarut_result)
    outcome = Outcome.APPLIED if _changed(windows_result, svarut_result) else Outcome.NOTHING_TO_DO
    journal.finish(outcome, message)
    return RotationResult(
        target.name,
        outcome,
        journal.path,
        windows_result,
        svarut_result,
        message,
        time.perf_counter() - started,
        phase_seconds,
    )


async def _stop_after_phases(target: Target, journal: Journal, say: Progress) -> None:
    """Roll back every host the finished phases changed, after a stop request."""
    say("stop requested: rolling back every host this run changed")
    try:
        await _undo_run(target, journal, say)
    except Exception as error:
        journal.finish(Outcome.ROLLBACK_FAILED, f"stopped; rollback: {_problem(error)}")
        raise
    journal.finish(Outcome.ROLLED_BACK, "stopped by a signal after the last phase")


async def _phases(
    rplan: RotationPlan,
    journal: Journal,
    journal_dir: Path | None,
    say: Progress,
    stop: StopRequest,
    phase_seconds: dict[str, float],
) -> tuple[WindowsApplyResult | None, svarut.RunResult | None]:
    """Windows, then SvarUT; a stop requested at a phase boundary rolls back what was done.

    Each host phase's duration goes into ``phase_seconds``.
    """
    stop.raise_if_requested()  # before the first host is touched: nothing to undo
    windows_result = None
    if rplan.windows is not None and not rplan.windows.is_empty:
        phase_started = time.perf_counter()
        windows_result = await _windows_phase(rplan, journal, journal_dir, say)
        phase_seconds["windows"] = time.perf_counter() - phase_started
    svarut_result = None
    if rplan.svarut is not None:
        phase_started = time.perf_counter()
        svarut_result = await _svarut_phase(rplan, journal, journal_dir, say, windows_result, stop)
        phase_seconds["svarut"] = time.perf_counter() - phase_started
    if stop.requested:  # the signal came after the last phase: undo it all the same
        await _stop_after_phases(rplan.target, journal, say)
        stop.raise_if_requested()
    return windows_result, svarut_result


def _changed(
    windows_result: WindowsApplyResult | None, svarut_result: svarut.RunResult | None
) -> bool:
    """True when a host was changed (a SvarUT host already serving the certificate was not)."""
    svarut_changed = (
        svarut_result is not None and svarut_result.outcome is not Outcome.NOTHING_TO_DO
    )
    return windows_result is not None or svarut_changed


def _journal_context(rplan: RotationPlan) -> dict[str, Any]:
    target = rplan.target
    return {
        "windows_host": target.windows_host,
        "svarut_host": target.svarut.ssh.host if target.svarut else None,
        "thumbprints": {
            str(info.role): info.thumbprint for info in rplan.bundle.certificates if info.role
        },
        "windows_plan": rplan.windows.to_dict() if rplan.windows else None,
        "svarut_thumbprint": rplan.svarut.new.thumbprint if rplan.svarut else None,
    }


async def _windows_phase(
    rplan: RotationPlan, journal: Journal, journal_dir: Path | None, say: Progress
) -> WindowsApplyResult:
    wplan, facts, target = rplan.windows, rplan.windows_facts, rplan.target
    assert wplan is not None
    assert facts is not None
    step = journal.register("windows", host=target.windows_host)
    windows_say = _prefixed("Windows", say)

    def run() -> WindowsApplyResult:
        with target.windows_session() as host:
            return apply_windows(
                host,
                wplan,
                rplan.bundle,
                facts,
                consumers=target.consumers,
                journal_dir=journal_dir,
                progress=windows_say,
                parent=ParentStep(journal, step),
            )

    try:
        result = await _in_thread(run)
    except BaseException as error:
        _finish_failed(journal, step, error, "the SvarUT host was not touched")
        raise
    journal.mark(step, StepStatus.DONE, journal=str(result.journal_path))
    return result


async def _svarut_phase(
    rplan: RotationPlan,
    journal: Journal,
    journal_dir: Path | None,
    say: Progress,
    windows_result: WindowsApplyResult | None,
    stop: StopRequest,
) -> svarut.RunResult:
    target, splan = rplan.target, rplan.svarut
    assert target.svarut is not None
    assert splan is not None
    step = journal.register("svarut", host=target.svarut.ssh.host)
    try:
        result = await stop.guard(
            svarut.apply_async(
                target.svarut,
                splan,
                journal_dir=journal_dir,
                progress=_prefixed("SvarUT", say),
                parent=ParentStep(journal, step),
            )
        )
    except BaseException as error:
        if windows_result is None:
            _finish_failed(journal, step, error, "the Windows server was not changed")
            raise
        failure = await _undo_windows_after(rplan, journal, step, error, windows_result, say)
        if failure is error:  # Ctrl-C: both hosts restored, now stop
            raise
        raise failure from error
    journal.mark(step, StepStatus.DONE, journal=str(result.journal_path))
    return result


async def _undo_windows_after(
    rplan: RotationPlan,
    journal: Journal,
    step: int,
    error: BaseException,
    windows_result: WindowsApplyResult,
    say: Progress,
) -> BaseException:
    """Roll the Windows host back after the SvarUT phase failed; what to raise."""
    problem = _problem(error)
    svarut_restored = not isinstance(error, ApplyError) or error.rolled_back
    journal.mark(step, StepStatus.FAILED, error=problem)
    say(f"SvarUT failed ({problem}); rolling back the Windows server too")
    try:
        await _in_thread(
            _rollback_windows, rplan.target, Journal.load(windows_result.journal_path), say
        )
    except Exception as rollback_error:
        journal.finish(Outcome.ROLLBACK_FAILED, f"{problem}; Windows rollback: {rollback_error}")
        return ApplyError(
            f"{rplan.target.name}: SvarUT failed ({problem}) and rolling back the Windows "
            f"server failed too ({_problem(rollback_error)})",
            f"read the journals linked from {journal.path}, then run rollback again",
            rolled_back=False,
        )
    journal.mark(_index_of(journal, "windows"), StepStatus.UNDONE)
    if not svarut_restored:
        journal.finish(Outcome.ROLLBACK_FAILED, problem)
        return ApplyError(
            f"{rplan.target.name}: SvarUT failed and its rollback failed: {problem}; "
            "the Windows server was rolled back",
            f"restore SvarUT with the journal linked from {journal.path}",
            rolled_back=False,
        )
    journal.finish(Outcome.ROLLED_BACK, problem)
    if not isinstance(error, Exception):  # Ctrl-C: restored, now stop
        return error
    return ApplyError(
        f"{rplan.target.name}: SvarUT failed, so both hosts were rolled back: {problem}",
        f"fix the cause and run apply again (run {journal.path.stem})",
    )


def _finish_failed(journal: Journal, step: int, error: BaseException, untouched: str) -> None:
    problem = _problem(error)
    journal.mark(step, StepStatus.FAILED, error=problem)
    restored = not isinstance(error, ApplyError) or error.rolled_back
    outcome = Outcome.ROLLED_BACK if restored else Outcome.ROLLBACK_FAILED
    journal.finish(outcome, f"{problem}; {untouched}")


def _index_of(journal: Journal, name: str) -> int:
    return next(index for index, step in enumerate(journal.steps) if step["name"] == name)


def _applied_message(
    windows_result: WindowsApplyResult | None, svarut_result: svarut.RunResult | None
) -> str:
    parts = []
    if windows_result is not None:
        parts.append("Windows server rotated")
    if svarut_result is not None:
        parts.append(f"SvarUT: {svarut_result.message}")
    return "; ".join(parts) or "nothing to do"


# -- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RotationVerifyReport(Displayed):
    """The verification of each host of the installation."""

    target: str
    windows: WindowsVerifyReport | None
    svarut: svarut.VerifyReport | None

    @property
    def worst(self) -> Severity | None:
        """ERROR when a check failed on any host, else the worst SvarUT finding."""
        if not self.ok:
            return Severity.ERROR
        return worst(self.svarut.findings) if self.svarut else None

    @property
    def ok(self) -> bool:
        """True when no host has an error."""
        return all(report.ok for report in (self.windows, self.svarut) if report is not None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "target": self.target,
            "ok": self.ok,
            "windows": self.windows.to_dict() if self.windows else None,
            "svarut": self.svarut.to_dict() if self.svarut else None,
        }

    def to_text(self) -> str:
        """Each host's report under one verdict."""
        verdict = "verified" if self.ok else "NOT verified"
        parts = [f"{self.target}: {verdict}"]
        parts += [report.to_text() for report in (self.windows, self.svarut) if report]
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"<RotationVerifyReport {self.target} ok={self.ok}>"

    def _repr_html_(self) -> str:
        verdict = "verified" if self.ok else "NOT verified"
        parts = [f"<h4>{html_text(self.target)}: {verdict}</h4>"]
        parts += [report._repr_html_() for report in (self.windows, self.svarut) if report]
        return "<div>" + "".join(parts) + "</div>"


@short_errors
async def verify_async(
    target: Target,
    run: RotationPlan | Journal | Path | str | None = None,
    *,
    journal_dir: Path | None = None,
) -> RotationVerifyReport:
    """Re-gather both hosts and check them against the desired state, not a run's plan.

    Every consumer must name the newest valid certificate of its role in the Windows store,
    keys be readable by the consumer's identity, services run, pools be started, and every
    HTTPS binding and the SvarUT endpoint serve the newest SSL certificate — so after a
    no-op run everything is checked, and after a rollback the report says what the
    installation uses and that it is not the newest. Without a Windows server, the SvarUT
    endpoint is checked against ``run`` (a plan or a run's journal; default: the latest run).
    """
    return await _verify(target, run, journal_dir, None)


async def _verify(
    target: Target,
    run: RotationPlan | Journal | Path | str | None,
    journal_dir: Path | None,
    post_state: _PostState | None,
) -> RotationVerifyReport:
    """:func:`verify_async`; the Windows facts from ``post_state`` when it has them."""
    # a journal given is checked first
    run_ssl = _run_ssl(target, run, journal_dir or target.journal_dir)
    windows_report, newest_ssl = None, None
    if target.windows:
        windows_report, newest_ssl = await _in_thread(_verify_windows, target, post_state)
    expected_ssl = newest_ssl or run_ssl
    svarut_report = (
        await svarut.verify_async(target.svarut, expected_ssl) if target.svarut else None
    )
    return RotationVerifyReport(target.name, windows_report, svarut_report)


def _run_ssl(
    target: Target, run: RotationPlan | Journal | Path | str | None, journal_dir: Path | None
) -> str | None:
    """The SSL thumbprint a plan or run put on the SvarUT host (None without a run)."""
    if isinstance(run, RotationPlan):
        return run.svarut.new.thumbprint if run.svarut else None
    try:
        journal = _journal_for(target, run, journal_dir)
    except InputError:
        if run is not None:
            raise
        return None
    return journal.context.get("svarut_thumbprint")


def _verify_windows(
    target: Target, post_state: _PostState | None = None
) -> tuple[WindowsVerifyReport, str | None]:
    """The desired-state report of the Windows server, and the newest valid SSL thumbprint.

    Over the post-state of the apply pipeline when it was read, else a gather of its own
    (the report's ``facts_from`` says which, and why the post-state was not used).
    """
    options = target.windows
    assert options is not None
    if post_state is not None and post_state.facts is not None:
        facts = post_state.facts
        report = verify_desired_facts(
            facts,
            target.consumers,
            server=options.server,
            host=options.address,
            tls_address=target.tls_address,
            facts_from=POST_STATE,
        )
    else:
        with target.windows_session() as host:
            report, facts = verify_desired(
                host, target.consumers, tls_address=target.tls_address
            )
        if post_state is not None:
            fallback = f"{FRESH_GATHER}: the apply's post-state read failed ({post_state.problem})"
            report = dataclasses.replace(report, facts_from=fallback)
    newest = newest_valid(facts, Role.SSL, report.gathered_at)
    return report, newest.thumbprint if newest else None


# -- rollback --------------------------------------------------------------------------------


@short_errors
async def rollback_async(
    target: Target,
    journal: Journal | Path | str | None = None,
    *,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
) -> RotationResult:
    """Undo a finished run on every host it changed, SvarUT first (default: the latest run)."""
    say = progress or _quiet
    started = time.perf_counter()
    run = _journal_for(target, journal, journal_dir or target.journal_dir, undoable=True)
    if run.in_progress:
        raise InputError(
            f"the run {run.path.stem} is still in progress (process {run.to_dict()['pid']})",
            "wait for it to end (or stop it with Ctrl+C, which rolls it back), then check status",
        )
    try:
        results = await _undo_run(target, run, say)
    except Exception as error:
        run.finish(Outcome.ROLLBACK_FAILED, f"rollback: {_problem(error)}")
        raise
    message = "rolled back" if results else "nothing left to undo"
    run.finish(Outcome.ROLLED_BACK, message)
    return RotationResult(
        target.name,
        Outcome.ROLLED_BACK,
        run.path,
        results.get("windows"),
        results.get("svarut"),
        message,
        time.perf_counter() - started,
    )


async def _undo_run(target: Target, run: Journal, say: Progress) -> dict[str, Any]:
    """Undo each host the run journal leads to, SvarUT first; each host's result by name.

    Each step is marked undone once its host is restored, so a rollback that is interrupted
    (or fails) can be run again and goes on where it stopped.
    """
    results: dict[str, Any] = {}
    for step in run.steps_to_undo():  # latest first: SvarUT, then Windows
        child = _child_to_undo(step)
        if child is not None:
            results[step["name"]] = await _undo_child(target, step["name"], child, say)
        run.mark(step["index"], StepStatus.UNDONE)
    return results


def _child_to_undo(step: Mapping[str, Any]) -> Journal | None:
    """The host journal of a run step, if that host still has something to undo."""
    path = step["details"].get("journal")
    if not path:
        return None
    child = Journal.load(path)
    finished = (Outcome.ROLLED_BACK, Outcome.NOTHING_TO_DO)
    return None if child.outcome in finished or not child.steps_to_undo() else child


async def _undo_child(target: Target, name: str, child: Journal, say: Progress) -> Any:
    if name == "svarut":
        if target.svarut is None:
            raise InputError(
                f"the run changed the SvarUT host {child.host}", "pass `svarut` (that host)"
            )
        return await svarut.rollback_async(target.svarut, child, progress=_prefixed("SvarUT", say))
    return await _in_thread(_rollback_windows, target, child, say)


def _rollback_windows(target: Target, child: Journal, say: Progress) -> WindowsApplyResult:
    with target.windows_session() as host:
        return rollback_windows(host, child, progress=_prefixed("Windows", say))


def _journal_for(
    target: Target,
    journal: Journal | Path | str | None,
    journal_dir: Path | None,
    *,
    undoable: bool = False,
) -> Journal:
    if isinstance(journal, Journal):
        run = journal
    elif journal is not None:
        run = Journal.load(journal)
    else:
        run = latest_journal(journal_dir, host=target.name, kind=JOURNAL_KIND, undoable=undoable)
    if run.kind != JOURNAL_KIND:
        raise InputError(
            f"{run.path} is a {run.kind} journal, not a rotation run",
            "give the run journal that apply returned (`journal_path`)",
        )
    if run.host != target.name:
        raise InputError(
            f"{run.path} is a run on {run.host}, not on {target.name}",
            "give the matching installation (`name`)",
        )
    return run


# -- fleet status ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallationStatus(Displayed):
    """One installation now: the Windows report, what its bindings serve, the SvarUT facts.

    ``served`` maps each HTTPS binding to the thumbprint it serves in a TLS handshake (or
    why there was none); ``errors`` says why a host could not be read.
    """

    target: str
    windows: StatusReport | None = None
    served: Mapping[str, str] = field(default_factory=dict)
    svarut: svarut.SvarutFacts | None = None
    errors: tuple[str, ...] = ()

    @property
    def worst(self) -> Severity | None:
        """The worst severity found; an unreachable host counts as an error."""
        if self.errors:
            return Severity.ERROR
        return self.windows.worst if self.windows else None

    def in_use(self) -> dict[str, str]:
        """Every config value (as written), binding and SvarUT endpoint → what it names/serves."""
        uses = {
            f"{status.name}: {use.instance} {use.setting}": repr(use.configured)
            for status in (self.windows.consumers if self.windows else ())
            for use in status.uses
            if use.file
        }
        uses.update({f"binding {name}": thumbprint for name, thumbprint in self.served.items()})
        if self.svarut is not None:
            uses[f"SvarUT {self.svarut.endpoint}"] = str(self.svarut.served_thumbprint)
        return uses

    def key_providers(self) -> dict[str, str]:
        """Per role, the Windows key provider(s) of the keys the consumers' configs name."""
        found: dict[str, set[str]] = {}
        for consumer in self.windows.consumers if self.windows else ():
            for use in consumer.uses:
                certificate = use.certificate
                if use.file and certificate is not None and certificate.fact.key_provider:
                    found.setdefault(use.role.value, set()).add(certificate.fact.key_provider)
        return {role: " | ".join(sorted(names)) for role, names in sorted(found.items())}

    def differences(self, other: InstallationStatus) -> list[str]:
        """What uses or serves something else in ``other`` (``"where: old -> new"``)."""
        mine, theirs = self.in_use(), other.in_use()
        return [
            f"{where}: {mine.get(where)} -> {theirs.get(where)}"
            for where in dict.fromkeys([*mine, *theirs])
            if mine.get(where) != theirs.get(where)
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "target": self.target,
            "worst": str(self.worst) if self.worst else None,
            "errors": list(self.errors),
            "windows": self.windows.to_dict() if self.windows else None,
            "served": dict(self.served),
            "svarut": self.svarut.to_dict() if self.svarut else None,
        }

    def summary(self) -> str:
        """One line: worst finding, SvarUT's served certificate, errors."""
        parts = [f"{self.target}: {self.worst or 'ok'}"]
        if self.windows is not None:
            parts.append(f"{len(self.windows.findings)} finding(s) on {self.windows.address}")
        if self.svarut is not None:
            parts.append(f"SvarUT serves {self.svarut.served_thumbprint or 'nothing'}")
        parts += self.errors
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"<InstallationStatus {self.summary()}>"

    def _served_rows(self) -> list[tuple[str, str]]:
        rows = [(f"binding {name}", served) for name, served in self.served.items()]
        if self.svarut is not None:
            served = self.svarut.served_thumbprint or "nothing"
            rows.append((f"SvarUT {self.svarut.endpoint}", served))
        return rows

    def error_lines(self) -> list[str]:
        """A line per host that could not be read."""
        return [f"  could not read {error}" for error in self.errors]

    def served_lines(self) -> list[str]:
        """A line per HTTPS binding and the SvarUT endpoint: what it serves."""
        return [f"  {where}: serves {served}" for where, served in self._served_rows()]

    def to_text(self) -> str:
        """The summary line, the errors, the Windows report, what each endpoint serves."""
        lines = [self.summary(), *self.error_lines()]
        if self.windows is not None:
            lines.append(self.windows.render().rstrip())
        return "\n".join([*lines, *self.served_lines()])

    def _repr_html_(self) -> str:
        errors = html_list(f"could not read {error}" for error in self.errors)
        windows = self.windows._repr_html_() if self.windows is not None else ""
        served = html_table(("endpoint", "serves in a TLS handshake"), self._served_rows())
        return (
            f"<div><h3>{html_text(self.target)}: {html_text(self.worst or 'ok')}</h3>"
            f"{errors}{windows}<h4>Served</h4>{served}</div>"
        )


@short_errors
async def installation_status_async(
    target: Target, *, warn_days: int = DEFAULT_WARN_DAYS
) -> InstallationStatus:
    """Read both hosts at once: the doctor's report, TLS handshakes, SvarUT's facts."""
    windows = _in_thread(_windows_status, target, warn_days) if target.windows else _no_windows()
    facts = svarut.status_async(target.svarut) if target.svarut else _none()
    windows_part, svarut_facts = await asyncio.gather(windows, facts, return_exceptions=True)
    errors = tuple(
        f"{where}: {_problem(result)}"
        for where, result in (("Windows", windows_part), ("SvarUT", svarut_facts))
        if isinstance(result, CosDocCertsError)
    )
    for result in (windows_part, svarut_facts):
        if isinstance(result, BaseException) and not isinstance(result, CosDocCertsError):
            raise result
    report, served = windows_part if isinstance(windows_part, tuple) else (None, None)
    return InstallationStatus(
        target.name,
        report,
        served or {},
        svarut_facts if isinstance(svarut_facts, svarut.SvarutFacts) else None,
        errors,
    )


@short_errors
async def status_many_async(
    targets: Sequence[Target], *, warn_days: int = DEFAULT_WARN_DAYS
) -> list[InstallationStatus]:
    """The status of every installation at once.

    Reads the Windows servers in a pool of its own, one thread per installation (up to
    :data:`MAX_THREADS`), so every server is read at the same time; the running loop's
    default executor (a notebook's) is left as it was.
    """
    workers = max(1, min(len(targets), MAX_THREADS))
    with concurrent.futures.ThreadPoolExecutor(workers, "cosdoc-status") as pool:
        token = _EXECUTOR.set(pool)
        try:
            reads = (installation_status_async(target, warn_days=warn_days) for target in targets)
            return list(await asyncio.gather(*reads))
        finally:
            _EXECUTOR.reset(token)


def _windows_status(target: Target, warn_days: int) -> tuple[StatusReport, dict[str, str]]:
    options = target.windows
    assert options is not None
    report = status(
        options, target.consumers, warn_days=warn_days, pool_factory=target.pool_factory
    )
    iis = report.facts.iis
    address = target.tls_address or (lambda binding: (options.server, binding.port))
    return report, {
        f"{binding.site} {binding.binding_information}": _served(binding, address)
        for binding in (iis.bindings if iis else ())
    }


def _served(binding: BindingFact, address: TlsAddress) -> str:
    """The thumbprint a binding serves in a handshake, or why there was none."""
    try:
        host, port = address(binding)
        return fetch_certificate(host, port, server_name=binding.host or "").thumbprint
    except CosDocCertsError as error:
        return f"no handshake: {error.problem}"


# -- helpers ---------------------------------------------------------------------------------


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking PowerShell-remoting work in a thread (of :data:`_EXECUTOR`, if set).

    The thread runs in a copy of the caller's context, so it sees the run's stop request.
    """
    pool = _EXECUTOR.get()
    if pool is None:
        return await asyncio.to_thread(function, *args)
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(pool, context.run, function, *args)


async def _none() -> None:
    """Stands in for a host the installation does not have."""


async def _no_windows() -> tuple[None, None]:
    """Stands in for the Windows plan of an installation without a Windows server."""
    return None, None


def _prefixed(prefix: str, say: Progress) -> Progress:
    return lambda message: say(f"{prefix}: {message}")


_problem = problem_of


# -- synchronous wrappers --------------------------------------------------------------------


plan = synchronous(plan_async)
check = synchronous(check_async)
_check_plain = check  # `apply`'s own `check` parameter hides the module name
_apply_plain = synchronous(_apply_and_verify, "apply")


@overload
def apply(
    rplan: RotationPlan,
    *,
    check: Literal[False] = False,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> RotationResult: ...


@overload
def apply(
    rplan: RotationPlan,
    *,
    check: Literal[True],
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> RotationCheck: ...


def apply(
    rplan: RotationPlan,
    *,
    check: bool = False,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    verify: bool = False,
) -> RotationResult | RotationCheck:
    """Synchronous :func:`apply_async` (``check=True``: :func:`check_async`, nothing changed)."""
    if check:
        return _check_plain(rplan, progress=progress)
    return _apply_plain(rplan, journal_dir=journal_dir, progress=progress, verify=verify)


apply.__wrapped__ = apply_async  # type: ignore[attr-defined]  # as `synchronous` marks its twins


verify = synchronous(verify_async)
rollback = synchronous(rollback_async)
installation_status = synchronous(installation_status_async)
status_many = synchronous(status_many_async)
