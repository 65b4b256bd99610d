"""The SvarUT library calls: status, plan, apply, verify, rollback — async and synchronous.

A :class:`SvarutTarget` says how to reach the host (SSH options), where its installation is
(layout and root, detected when not given) and where its TLS endpoint answers. The async
functions are the core (many hosts at once with ``asyncio.gather``); the plain functions of
the same name without ``_async`` wrap them for scripts and notebooks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from cosdoc_certs._aio import short_errors, synchronous
from cosdoc_certs._signals import guarded
from cosdoc_certs.certs.load import load_bundle
from cosdoc_certs.errors import InputError
from cosdoc_certs.journal import Journal, Outcome, ParentStep, latest_journal
from cosdoc_certs.svarut.apply import (
    JOURNAL_KIND,
    Connector,
    Progress,
    RunResult,
    apply_plan,
    undo,
)
from cosdoc_certs.svarut.check import SvarutCheck, check_plan
from cosdoc_certs.svarut.connection import HostConnection, SshOptions
from cosdoc_certs.svarut.gather import Endpoint, SvarutFacts, gather
from cosdoc_certs.svarut.planning import NewCertificate, SvarutPlan, plan_rotation
from cosdoc_certs.svarut.verify import VerifyReport, check_facts
from cosdoc_certs.thumbprints import normalize_thumbprint

__all__ = [
    "SvarutTarget",
    "apply",
    "apply_async",
    "check",
    "check_async",
    "load_new_certificate",
    "plan",
    "plan_async",
    "rollback",
    "rollback_async",
    "status",
    "status_async",
    "verify",
    "verify_async",
]


@dataclass(frozen=True)
class SvarutTarget:
    """A SvarUT host: SSH options, installation layout/root, TLS endpoint.

    ``connector`` replaces the SSH connect (tests and the lab inject wrapped connections).
    """

    ssh: SshOptions
    layout: str | None = None
    root: str | None = None
    tls_host: str | None = None
    tls_port: int = 443
    server_name: str | None = None
    restart_timeout: float = 60.0
    connector: Connector | None = field(default=None, compare=False, repr=False)

    @property
    def endpoint(self) -> Endpoint:
        """Where the TLS check connects."""
        return Endpoint(self.tls_host or self.ssh.host, self.tls_port, self.server_name)

    async def connect(self) -> HostConnection:
        """A new connection to the host."""
        if self.connector is not None:
            return await self.connector()
        from cosdoc_certs.svarut.ssh import connect  # asyncssh: loaded when a host is used

        return await connect(self.ssh)


def load_new_certificate(
    paths: Sequence[str | os.PathLike[str]], password: str | bytes | None
) -> NewCertificate:
    """The SSL certificate (with key and chain) from PFX/PEM files."""
    return NewCertificate.from_bundle(load_bundle(paths, password))


async def _with_connection(target: SvarutTarget) -> tuple[HostConnection, SvarutFacts]:
    connection = await target.connect()
    try:
        facts = await gather(connection, target.endpoint, layout=target.layout, root=target.root)
    except BaseException:
        await connection.close()
        raise
    return connection, facts


@short_errors
async def status_async(target: SvarutTarget) -> SvarutFacts:
    """Gather the host's facts: layout, prod.env names, current and served certificate."""
    connection, facts = await _with_connection(target)
    await connection.close()
    return facts


@short_errors
async def plan_async(
    target: SvarutTarget, new: NewCertificate, *, today: date | None = None
) -> SvarutPlan:
    """Gather and plan installing ``new`` (nothing is changed)."""
    return plan_rotation(await status_async(target), new, today=today)


@short_errors
async def apply_async(
    target: SvarutTarget,
    splan: SvarutPlan,
    *,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    parent: ParentStep | None = None,
) -> RunResult:
    """Apply a plan made by :func:`plan_async`; rolls back and raises ApplyError on failure.

    ``parent`` is the step of a run journal that names this host's journal before the host
    is touched (a rotation passes it).

    Run in the main thread, SIGINT, SIGTERM and SIGHUP roll it back too, then raise
    :class:`~cosdoc_certs._signals.SignalReceived`.
    """
    return await guarded(
        apply_plan(
            target.connect,
            splan,
            journal_dir=journal_dir,
            progress=progress,
            restart_timeout=target.restart_timeout,
            parent=parent,
        )
    )


@short_errors
async def check_async(target: SvarutTarget, splan: SvarutPlan) -> SvarutCheck:
    """Test what applying ``splan`` needs on the host (read-only commands; nothing changed)."""
    connection = await target.connect()
    try:
        return await check_plan(connection, splan)
    finally:
        await connection.close()


@short_errors
async def verify_async(target: SvarutTarget, expected_thumbprint: str | None) -> VerifyReport:
    """Gather again and check what is served, running and configured."""
    expected = normalize_thumbprint(expected_thumbprint) if expected_thumbprint else None
    return check_facts(await status_async(target), expected)


@short_errors
async def rollback_async(
    target: SvarutTarget,
    journal: Journal | Path | str | None = None,
    *,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Undo the run recorded in ``journal`` (default: the latest for this host)."""
    run = _journal_for(target, journal, journal_dir)
    if not run.steps_to_undo():
        return RunResult(run.host, run.outcome, run.path, None, "nothing left to undo")
    connection = await target.connect()
    try:
        served = await undo(connection, run, progress, target.restart_timeout)
    except Exception as error:
        run.finish(Outcome.ROLLBACK_FAILED, f"rollback: {error}")
        raise
    finally:
        await connection.close()
    message = f"rolled back; serves {served}" if served else "rolled back"
    run.finish(Outcome.ROLLED_BACK, message)
    return RunResult(run.host, Outcome.ROLLED_BACK, run.path, served, message)


def _journal_for(
    target: SvarutTarget, journal: Journal | Path | str | None, journal_dir: Path | None
) -> Journal:
    if isinstance(journal, Journal):
        run = journal
    elif journal is not None:
        run = Journal.load(journal)
    else:
        run = latest_journal(journal_dir, host=target.ssh.host, kind=JOURNAL_KIND, undoable=True)
    if run.kind != JOURNAL_KIND:
        raise InputError(f"{run.path} is a {run.kind} journal", "give a SvarUT journal")
    if run.host != target.ssh.host:
        raise InputError(
            f"{run.path} is the journal of {run.host}, not {target.ssh.host}",
            f"roll back with the target of {run.host} (`SshOptions.host`)",
        )
    return run


status = synchronous(status_async)
plan = synchronous(plan_async)
apply = synchronous(apply_async)
check = synchronous(check_async)
verify = synchronous(verify_async)
rollback = synchronous(rollback_async)
