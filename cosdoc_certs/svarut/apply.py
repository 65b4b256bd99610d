"""Apply a SvarUT plan step by step with a journal; undo it on failure or on request.

The order follows certbot's reverter: every step is registered in the journal *before* it
touches the host, then marked done. The steps: check prod.env is unchanged since the plan
(compare-and-swap), stage the files in a private 0700 temp folder (key 0600), ``sudo install``
them root-owned into the certificate folder, back up prod.env beside itself, write the edited
prod.env, remove the temp folder, test the new files with ``nginx -t`` in a throwaway
container (``docker compose run --rm --no-deps -T <service> nginx -t``, which renders the
configuration from the edited prod.env as the real start would) — so a certificate/key pair
nginx refuses fails here, while the running nginx still serves the old certificate — then
``docker compose down`` / ``up -d``, and wait until the containers run and the endpoint serves
the new thumbprint.

Any failure — a command, a container that exits, a lost connection, Ctrl-C — triggers
:func:`undo`: reconnect if needed, put prod.env back to its exact original bytes (from the
backup, checked by hash), remove the new files and the temp folder, restart, and verify that
the old certificate is served again. ``rollback`` runs the same :func:`undo` from a
journal file later.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import posixpath
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosdoc_certs.display import Displayed
from cosdoc_certs.errors import ApplyError, InputError, RemoteError, problem_of
from cosdoc_certs.journal import Journal, Outcome, ParentStep, StepStatus, find_journals
from cosdoc_certs.svarut.connection import ConnectionLostError, HostConnection
from cosdoc_certs.svarut.gather import (
    ContainerState,
    Endpoint,
    compose_argv,
    read_containers,
    read_file,
)
from cosdoc_certs.svarut.layout import Layout
from cosdoc_certs.svarut.planning import SvarutPlan
from cosdoc_certs.tls import ServedCertificate, fetch_certificate_async

__all__ = [
    "Connector",
    "Progress",
    "RunResult",
    "apply_plan",
    "preflight",
    "remove_crashed_staging",
    "restart",
    "undo",
    "wait_serving",
]

logger = logging.getLogger(__name__)

JOURNAL_KIND = "svarut"
STAGING_PARENT = "/tmp"  # noqa: S108 - a fresh 0700 folder is made inside (exclusive mkdir)
_FAILED_STATES = frozenset({"exited", "dead", "restarting", "removing", "paused"})
_RECONNECT_ATTEMPTS = 3

Connector = Callable[[], Awaitable[HostConnection]]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunResult(Displayed):
    """How an apply or rollback ended, where its journal is, and what is served now."""

    host: str
    outcome: Outcome
    journal_path: Path
    served_thumbprint: str | None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "host": self.host,
            "outcome": str(self.outcome),
            "journal": str(self.journal_path),
            "served_thumbprint": self.served_thumbprint,
            "message": self.message,
        }

    def to_text(self) -> str:
        """One line: the host, the outcome, what happened, the journal."""
        return f"{self.host}: {self.outcome} — {self.message} (journal {self.journal_path})"


def _sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _quiet(_: str) -> None:
    """The default progress callback: nothing."""


def _journal_context(splan: SvarutPlan, staging_parent: str) -> dict[str, Any]:
    facts = splan.facts
    layout = facts.layout
    return {
        "layout": {
            "name": layout.name,
            "root": layout.root,
            "env_file": layout.env_file,
            "files_dir": layout.files_dir,
            "cert_key": layout.cert_key,
            "key_key": layout.key_key,
        },
        "endpoint": {
            "host": facts.endpoint.host,
            "port": facts.endpoint.port,
            "server_name": facts.endpoint.server_name,
        },
        "env_sha256_before": facts.env_sha256,
        "env_sha256_after": splan.env_sha256_after,
        "staging_parent": staging_parent,
        "plan": splan.plan.to_dict(),
    }


def _layout_of(journal: Journal) -> Layout:
    return Layout(**journal.context["layout"])


def _endpoint_of(journal: Journal) -> Endpoint:
    return Endpoint(**journal.context["endpoint"])


async def restart(connection: HostConnection, layout: Layout) -> None:
    """``docker compose --env-file <env> down`` then ``up -d`` in the compose folder."""
    await connection.run(compose_argv(layout, "down"), cwd=layout.root)
    await connection.run(compose_argv(layout, "up", "-d"), cwd=layout.root)


async def preflight(
    connection: HostConnection, layout: Layout, containers: Sequence[ContainerState] = ()
) -> None:
    """``nginx -t`` in a throwaway container of the web service, with prod.env as it is now.

    ``containers`` are the project's containers as gathered (they name the nginx service).
    Raises :class:`RemoteError` with nginx's own complaint when it refuses the configuration.
    """
    services = [c.service for c in containers if "nginx" in c.service] or [
        c.service for c in containers
    ]
    service = services[0] if services else "nginx"
    result = await connection.run(
        compose_argv(layout, "run", "--rm", "--no-deps", "-T", service, "nginx", "-t"),
        cwd=layout.root,
        check=False,
    )
    if not result.ok:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        complaint = [line for line in lines if "[emerg]" in line] or lines
        raise RemoteError(
            f"{connection.host}: nginx -t refuses the new files, so nginx was not restarted: "
            f"{complaint[0] if complaint else f'exit status {result.returncode}'}",
            f"check the certificate and key files named in {layout.env_path}",
        )


async def wait_serving(
    connection: HostConnection,
    layout: Layout,
    endpoint: Endpoint,
    expected: str | None,
    timeout: float,
) -> ServedCertificate:
    """Poll ``docker compose ps`` and a TLS handshake until the containers run and serve it.

    ``expected=None`` accepts any certificate. A container that exits (or restarts) fails at
    once; otherwise RemoteError at ``timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause, last = 0.02, "no container yet"
    while True:
        containers = await read_containers(connection, layout)
        stopped = [c for c in containers if c.state in _FAILED_STATES]
        if stopped:
            raise RemoteError(
                f"{connection.host}: container {stopped[0]} after `docker compose up -d`",
                f"see `docker compose logs` in {layout.root}",
            )
        if containers:
            try:
                served = await fetch_certificate_async(
                    endpoint.host, endpoint.port, server_name=endpoint.server_name, timeout=5
                )
            except RemoteError as error:
                last = error.problem
            else:
                if expected in (None, served.thumbprint):
                    return served
                last = f"it serves {served.thumbprint}"
        if loop.time() + pause > deadline:
            raise RemoteError(
                f"{endpoint} does not serve {expected or 'TLS'} within {timeout:.0f} s: {last}",
                f"see `docker compose logs` in {layout.root}",
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def apply_plan(
    connector: Connector,
    splan: SvarutPlan,
    *,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    restart_timeout: float = 60.0,
    staging_parent: str = STAGING_PARENT,
    parent: ParentStep | None = None,
) -> RunResult:
    """Execute ``splan`` on its host; on any failure undo it and raise :class:`ApplyError`.

    First the staging folders of this host's runs that crashed (their process is gone) are
    removed: they may hold a plaintext key.
    """
    say = progress or _quiet
    facts = splan.facts
    old = facts.served_thumbprint or facts.current_thumbprint
    start_journal = functools.partial(
        Journal.start,
        kind=JOURNAL_KIND,
        host=facts.host,
        old_thumbprint=old,
        new_thumbprint=splan.new.thumbprint,
        directory=journal_dir,
        context=_journal_context(splan, staging_parent),
        parent=parent,
    )
    if splan.is_empty:
        reason = splan.plan.noops[0].noop_reason if splan.plan.noops else None
        journal = start_journal()
        journal.finish(Outcome.NOTHING_TO_DO, reason or "nothing to do")
        return RunResult(facts.host, Outcome.NOTHING_TO_DO, journal.path, old, reason or "")
    connection = await connector()  # an unreachable host fails here, before any journal
    try:
        await remove_crashed_staging(connection, journal_dir, facts.host, say)
        journal = start_journal()
    except BaseException:
        await _close_quietly(connection)
        raise
    try:
        served = await _execute(connection, splan, journal, say, restart_timeout, staging_parent)
    except BaseException as error:
        connection, failure = await _roll_back(
            connection, connector, journal, error, say, restart_timeout
        )
        if failure is error:  # Ctrl-C or cancellation: rolled back, now stop
            raise
        raise failure from error
    finally:
        await _close_quietly(connection)
    message = f"{facts.endpoint} serves {served.thumbprint}"
    journal.finish(Outcome.APPLIED, message)
    say(f"done: {message}")
    return RunResult(facts.host, Outcome.APPLIED, journal.path, served.thumbprint, message)


async def _execute(
    connection: HostConnection,
    splan: SvarutPlan,
    journal: Journal,
    say: Progress,
    restart_timeout: float,
    staging_parent: str,
) -> ServedCertificate:
    facts, layout = splan.facts, splan.facts.layout
    say(f"checking that {layout.env_path} is unchanged since the plan")
    current = await read_file(connection, layout.env_path)
    if _sha256(current) != facts.env_sha256:
        raise InputError(
            f"{layout.env_path} changed on {facts.host} since the plan was made",
            "run plan again and review the new plan",
        )
    if splan.uploads or splan.env_after is not None:
        await _stage_and_edit(connection, splan, journal, say, staging_parent)
        say("testing the new files with nginx -t in a throwaway container")
        await preflight(connection, layout, splan.facts.containers)
    with journal.step("restart", folder=layout.root):
        say(f"restarting the containers in {layout.root}")
        await restart(connection, layout)
    with journal.step("verify", expected=splan.new.thumbprint):
        say(f"waiting for {facts.endpoint} to serve {splan.new.thumbprint}")
        return await wait_serving(
            connection, layout, facts.endpoint, splan.new.thumbprint, restart_timeout
        )


async def _stage_and_edit(
    connection: HostConnection,
    splan: SvarutPlan,
    journal: Journal,
    say: Progress,
    staging_parent: str,
) -> None:
    layout = splan.facts.layout
    staging = posixpath.join(staging_parent, f"cosdoc-certs-{secrets.token_hex(8)}")
    stage = journal.register("stage", path=staging)
    await connection.make_private_dir(staging)
    for upload in splan.uploads:
        name = posixpath.basename(upload.path)
        with journal.step("install", path=upload.path, sha256=upload.sha256, mode=upload.mode):
            say(f"installing {upload.path} ({upload.mode:04o})")
            temp = posixpath.join(staging, name)
            await connection.put_private(temp, upload.data)
            mode = f"{upload.mode:04o}"
            await connection.run(
                ["install", "-o", "root", "-g", "root", "-m", mode, "--", temp, upload.path]
            )
    if splan.env_after is not None and splan.backup_path is not None:
        with journal.step("backup-env", path=layout.env_path, backup=splan.backup_path):
            await connection.run(["cp", "-p", "--", layout.env_path, splan.backup_path])
        with journal.step(
            "edit-env",
            path=layout.env_path,
            backup=splan.backup_path,
            sha256_before=splan.facts.env_sha256,
            sha256_after=splan.env_sha256_after,
        ):
            say(f"pointing {layout.env_path} at the new files")
            temp = posixpath.join(staging, "prod.env")
            await connection.put_private(temp, splan.env_after)
            await connection.run(["cp", "--", temp, layout.env_path])
            written = await read_file(connection, layout.env_path)
            if _sha256(written) != splan.env_sha256_after:
                raise RemoteError(
                    f"{layout.env_path} reads back different from what was written",
                    "check the file system on the host (full? read-only?)",
                )
    await connection.remove_tree(staging)
    journal.mark(stage, StepStatus.DONE)


async def _roll_back(
    connection: HostConnection,
    connector: Connector,
    journal: Journal,
    error: BaseException,
    say: Progress,
    restart_timeout: float,
) -> tuple[HostConnection, BaseException]:
    """Undo after ``error``; return the connection and what to raise (ApplyError or ``error``)."""
    problem = problem_of(error)
    say(f"failed: {problem} — rolling back")
    try:
        connection = await _usable(connection, connector)
        served = await undo(connection, journal, say, restart_timeout, in_run=True)
    except Exception as rollback_error:
        journal.finish(Outcome.ROLLBACK_FAILED, f"{problem}; rollback: {rollback_error}")
        return connection, ApplyError(
            f"rotation on {journal.host} failed ({problem}) and the rollback failed too "
            f"({rollback_error})",
            f"restore by hand with the journal {journal.path}, or run rollback again",
            rolled_back=False,
        )
    journal.finish(Outcome.ROLLED_BACK, problem)
    if not isinstance(error, Exception):
        return connection, error
    restored = f"{served} is served again" if served else "the host is as it was"
    return connection, ApplyError(
        f"rotation on {journal.host} failed and was rolled back: {problem}",
        f"{restored}; fix the cause and run apply again (journal {journal.path})",
    )


async def _usable(connection: HostConnection, connector: Connector) -> HostConnection:
    """``connection`` if it still works, else a new one (a few attempts)."""
    try:
        await connection.run(["true"])
        return connection
    except ConnectionLostError:
        await _close_quietly(connection)
    last: RemoteError | None = None
    for attempt in range(_RECONNECT_ATTEMPTS):
        try:
            return await connector()
        except RemoteError as error:
            last = error
            await asyncio.sleep(0.2 * (attempt + 1))
    assert last is not None
    raise last


async def _close_quietly(connection: HostConnection) -> None:
    try:
        await connection.close()
    except (OSError, RemoteError):
        logger.debug("closing %r failed", connection)


async def undo(
    connection: HostConnection,
    journal: Journal,
    say: Progress | None = None,
    restart_timeout: float = 60.0,
    *,
    in_run: bool = False,
) -> str | None:
    """Undo the journal's steps, latest first; restart and verify the old thumbprint if needed.

    Returns the thumbprint served afterwards (None if nothing was served before either).
    A finished run's prod.env is only put back if nobody changed it since (``in_run`` lifts
    that check for the run's own half-done edit).
    """
    tell = say or _quiet
    edited, restarted = False, False
    # The staged copies (the key among them) go first: nothing depends on them, and a later
    # step that fails must not leave them behind. Every undo is idempotent and the steps are
    # marked undone only once the old certificate is served again, so an interrupted undo
    # can simply be run again.
    pending = sorted(journal.steps_to_undo(), key=lambda step: step["name"] != "stage")
    for step in pending:
        name, details = step["name"], step["details"]
        if name == "edit-env":
            tell(f"putting {details['path']} back from {details['backup']}")
            interrupted = step["status"] != StepStatus.DONE  # the run's own half-done write
            await _restore_env(connection, details, in_run=in_run or interrupted)
            edited = True
        elif name == "restart":
            restarted = True
        elif name == "install":
            tell(f"removing {details['path']}")
            await connection.run(["rm", "-f", "--", details["path"]])
        elif name == "stage":
            await connection.remove_tree(details["path"])
    served_thumbprint = journal.old_thumbprint
    if restarted:  # a run stopped before its restart left the running containers on the old files
        served_thumbprint = await _restart_on_old(
            connection, journal, edited, tell, restart_timeout
        )
    journal.mark_many([(step["index"], StepStatus.UNDONE, "", {}) for step in pending])
    return served_thumbprint


async def _restart_on_old(
    connection: HostConnection,
    journal: Journal,
    edited: bool,
    tell: Progress,
    restart_timeout: float,
) -> str:
    layout = _layout_of(journal)
    tell(f"restarting the containers in {layout.root}")
    await restart(connection, layout)
    # prod.env back as it was: the old certificate again. A restart-only run changed no file:
    # its containers just have to run again, with what prod.env names.
    expected = journal.old_thumbprint if edited else None
    tell(f"waiting for {expected or 'the containers'}")
    served = await wait_serving(
        connection, layout, _endpoint_of(journal), expected, restart_timeout
    )
    return served.thumbprint


async def remove_crashed_staging(
    connection: HostConnection, journal_dir: Path | None, host: str, say: Progress
) -> None:
    """Remove the staging folders that crashed runs on ``host`` left (they may hold a key)."""
    for path in find_journals(journal_dir, host=host, kind=JOURNAL_KIND):
        journal = Journal.load(path)
        if not journal.crashed:
            continue
        for step in journal.steps_to_undo():
            if step["name"] == "stage":
                say(f"removing {step['details']['path']}, left by the crashed run {path.stem}")
                await connection.remove_tree(step["details"]["path"])
                journal.mark(step["index"], StepStatus.UNDONE, note="removed by a later run")


async def _restore_env(
    connection: HostConnection, details: dict[str, Any], *, in_run: bool
) -> None:
    path, backup = details["path"], details["backup"]
    before, after = details["sha256_before"], details["sha256_after"]
    current = _sha256(await read_file(connection, path))
    if current == before:
        return
    if current != after and not in_run:
        raise RemoteError(
            f"{path} was changed since the rotation; not overwriting it",
            f"compare it with {backup} and restore by hand",
        )
    if _sha256(await read_file(connection, backup)) != before:
        raise RemoteError(
            f"the backup {backup} is missing or not the original prod.env",
            "restore prod.env by hand: point the SSL_CERT_* keys at the old files",
        )
    await connection.run(["cp", "--", backup, path])
    if _sha256(await read_file(connection, path)) != before:
        raise RemoteError(f"{path} reads back different after the restore", "check the host")
