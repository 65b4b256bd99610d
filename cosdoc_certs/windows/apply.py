"""Apply the Windows part of a rotation plan in one PowerShell call, with a journal and rollback.

:func:`apply_windows` compiles the plan's Windows changes into the ordered actions of
``apply.ps1`` (see :mod:`cosdoc_certs.windows.apply_contract`): import the new certificates
(PFX files built here from the bundle, 3DES/SHA-1 so that older servers can import them,
with a one-time password sent as a SecureString; each holds only the leaf and its key, the
key bag naming the key provider the plan chose, and the intermediate CAs travel apart, for
``LocalMachine\\CA``), write the edited config files
(compare-and-swap on SHA-256, the original kept as ``<file>.cosdoc-certs-<run>.bak`` beside
it), grant key read, rebind HTTPS, then restart the services and recycle the pools — one
pipeline for the whole run.

Certbot's reverter is the model: every action is registered in the journal (kind
``windows``) *before* the call, with the file hashes and the changed keys' old and new
values — never a secret. When an action fails, the connection drops, or the run is
interrupted (Ctrl+C, SIGTERM), a second call undoes what was done in reverse order (files
from their backups, bindings back to the old certificate, restarts of what was restarted or
whose config was restored), then the state it reached proves the original bytes are back and
:class:`~cosdoc_certs.errors.ApplyError` is raised. A run in which every action succeeded ends
in the same pipeline with ``gather.ps1`` over the state it reached (its text sent along as
``-PostStateScript``): :attr:`WindowsApplyResult.post_state` holds those facts, so a
verification needs no pipeline of its own. A post-state read that fails leaves the run
applied; ``post_state_problem`` says why there are no facts. :func:`rollback_windows` undoes a
finished run from its journal, refusing when a file was changed by hand since.

An undo call reads its post-state the same way, and the check that the original bytes and
bindings are back is made over it: a rollback is two pipelines (the gather that looks for hand
edits, the undo), an undo after a failed apply one. When the undo's read fails, a gather of
its own makes the check, and the result says so.

While ``apply.ps1`` runs, the ``pypsrp`` and ``psrpcore`` loggers are held at INFO or
above (by :class:`~cosdoc_certs.windows.connection.WindowsHost`, for every script): at DEBUG
pypsrp logs whole messages, which carry the PFX files and the config files.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import logging
import ntpath
import secrets
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from cryptography.hazmat.primitives.serialization import Encoding

from cosdoc_certs._signals import SignalReceived, raise_if_stop_requested
from cosdoc_certs.appsettings import AppSettings
from cosdoc_certs.certs import CertificateBundle, CertificateInfo
from cosdoc_certs.certs.model import is_ca
from cosdoc_certs.certs.pkcs12 import serialize_pfx
from cosdoc_certs.consumers import COSDOC_CATALOG, Consumer, config_files, service_patterns
from cosdoc_certs.display import Displayed
from cosdoc_certs.errors import ApplyError, CosDocCertsError, InputError
from cosdoc_certs.facts import WindowsFacts
from cosdoc_certs.journal import Journal, Outcome, ParentStep, StepStatus
from cosdoc_certs.plan import Change, ChangeKind, Plan
from cosdoc_certs.thumbprints import normalize_thumbprint
from cosdoc_certs.windows.apply_contract import (
    SCRIPT_NAME,
    Action,
    ActionResult,
    ApplyDocument,
    GrantRead,
    ImportPfx,
    RecyclePool,
    RemoveAuthority,
    RestartService,
    RestoreFile,
    SetBinding,
    WriteFile,
    actions_to_json,
    backup_path,
    file_contents,
)
from cosdoc_certs.windows.connection import PROTOCOL_LOGGERS as PROTOCOL_LOGGERS
from cosdoc_certs.windows.connection import HostUnreachableError, WindowsHost, load_script
from cosdoc_certs.windows.gather import GatherDocument

__all__ = [
    "JOURNAL_KIND",
    "CompiledPlan",
    "GatherScope",
    "Step",
    "WindowsApplyResult",
    "apply_windows",
    "compile_windows_plan",
    "describe_action",
    "legacy_pfx",
    "rollback_windows",
    "run_apply_script",
]

logger = logging.getLogger(__name__)

JOURNAL_KIND = "windows"
PHASES = (
    ChangeKind.IMPORT_CERT,
    ChangeKind.EDIT_CONFIG_KEY,
    ChangeKind.GRANT_KEY_READ,
    ChangeKind.REBIND_HTTPS,
    ChangeKind.RESTART_SERVICE,
    ChangeKind.RECYCLE_POOL,
)
"""The order in which apply runs the kinds of Windows changes."""
_PFX_ITERATIONS = 2048
"""Key-derivation rounds of the PFX sent to the server: enough, as its password is a fresh
~192-bit random value (no guessing to slow down), and the file only travels inside the
encrypted WinRM channel before it is imported and dropped."""
# A failed action of these kinds changed nothing (a failed write-file: unless it made a backup;
# a failed set-binding: unless it got as far as reading the entry's settings for netsh).
_NO_CHANGE_WHEN_FAILED = frozenset({"import-pfx", "grant-read"})

Progress = Callable[[str], None]
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class GatherScope:
    """What ``gather.ps1`` is asked to read: the services' name patterns and the config files."""

    service_patterns: tuple[str, ...]
    config_files: tuple[str, ...]

    @classmethod
    def of(cls, consumers: Sequence[Consumer]) -> GatherScope:
        """What to read for ``consumers`` (what a gather for them reads)."""
        return cls(tuple(service_patterns(consumers)), tuple(config_files(consumers)))

    @classmethod
    def of_run(cls, journal: Journal) -> GatherScope:
        """What the run in ``journal`` was gathered with (its context's ``gather``)."""
        recorded = journal.context["gather"]
        return cls(tuple(recorded["service_patterns"]), tuple(recorded["config_files"]))

    def to_dict(self) -> dict[str, list[str]]:
        """The form kept in a journal's context."""
        return {
            "service_patterns": list(self.service_patterns),
            "config_files": list(self.config_files),
        }

    def parameters(self) -> dict[str, list[str]]:
        """``gather.ps1``'s parameters (also ``apply.ps1``'s, for its post-state read)."""
        return {
            "ServicePatterns": list(self.service_patterns),
            "ConfigFiles": list(self.config_files),
        }


@dataclasses.dataclass(frozen=True)
class Step:
    """One action of the run and the journal details it is registered with (no secrets)."""

    action: Action
    details: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class CompiledPlan:
    """The actions for ``apply.ps1``, the PFX files they import, and the manual steps left."""

    steps: tuple[Step, ...]
    pfx_files: tuple[bytes, ...] = dataclasses.field(repr=False)
    manual_steps: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[Action, ...]:
        """The actions in execution order."""
        return tuple(step.action for step in self.steps)


@dataclasses.dataclass(frozen=True)
class WindowsApplyResult(Displayed):
    """How an apply or rollback ended, the per-action results and the backups left behind.

    ``post_state``: the facts ``apply.ps1`` read at the end of the call — after an apply, the
    state it reached; after a rollback, the restored state its check was made over. None when
    the read failed (``post_state_problem`` says why; a rollback then checked with a gather of
    its own).
    """

    host: str
    outcome: Outcome
    journal_path: Path
    results: tuple[ActionResult, ...] = ()
    backups: tuple[str, ...] = ()
    message: str = ""
    manual_steps: tuple[str, ...] = ()
    post_state: WindowsFacts | None = dataclasses.field(default=None, repr=False, compare=False)
    post_state_problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the post-state's facts left out: whether it was read, or why not)."""
        return {
            "host": self.host,
            "outcome": str(self.outcome),
            "journal": str(self.journal_path),
            "message": self.message,
            "results": [result.to_dict() for result in self.results],
            "backups": list(self.backups),
            "manual_steps": list(self.manual_steps),
            "post_state_read": self.post_state is not None,
            "post_state_problem": self.post_state_problem,
        }

    def to_text(self) -> str:
        """Lines for a terminal: the outcome, each action, the backups kept, manual steps."""
        lines = [self.summary()]
        lines += [
            f"  {'ok ' if r.ok else 'FAIL'} {r.index + 1}. {r.action}: {r.message}"
            for r in self.results
        ]
        if self.backups:
            lines.append("  backups kept beside the files (delete them when satisfied):")
            lines += [f"    {backup}" for backup in self.backups]
        lines += [f"  manual step: {step}" for step in self.manual_steps]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: the host, the outcome, what happened, the journal."""
        return f"{self.host}: {self.outcome} — {self.message} (journal {self.journal_path})"

    def __repr__(self) -> str:
        return (
            f"<WindowsApplyResult {self.host} {self.outcome}: {len(self.results)} action(s), "
            f"{len(self.backups)} backup(s)>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{r.index + 1}</td><td>{html.escape(r.action)}</td>"
            f"<td>{'ok' if r.ok else 'failed'}</td><td>{html.escape(r.message)}</td></tr>"
            for r in self.results
        )
        backups = "".join(f"<li>{html.escape(b)}</li>" for b in self.backups)
        return (
            f"<div><b>{html.escape(self.host)}: {self.outcome}</b> — {html.escape(self.message)}"
            f"<table><tr><th>#</th><th>action</th><th>result</th><th>message</th></tr>{rows}"
            f"</table>{f'<p>backups kept:</p><ul>{backups}</ul>' if backups else ''}</div>"
        )


# -- compiling a plan ------------------------------------------------------------------------


def legacy_pfx(
    info: CertificateInfo,
    chain: Sequence[Any],
    password: bytes,
    *,
    provider: str | None = None,
) -> bytes:
    """A PFX of ``info`` with its key and ``chain``, 3DES/SHA-1: importable on every Windows.

    ``provider`` names the Windows key provider in the key bag ("Microsoft CSP Name").
    """
    if info.private_key is None:
        raise InputError(
            f"the bundle has no private key for {info.label}",
            "load the PFX of that certificate (with its key), not only the certificate",
        )
    return serialize_pfx(
        info.private_key,  # type: ignore[arg-type]  # PKCS12-capable keys only in a bundle
        info.certificate,
        chain,
        password,
        name=info.thumbprint.encode("ascii"),
        legacy=True,
        kdf_rounds=_PFX_ITERATIONS,
        provider=provider,
    )


def compile_windows_plan(
    plan: Plan,
    bundle: CertificateBundle,
    facts: WindowsFacts,
    *,
    run_id: str,
    pfx_password: bytes,
) -> CompiledPlan:
    """The ordered actions for the plan's Windows changes, checked against the gathered facts."""
    changes = _windows_changes(plan)
    steps: list[Step] = []
    pfx_files: list[bytes] = []
    for kind in PHASES:
        for change in (c for c in changes if c.kind is kind):
            if kind is ChangeKind.IMPORT_CERT:
                steps.append(_import_step(change, bundle, len(pfx_files)))
                info = _certificate(bundle, change)
                provider = change.details.get("key_provider")
                pfx_files.append(legacy_pfx(info, (), pfx_password, provider=provider))
            else:
                steps.append(_STEP_BUILDERS[kind](change, facts, run_id))
    manual = tuple(c.summary for c in changes if c.kind is ChangeKind.MANUAL_STEP)
    return CompiledPlan(tuple(steps), tuple(pfx_files), manual)


def _windows_changes(plan: Plan) -> list[Change]:
    wanted = (*PHASES, ChangeKind.MANUAL_STEP)
    changes = [change for change in plan.actions if change.kind in wanted]
    hosts = sorted({change.host for change in changes})
    if len(hosts) > 1:
        raise InputError(
            f"the plan changes several Windows hosts ({', '.join(hosts)})",
            "apply one host at a time: plan.for_host(name)",
        )
    return changes


def _certificate(bundle: CertificateBundle, change: Change) -> CertificateInfo:
    thumbprint = normalize_thumbprint(str(change.details["thumbprint"]))
    info = bundle.by_thumbprint(thumbprint)
    if info is None:
        raise InputError(
            f"the plan imports {thumbprint}, which is not in the loaded certificates",
            "load the same certificate files the plan was made with",
        )
    return info


def _import_step(change: Change, bundle: CertificateBundle, index: int) -> Step:
    """Import the leaf (the PFX holds only it and its key); its intermediates go to the CA store."""
    info = _certificate(bundle, change)
    provider = change.details.get("key_provider")
    intermediates = [ca for ca in bundle.chain_for(info) if ca.issuer != ca.subject and is_ca(ca)]
    authorities = tuple(
        base64.b64encode(ca.public_bytes(Encoding.DER)).decode("ascii") for ca in intermediates
    )
    details = {
        "thumbprint": info.thumbprint,
        "role": change.details.get("role"),
        "key_provider": provider,
    }
    action = ImportPfx(index, (info.thumbprint,), str(provider) if provider else None, authorities)
    return Step(action, details)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same_hash(first: str | None, second: str | None) -> bool:
    return first is not None and second is not None and first.lower() == second.lower()


def _edit_step(change: Change, facts: WindowsFacts, run_id: str) -> Step:
    path = str(change.details["file"])
    before, after = str(change.details["sha256_before"]), str(change.details["sha256_after"])
    gathered = facts.config_file(path)
    if gathered is None or gathered.content is None:
        raise InputError(
            f"the gathered facts have no content for {path}",
            "plan and apply with the facts of the same gather",
        )
    if not _same_hash(_sha256(gathered.content), before):
        raise InputError(
            f"{path} in the gathered facts is not the file the plan was made from",
            "gather again and make a new plan",
        )
    edits = [dict(edit) for edit in change.details["edits"]]
    settings = AppSettings.parse(gathered.content, source=path)
    content = settings.replace({str(edit["path"]): str(edit["new"]) for edit in edits})
    if not _same_hash(_sha256(content), after):
        raise InputError(
            f"editing {path} as planned does not give the planned bytes (sha256_after)",
            "make a new plan with this version of cosdoc-certs",
        )
    details = {
        "file": path,
        "backup": backup_path(path, run_id),
        "sha256_before": before.lower(),
        "sha256_after": after.lower(),
        "edits": [{key: edit.get(key) for key in ("path", "role", "old", "new")} for edit in edits],
        "restart": _owners(facts, path),
    }
    action = WriteFile(path, base64.b64encode(content).decode("ascii"), before.upper())
    return Step(action, details)


def _owners(facts: WindowsFacts, path: str) -> list[dict[str, str]]:
    """The services / app pools whose folder holds ``path`` (the innermost folder wins)."""
    folders: list[tuple[str, dict[str, str]]] = [
        (service.install_folder, {"service": service.name, "state_before": service.state})
        for service in facts.services
        if service.install_folder
    ]
    if facts.iis is not None:
        states = {pool.name.casefold(): pool.state for pool in facts.iis.app_pools}
        folders += [
            (
                app.physical_path,
                {"pool": app.app_pool, "state_before": states.get(app.app_pool.casefold(), "")},
            )
            for app in facts.iis.applications
        ]
    file = ntpath.normcase(path)
    inside = [
        (len(folder), owner)
        for folder, owner in folders
        if file.startswith(ntpath.normcase(folder).rstrip("\\") + "\\")
    ]
    longest = max((length for length, _ in inside), default=0)
    owners = [owner for length, owner in inside if length == longest]
    return [dict(t) for t in {tuple(sorted(o.items())): o for o in owners}]


def _grant_step(change: Change, facts: WindowsFacts, run_id: str) -> Step:
    thumbprint = normalize_thumbprint(str(change.details["thumbprint"]))
    account, sid = str(change.details["account"]), str(change.details["sid"])
    return Step(
        GrantRead(thumbprint, account, sid),
        {"thumbprint": thumbprint, "account": account, "sid": sid},
    )


def _rebind_step(change: Change, facts: WindowsFacts, run_id: str) -> Step:
    details = change.details
    new = normalize_thumbprint(str(details["new_thumbprint"]))
    old = details.get("old_thumbprint") or None
    action = SetBinding(str(details["site"]), str(details["binding"]), new)
    journal = {
        "site": action.site,
        "binding": action.binding,
        "sni": bool(details.get("sni")),
        "old_thumbprint": normalize_thumbprint(str(old)) if old else None,
        "new_thumbprint": new,
    }
    return Step(action, journal)


def _restart_step(change: Change, facts: WindowsFacts, run_id: str) -> Step:
    name = str(change.details["service"])
    state = next((s.state for s in facts.services if s.name.casefold() == name.casefold()), "")
    return Step(RestartService(name), {"service": name, "state_before": state})


def _recycle_step(change: Change, facts: WindowsFacts, run_id: str) -> Step:
    name = str(change.details["pool"])
    pools = facts.iis.app_pools if facts.iis is not None else ()
    state = next((p.state for p in pools if p.name.casefold() == name.casefold()), "")
    return Step(RecyclePool(name), {"pool": name, "state_before": state})


_STEP_BUILDERS: dict[ChangeKind, Callable[[Change, WindowsFacts, str], Step]] = {
    ChangeKind.EDIT_CONFIG_KEY: _edit_step,
    ChangeKind.GRANT_KEY_READ: _grant_step,
    ChangeKind.REBIND_HTTPS: _rebind_step,
    ChangeKind.RESTART_SERVICE: _restart_step,
    ChangeKind.RECYCLE_POOL: _recycle_step,
}


# -- applying --------------------------------------------------------------------------------


def _quiet(_: str) -> None:
    """The default progress callback: nothing."""


def new_run_id() -> str:
    """A run id: UTC time and a random suffix (names the backups)."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def apply_windows(
    host: WindowsHost,
    plan: Plan,
    bundle: CertificateBundle,
    facts: WindowsFacts,
    *,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    journal_dir: Path | None = None,
    progress: Progress | None = None,
    parent: ParentStep | None = None,
) -> WindowsApplyResult:
    """Apply the plan's Windows changes on the open ``host`` in one call; roll back on failure.

    ``facts`` are those the plan was made from; ``consumers`` the catalog it was made with
    (the run ends by gathering with it: the result's ``post_state``; an undo after a failure
    does the same, and checks the restoration over what it read). ``parent`` is the step of a
    run journal that names this host's journal before anything is touched. Raises
    :class:`ApplyError` after a rollback.
    """
    say = progress or _quiet
    changes = _windows_changes(plan)
    host_name = changes[0].host if changes else (plan.hosts[0] if plan.hosts else "windows")
    load_script(SCRIPT_NAME)  # a missing script is an install problem: say so before any journal
    run_id = new_run_id()
    password = secrets.token_urlsafe(24)
    compiled = compile_windows_plan(
        plan, bundle, facts, run_id=run_id, pfx_password=password.encode("ascii")
    )
    journal = Journal.start(
        kind=JOURNAL_KIND,
        host=host_name,
        old_thumbprint=_joined(_thumbprints(compiled, "old")),
        new_thumbprint=_joined(_thumbprints(compiled, "new")),
        directory=journal_dir,
        context=_context(host, plan, consumers, run_id),
        parent=parent,
    )
    if not compiled.steps:
        journal.finish(Outcome.NOTHING_TO_DO, "no Windows changes in the plan")
        return WindowsApplyResult(
            host_name,
            Outcome.NOTHING_TO_DO,
            journal.path,
            message="nothing to do",
            manual_steps=compiled.manual_steps,
        )
    indexes = journal.register_many([(step.action.action, step.details) for step in compiled.steps])
    try:
        with _interrupted_by_signals():
            say(f"applying {len(indexes)} action(s) on {host_name} in one call")
            document = run_apply_script(
                host,
                compiled.actions,
                run_id,
                compiled.pfx_files,
                password,
                post_state=GatherScope.of(consumers),
            )
            _record(journal, indexes, document)
            if document.stopped:
                raise _ActionFailed(compiled.actions, document)
            say(f"all {document.completed} action(s) done")
    except BaseException as error:
        _recover(host, journal, error, say)
        raise
    backups = _backups(document)
    message = f"{document.completed} action(s) done; {len(backups)} backup(s) kept beside the files"
    journal.finish(Outcome.APPLIED, message)
    post_state, problem = _post_state(document)
    if problem is not None:
        say(f"the state the run reached could not be read in the same call: {problem}")
    return WindowsApplyResult(
        host_name,
        Outcome.APPLIED,
        journal.path,
        document.results,
        backups,
        message,
        compiled.manual_steps,
        post_state,
        problem,
    )


def _post_state(document: ApplyDocument) -> tuple[WindowsFacts | None, str | None]:
    """The facts gather.ps1 read at the end of the run, or why there are none."""
    if document.post_state is None:
        return None, document.post_state_error or "apply.ps1 returned no post-state"
    try:
        return WindowsFacts.from_document(GatherDocument.from_json(document.post_state)), None
    except CosDocCertsError as error:
        return None, error.problem


class _ActionFailed(Exception):
    """An action of ``apply.ps1`` failed; the document says which and why."""

    def __init__(self, actions: Sequence[Action], document: ApplyDocument) -> None:
        self.document = document
        self.problem = _stop_reason(actions, document)
        super().__init__(self.problem)

    @property
    def changed_nothing(self) -> bool:
        """True when the run stopped at its first action without changing anything."""
        failed = self.document.failed
        if self.document.completed:
            return False
        if failed is None:
            return True
        if failed.action == "write-file":
            return not failed.before.get("backup")
        if failed.action == "set-binding":
            return not failed.before.get("settings")
        return failed.action in _NO_CHANGE_WHEN_FAILED


def _stop_reason(actions: Sequence[Action], document: ApplyDocument) -> str:
    """Why ``apply.ps1`` stopped: the failed action, or the script's own error."""
    failed = document.failed
    if failed is None:
        return f"apply.ps1 stopped: {document.error}"
    return (
        f"action {failed.index + 1} of {len(actions)}, {describe_action(actions[failed.index])}, "
        f"failed: {failed.message}"
    )


def describe_action(action: Action) -> str:
    """An action in a few words, for messages."""
    if isinstance(action, ImportPfx):
        return f"import {', '.join(action.thumbprints)}"
    if isinstance(action, (WriteFile, RestoreFile)):
        return f"{action.action} {action.path}"
    if isinstance(action, GrantRead):
        return f"grant {action.account} read on the key of {action.thumbprint}"
    if isinstance(action, SetBinding):
        return f"bind {action.thumbprint} to {action.site} {action.binding}"
    if isinstance(action, RemoveAuthority):
        return f"remove the CA certificate {action.thumbprint} from LocalMachine\\CA"
    return f"{action.action} {getattr(action, 'name', getattr(action, 'path', ''))}"


def _thumbprints(compiled: CompiledPlan, which: str) -> list[str]:
    found: list[str] = []
    for step in compiled.steps:
        if step.action.action == "write-file":
            found += [str(edit[which]) for edit in step.details["edits"] if edit.get(which)]
        elif step.action.action == "set-binding" and step.details.get(f"{which}_thumbprint"):
            found.append(str(step.details[f"{which}_thumbprint"]))
    return list(dict.fromkeys(found))


def _joined(values: list[str]) -> str | None:
    return ", ".join(values) or None


def _context(
    host: WindowsHost, plan: Plan, consumers: Sequence[Consumer], run_id: str
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "address": host.options.address,
        # The session apply.ps1 runs in: a rollback after a crash closes it first, which stops
        # an apply.ps1 still running on the server for the killed process.
        "shell_id": host.shell_id,
        "gather": GatherScope.of(consumers).to_dict(),
        "plan": {"title": plan.title, "created": plan.created.isoformat()},
    }


def run_apply_script(
    host: WindowsHost,
    actions: Sequence[Action],
    run_id: str,
    pfx_files: Sequence[bytes] = (),
    password: str = "",
    *,
    check: bool = False,
    post_state: GatherScope | None = None,
) -> ApplyDocument:
    """One ``apply.ps1`` call (with ``-Check``: nothing changed); the parsed result document.

    With ``post_state`` (what to read: ``GatherScope.of(consumers)``), ``gather.ps1``'s text
    goes along, and a run in which every action succeeded ends by gathering that (the
    document's ``post_state``).
    """
    parameters: dict[str, Any] = {
        "Actions": actions_to_json(actions),
        "RunId": run_id,
        "FileContents": file_contents(actions),
        "PfxFiles": [base64.b64encode(pfx).decode("ascii") for pfx in pfx_files],
    }
    if pfx_files:
        parameters["PfxPassword"] = host.secure_string(password)
    if check:
        parameters["Check"] = True
    elif post_state is not None:
        parameters["PostStateScript"] = load_script("gather")
        parameters.update(post_state.parameters())
    data = host.run_script(SCRIPT_NAME, **parameters)
    return ApplyDocument.from_data(data)


def _record(journal: Journal, indexes: Sequence[int], document: ApplyDocument) -> None:
    """Mark each registered step done, failed, or not run (nothing to undo), in one write."""
    marks: list[tuple[int, StepStatus, str, Mapping[str, Any]]] = []
    for position, index in enumerate(indexes):
        result = document.result_of(position)
        if result is None:
            marks.append((index, StepStatus.UNDONE, "", {"note": "not run"}))
        elif result.ok:
            before = dict(result.before)
            marks.append(
                (index, StepStatus.DONE, "", {"before": before, "message": result.message})
            )
        else:
            marks.append(
                (index, StepStatus.FAILED, result.message, {"before": dict(result.before)})
            )
    journal.mark_many(marks)


def _backups(document: ApplyDocument) -> tuple[str, ...]:
    return tuple(
        str(result.before["backup"])
        for result in document.results
        if result.action == "write-file" and result.before.get("backup")
    )


@contextmanager
def _interrupted_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`SignalReceived`, like Ctrl+C.

    In the main thread at once; in a worker thread (a rotation) when the block is done, if
    the run's :func:`~cosdoc_certs._signals.stop_on_signals` noted one meanwhile.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        raise_if_stop_requested()
        return

    def interrupt(number: int, frame: FrameType | None) -> None:
        raise SignalReceived(signal.Signals(number).name)

    numbers = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {number: signal.signal(number, interrupt) for number in numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """While rolling back, Ctrl+C and SIGTERM are noted, not obeyed (certbot does the same)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(number: int, frame: FrameType | None) -> None:
        received.append(number)
        logger.warning("signal %s ignored: a rollback is running", signal.Signals(number).name)

    numbers = [signal.SIGINT, signal.SIGTERM]
    previous = {number: signal.signal(number, note) for number in numbers}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _recover(host: WindowsHost, journal: Journal, error: BaseException, say: Progress) -> None:
    """Undo after ``error``; raise ApplyError (or let a KeyboardInterrupt go on afterwards)."""
    problem = _problem_of(error)
    if isinstance(error, _ActionFailed) and error.changed_nothing:
        journal.finish(Outcome.ROLLED_BACK, f"{problem}; nothing was changed")
        raise ApplyError(
            f"apply on {journal.host} stopped before changing anything: {problem}",
            f"fix the cause (or gather and plan again), then apply again (journal {journal.path})",
        ) from None
    say(f"failed: {problem} — rolling back")
    with _signals_deferred():
        try:
            undone = _undo(host, journal, in_run=True, say=say)
        except CosDocCertsError as undo_error:
            journal.finish(Outcome.ROLLBACK_FAILED, f"{problem}; rollback: {undo_error}")
            raise ApplyError(
                f"apply on {journal.host} failed ({problem}) and the rollback failed too "
                f"({undo_error.problem})",
                f"the journal {journal.path} lists what is left; run rollback again or restore "
                "by hand from the .bak files",
                rolled_back=False,
            ) from None
    journal.finish(Outcome.ROLLED_BACK, problem)
    if isinstance(error, Exception):
        raise ApplyError(
            f"apply on {journal.host} failed and was rolled back: {problem}",
            f"{undone.text}; fix the cause and run apply again (journal {journal.path})",
        ) from None


def _problem_of(error: BaseException) -> str:
    if isinstance(error, _ActionFailed):
        return error.problem
    if isinstance(error, CosDocCertsError):
        return error.problem
    if isinstance(error, KeyboardInterrupt):
        return f"interrupted ({error or 'Ctrl+C'})"
    return f"{type(error).__name__}: {error}"


# -- undoing ---------------------------------------------------------------------------------


def _undo_actions(steps: Sequence[Mapping[str, Any]], *, in_run: bool) -> list[Action]:
    """Restores, then bindings back, then restarts — for ``steps`` given latest first."""
    restores: list[Action] = []
    rebinds: list[Action] = []
    authorities: list[Action] = []
    targets: dict[tuple[str, str], str] = {}
    for step in steps:
        name, details = step["name"], step["details"]
        if name == "import-pfx":
            added = (details.get("before") or {}).get("authorities_added") or []
            authorities += [RemoveAuthority(str(thumbprint)) for thumbprint in added]
        elif name == "write-file":
            # A write the run itself interrupted (not marked done) may have left any bytes.
            finished = step["status"] == StepStatus.DONE
            expected = None if in_run or not finished else details["sha256_after"].upper()
            restores.append(RestoreFile(details["file"], details["backup"], expected))
            for owner in details["restart"]:
                kind = "service" if "service" in owner else "pool"
                targets.setdefault((kind, owner[kind]), owner["state_before"])
        elif name == "set-binding" and details.get("old_thumbprint"):
            settings = (details.get("before") or {}).get("settings")
            rebinds.append(
                SetBinding(
                    details["site"],
                    details["binding"],
                    details["old_thumbprint"],
                    tuple(settings) if settings else None,
                )
            )
        elif name == "restart-service":
            targets.setdefault(("service", details["service"]), details["state_before"])
        elif name == "recycle-pool":
            targets.setdefault(("pool", details["pool"]), details["state_before"])
    stuck = {name.casefold() for name in _stuck_services(steps)}
    ordered = sorted(targets.items(), key=lambda item: item[0][0] != "service")
    restarts: list[Action] = [
        RestartService(name) if kind == "service" else RecyclePool(name)
        for (kind, name), state in ordered
        if state in ("Running", "Started") and not (kind == "service" and name.casefold() in stuck)
    ]
    return restores + rebinds + restarts + authorities


def _stuck_services(steps: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Services whose restart timed out while stopping → the process still running.

    Restarting them again would only wait out the same timeout: the undo leaves them.
    """
    stuck: dict[str, str] = {}
    for step in steps:
        before = step["details"].get("before") or {}
        if step["name"] == "restart-service" and before.get("stuck_process"):
            stuck[str(step["details"]["service"])] = str(before["stuck_process"])
    return stuck


@dataclasses.dataclass(frozen=True)
class _Undone:
    """What an undo restored (a sentence), and the state it was checked over.

    ``post_state``: the facts the undo call read at its end; None when it did not (then
    ``problem`` says why, and a gather of its own was checked instead).
    """

    text: str
    post_state: WindowsFacts | None
    problem: str | None


def _undo(host: WindowsHost, journal: Journal, *, in_run: bool, say: Progress) -> _Undone:
    """Run the undo actions in one call and check the state it reached; what was restored."""
    pending = journal.steps_to_undo()
    steps = [step for step in pending if _may_have_changed(step)]
    actions = _undo_actions(steps, in_run=in_run)
    post_state, problem = None, None
    if actions:  # else nothing on the server to undo, and so nothing to check
        post_state, problem = _run_undo(host, journal, actions, say)
        if post_state is not None:
            say("checking over the state the undo call read that the original files are back")
        else:
            say(
                f"the undo call could not read the state it reached ({problem}): gathering "
                "again to check that the original files are back"
            )
        _check_restored(post_state or _gather(host, journal), steps)
    journal.mark_many([(step["index"], StepStatus.UNDONE, "", {}) for step in pending])
    files = sum(1 for step in steps if step["name"] == "write-file")
    bindings = sum(1 for step in steps if step["name"] == "set-binding")
    left = [
        f"{name} was not restarted: it is still stopping ({process} still runs; end it, then "
        "start the service)"
        for name, process in _stuck_services(steps).items()
    ]
    fallback = [f"checked by a gather of its own: the undo call's read failed ({problem})"]
    text = "; ".join(
        [
            f"{files} config file(s) are byte-identical to before, {bindings} binding(s) back on "
            "their old certificate",
            *left,
            *(fallback if problem is not None else []),
        ]
    )
    return _Undone(text, post_state, problem)


def _run_undo(
    host: WindowsHost, journal: Journal, actions: Sequence[Action], say: Progress
) -> tuple[WindowsFacts | None, str | None]:
    """The undo call, which ends by reading the state it reached with gather.ps1.

    That state's facts, or None and why they could not be read.
    """
    run_id = str(journal.context["run_id"])
    scope = GatherScope.of_run(journal)
    say(f"undoing: {len(actions)} action(s) in one call")
    document = _with_reconnect(
        host, lambda: run_apply_script(host, actions, run_id, post_state=scope)
    )
    if document.stopped:
        raise ApplyError(f"undo {_stop_reason(actions, document)}")
    return _post_state(document)


def _may_have_changed(step: Mapping[str, Any]) -> bool:
    """False for a step that failed in a way that changes nothing (a failed import...)."""
    if step["status"] != StepStatus.FAILED:
        return True
    if step["name"] == "set-binding":
        return bool((step["details"].get("before") or {}).get("settings"))
    return step["name"] not in _NO_CHANGE_WHEN_FAILED


def _with_reconnect(host: WindowsHost, call: Callable[[], _T]) -> _T:
    """``call()``; after a lost connection, once more on a new session."""
    try:
        return call()
    except HostUnreachableError as error:
        logger.info("session lost (%s); reconnecting", error.problem)
        host.close()
        host.open()
        return call()


def _gather(host: WindowsHost, journal: Journal) -> WindowsFacts:
    """A gather of its own, of what the run in ``journal`` was gathered with."""
    parameters = GatherScope.of_run(journal).parameters()
    data = _with_reconnect(host, lambda: host.run_script("gather", **parameters))
    return WindowsFacts.from_document(GatherDocument.from_data(data))


def _check_restored(facts: WindowsFacts, steps: Sequence[Mapping[str, Any]]) -> None:
    """Check in ``facts`` that every restored file has its sha256_before, bindings their cert."""
    problems = []
    for step in steps:
        details = step["details"]
        if step["name"] == "write-file":
            gathered = facts.config_file(details["file"])
            content = gathered.content if gathered is not None else None
            if content is None or not _same_hash(_sha256(content), details["sha256_before"]):
                problems.append(f"{details['file']} does not have its original bytes")
        elif step["name"] == "set-binding" and details.get("old_thumbprint"):
            served = _binding_thumbprint(facts, details["site"], details["binding"])
            if served != details["old_thumbprint"]:
                problems.append(f"{details['site']} {details['binding']} serves {served}")
    if problems:
        raise ApplyError("after the undo, " + "; ".join(problems))


def _binding_thumbprint(facts: WindowsFacts, site: str, binding: str) -> str | None:
    bindings = facts.iis.bindings if facts.iis is not None else ()
    for fact in bindings:
        if fact.site.casefold() == site.casefold() and (
            fact.binding_information.casefold() == binding.casefold()
        ):
            return fact.certificate_hash.upper() or None
    return None


def rollback_windows(
    host: WindowsHost, journal: Journal, *, progress: Progress | None = None
) -> WindowsApplyResult:
    """Undo a finished Windows run from its journal: files from the backups, bindings, restarts.

    Refuses (nothing changed) when a file was edited by hand after the run.
    """
    say = progress or _quiet
    if journal.kind != JOURNAL_KIND:
        raise InputError(
            f"{journal.path} is a {journal.kind} journal, not a Windows one",
            "pass the journal of a Windows apply",
        )
    if journal.outcome in (Outcome.ROLLED_BACK, Outcome.NOTHING_TO_DO):
        raise InputError(
            f"the run in {journal.path} ended {journal.outcome}: there is nothing to roll back",
            "pass the journal of a run that applied changes",
        )
    steps = journal.steps_to_undo()
    if journal.outcome is Outcome.RUNNING:
        _stop_interrupted_call(host, journal, say)
    _refuse_hand_edits(host, journal, steps)
    with _signals_deferred():
        try:
            undone = _undo(host, journal, in_run=False, say=say)
        except CosDocCertsError as error:
            journal.finish(Outcome.ROLLBACK_FAILED, f"rollback: {error.problem}")
            raise ApplyError(
                f"rollback on {journal.host} failed: {error.problem}",
                f"the journal {journal.path} lists what is left; restore by hand from the "
                ".bak files",
                rolled_back=False,
            ) from None
    journal.finish(Outcome.ROLLED_BACK, f"rolled back on request: {undone.text}")
    backups = tuple(
        str(step["details"]["backup"]) for step in reversed(steps) if step["name"] == "write-file"
    )
    return WindowsApplyResult(
        journal.host,
        Outcome.ROLLED_BACK,
        journal.path,
        (),
        backups,
        undone.text,
        post_state=undone.post_state,
        post_state_problem=undone.problem,
    )


def _stop_interrupted_call(host: WindowsHost, journal: Journal, say: Progress) -> None:
    """Close the session of a run that never finished, so its apply.ps1 stops running.

    A killed client leaves its WinRM shell open and apply.ps1 running in it; deleting the
    shell ends that PowerShell host process. Only then does a gather show what the server did.
    """
    shell_id = journal.context.get("shell_id")
    if not shell_id:
        return
    if host.close_shell(str(shell_id)):
        say("closed the session the interrupted run left open (its apply.ps1 is stopped)")


def _refuse_hand_edits(
    host: WindowsHost, journal: Journal, steps: Sequence[Mapping[str, Any]]
) -> None:
    """Gather once; refuse before touching anything if a file is neither the run's nor original."""
    facts = _gather(host, journal)
    for step in steps:
        if step["name"] != "write-file" or step["status"] != StepStatus.DONE:
            continue
        details = step["details"]
        gathered = facts.config_file(details["file"])
        current = _sha256(gathered.content) if gathered and gathered.content is not None else None
        if not (
            _same_hash(current, details["sha256_after"])
            or _same_hash(current, details["sha256_before"])
        ):
            raise InputError(
                f"{details['file']} was changed after the run; rollback would overwrite that "
                "change, so nothing was rolled back",
                f"compare it with {details['backup']} and restore by hand",
            )
