"""The local journal of a run: what was about to be touched, what was done, how it ended.

A journal is one JSON file (mode 0600, in a 0700 folder) per run and host. Apply code
*registers* a step before it touches anything (certbot's reverter is the model), marks it
done or failed afterwards, and records how the run ended. ``rollback`` reads the journal and
undoes the steps in reverse order. The file is rewritten atomically after every update and
fsynced (the file, then its folder), so a crash or power loss leaves the last consistent state
on disk.

Write-ahead across journals: a run that drives host engines (a rotation) registers a step per
host and passes it as the ``parent`` of the host's journal; :meth:`Journal.start` names the new
host journal in that step before returning, so before a host is touched the run journal already
leads to the journal that records it — a ``kill -9`` at any instant leaves a chain rollback can
follow. :attr:`Journal.crashed` tells a run whose process is gone from one still running.

A journal records who ran what, when, on which host, the old and new thumbprints, file
names and SHA-256 hashes, and the steps — never secrets: values that look like private keys
are refused.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cosdoc_certs._enums import TextEnum
from cosdoc_certs.errors import InputError, problem_of

__all__ = [
    "Journal",
    "Outcome",
    "ParentStep",
    "StepStatus",
    "default_journal_dir",
    "find_journals",
    "latest_journal",
]

logger = logging.getLogger(__name__)

JOURNAL_FORMAT = "cosdoc-certs-journal/1"
_SECRET_MARKERS = ("PRIVATE KEY", "ENCRYPTED KEY")


class Outcome(TextEnum):
    """How a run ended (``running`` while it is in progress or if it crashed)."""

    RUNNING = "running"
    APPLIED = "applied"
    NOTHING_TO_DO = "nothing-to-do"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"


class StepStatus(TextEnum):
    """Where a step is: registered before the touch, then done, failed or undone."""

    REGISTERED = "registered"
    DONE = "done"
    FAILED = "failed"
    UNDONE = "undone"


def default_journal_dir() -> Path:
    """``$COSDOC_CERTS_JOURNAL_DIR``, else ``$XDG_STATE_HOME/cosdoc-certs/journals``."""
    explicit = os.environ.get("COSDOC_CERTS_JOURNAL_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cosdoc-certs" / "journals"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_no_secrets(value: Any, where: str) -> None:
    """Refuse bytes and anything that looks like key material: journals hold no secrets."""
    if isinstance(value, (bytes, bytearray)):
        raise ValueError(f"journal {where}: bytes are not recorded (store a hash instead)")
    if isinstance(value, str) and any(marker in value for marker in _SECRET_MARKERS):
        raise ValueError(f"journal {where}: refusing to record key material")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_no_secrets(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_no_secrets(item, where)


def _process_alive(pid: int) -> bool:
    """True while process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        logger.debug("fsync of %s is not supported", folder)
    finally:
        os.close(descriptor)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)[:60] or "host"


@dataclass(frozen=True)
class ParentStep:
    """A step of a run journal that is to name the host journal a phase starts."""

    journal: Journal
    index: int


class Journal:
    """One run's journal file; every update is written to disk before the call returns."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self._data = data

    @classmethod
    def start(
        cls,
        *,
        kind: str,
        host: str,
        old_thumbprint: str | None,
        new_thumbprint: str | None,
        directory: Path | None = None,
        context: Mapping[str, Any] | None = None,
        parent: ParentStep | None = None,
    ) -> Journal:
        """Create the journal of a new run (``kind`` is e.g. ``svarut``) and write it.

        With ``parent``, that step of the run journal names this journal before this returns
        (and so before the caller touches its host).
        """
        folder = directory or default_journal_dir()
        started = datetime.now(timezone.utc)
        stamp = f"{started:%Y%m%dT%H%M%S.%f}Z"  # sortable: latest_journal() relies on it
        run_id = f"{stamp}-{kind}-{_safe_name(host)}-{secrets.token_hex(3)}"
        data: dict[str, Any] = {
            "format": JOURNAL_FORMAT,
            "id": run_id,
            "kind": kind,
            "host": host,
            "user": getpass.getuser(),
            "workstation": socket.gethostname(),
            "pid": os.getpid(),
            "started": started.isoformat(timespec="seconds"),
            "finished": None,
            "outcome": str(Outcome.RUNNING),
            "message": "",
            "old_thumbprint": old_thumbprint,
            "new_thumbprint": new_thumbprint,
            "context": dict(context or {}),
            "steps": [],
        }
        _check_no_secrets(data["context"], "context")
        journal = cls(folder / f"{run_id}.json", data)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            journal._write()
        except OSError as error:
            raise InputError(
                f"cannot write a journal in {folder} ({error.strerror})",
                "give a folder you can write to (`journal_dir`, or set COSDOC_CERTS_JOURNAL_DIR)",
            ) from None
        logger.info("journal %s started", journal.path)
        if parent is not None:
            parent.journal.mark(parent.index, StepStatus.REGISTERED, journal=str(journal.path))
        return journal

    @classmethod
    def load(cls, path: Path | str) -> Journal:
        """Read a journal written by :meth:`start`."""
        file = Path(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(
                f"cannot read the journal {file}: {error}",
                "pass the path of a journal written by apply (see the apply output)",
            ) from error
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
            raise InputError(
                f"{file} is not a cosdoc-certs journal",
                "pass the path of a journal written by apply (see the apply output)",
            )
        return cls(file, data)

    # -- reading ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """What kind of run this was (``svarut``, ``windows``...)."""
        return str(self._data["kind"])

    @property
    def host(self) -> str:
        """The host the run changed."""
        return str(self._data["host"])

    @property
    def outcome(self) -> Outcome:
        """How the run ended, or RUNNING."""
        return Outcome(self._data["outcome"])

    @property
    def old_thumbprint(self) -> str | None:
        """The thumbprint in use before the run."""
        return self._data["old_thumbprint"]  # type: ignore[no-any-return]

    @property
    def new_thumbprint(self) -> str | None:
        """The thumbprint the run put in place."""
        return self._data["new_thumbprint"]  # type: ignore[no-any-return]

    @property
    def context(self) -> Mapping[str, Any]:
        """Run-wide facts the rollback needs (paths, layout, hashes)."""
        return self._data["context"]  # type: ignore[no-any-return]

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The steps in the order they were registered (copies)."""
        return [dict(step) for step in self._data["steps"]]

    @property
    def crashed(self) -> bool:
        """True for a run still marked running whose process on this workstation is gone."""
        return self._running_process() is False

    @property
    def in_progress(self) -> bool:
        """True for a run still marked running whose process (not this one) lives on here."""
        return self._running_process() is True and self._data.get("pid") != os.getpid()

    def _running_process(self) -> bool | None:
        """For a run marked running on this workstation: does its process live? Else None."""
        pid = self._data.get("pid")
        here = self._data.get("workstation") == socket.gethostname()
        if self.outcome is not Outcome.RUNNING or not here or not isinstance(pid, int):
            return None
        return _process_alive(pid)

    @property
    def undoable(self) -> bool:
        """True when the run changed something that has not been rolled back yet."""
        finished = (Outcome.NOTHING_TO_DO, Outcome.ROLLED_BACK)
        return self.outcome not in finished and bool(self.steps_to_undo())

    def steps_to_undo(self) -> list[dict[str, Any]]:
        """Registered, done or failed steps (not yet undone), latest first."""
        return [
            dict(step, index=index)
            for index, step in reversed(list(enumerate(self._data["steps"])))
            if step["status"] != StepStatus.UNDONE
        ]

    def to_dict(self) -> dict[str, Any]:
        """The journal document."""
        return json.loads(json.dumps(self._data))  # type: ignore[no-any-return]

    # -- writing ---------------------------------------------------------------------------
    def register(self, name: str, **details: Any) -> int:
        """Record that step ``name`` is about to touch the host; returns its index."""
        return self.register_many([(name, details)])[0]

    def register_many(self, steps: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        """Record ``(name, details)`` steps about to be touched by one call, in one write.

        Register-before-touch still holds: all of them are on disk before the call that
        touches them starts. Returns their indexes.
        """
        for name, details in steps:
            _check_no_secrets(details, name)
        first = len(self._data["steps"])
        at = _now()
        self._data["steps"].extend(
            {"name": name, "status": str(StepStatus.REGISTERED), "at": at, "details": dict(details)}
            for name, details in steps
        )
        self._write()
        return list(range(first, len(self._data["steps"])))

    def mark(self, index: int, status: StepStatus, *, error: str = "", **details: Any) -> None:
        """Set a step's status (and add details, e.g. hashes known only afterwards)."""
        self.mark_many([(index, status, error, details)])

    def mark_many(self, marks: Sequence[tuple[int, StepStatus, str, Mapping[str, Any]]]) -> None:
        """Set the status of several steps known at once (``(index, status, error, details)``).

        For the results of one call that touched them all: one write instead of one each.
        """
        for index, _, _, details in marks:
            _check_no_secrets(details, f"step {index}")
        at = _now()
        for index, status, error, details in marks:
            step = self._data["steps"][index]
            step["status"] = str(status)
            step["details"].update(details)
            step[f"{status}_at"] = at
            if error:
                step["error"] = error
        self._write()

    @contextmanager
    def step(self, name: str, **details: Any) -> Iterator[int]:
        """Register ``name``, run the block, mark it done — or failed if the block raises."""
        index = self.register(name, **details)
        try:
            yield index
        except BaseException as error:
            self.mark(index, StepStatus.FAILED, error=str(error) or problem_of(error))
            raise
        self.mark(index, StepStatus.DONE)

    def finish(self, outcome: Outcome, message: str = "") -> None:
        """Record how the run ended."""
        self._data["outcome"] = str(outcome)
        self._data["message"] = message
        self._data["finished"] = _now()
        self._write()
        logger.info("journal %s: %s", self.path, outcome)

    def _write(self) -> None:
        """Atomically replace the file: a 0600 temp file beside it, then rename."""
        temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(self._data, file, indent=2, ensure_ascii=False)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, self.path)
            _fsync_folder(self.path.parent)
        finally:
            if temp.exists():
                temp.unlink()

    def __repr__(self) -> str:
        return (
            f"<Journal {self.kind} {self.host} {self.outcome} "
            f"{len(self._data['steps'])} step(s) at {self.path}>"
        )


def find_journals(
    directory: Path | None = None, *, host: str | None = None, kind: str | None = None
) -> list[Path]:
    """Journal files in ``directory``, oldest first, optionally for one host and kind."""
    folder = directory or default_journal_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            journal = Journal.load(path)
        except InputError:
            continue
        if (host is None or journal.host == host) and (kind is None or journal.kind == kind):
            found.append(path)
    return found


def latest_journal(
    directory: Path | None = None,
    *,
    host: str | None = None,
    kind: str | None = None,
    undoable: bool = False,
) -> Journal:
    """The newest journal for ``host`` and ``kind``, or an :class:`InputError`.

    With ``undoable``, the newest run that changed something not yet rolled back: runs that
    had nothing to do, and runs already rolled back, are passed over.
    """
    found = [Journal.load(path) for path in find_journals(directory, host=host, kind=kind)]
    if undoable:
        found = [journal for journal in found if journal.undoable]
    if not found:
        where = directory or default_journal_dir()
        what = "run to roll back" if undoable else "journal"
        raise InputError(
            f"no {what}{' for ' + host if host else ''} in {where}",
            "give the run's journal (`journal`), or the folder apply used (`journal_dir`, or "
            "COSDOC_CERTS_JOURNAL_DIR)",
        )
    return found[-1]
