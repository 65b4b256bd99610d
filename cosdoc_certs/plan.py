"""Plans: what a rotation would change on which host, and why the rest needs nothing.

A :class:`Plan` is a tuple of frozen :class:`Change` objects produced by pure planning code
from gathered facts. Every consumer of a certificate appears in the plan: either with the
changes it needs or as a no-op that says *why* it needs nothing ("already serves 3F…A1").
A plan is shown before anything is touched — as text with diffs, as JSON for scripts, and as
HTML in notebooks — and the apply code executes it. Plans never carry secrets: details hold
file names, hashes and the before/after values of the settings that change.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from cosdoc_certs._enums import TextEnum
from cosdoc_certs.display import Displayed

__all__ = ["Change", "ChangeKind", "Plan"]


class ChangeKind(TextEnum):
    """What a change does; the value is the stable name used in JSON and journals."""

    NOOP = "noop"
    # Windows application server
    IMPORT_CERT = "import-cert"
    EDIT_CONFIG_KEY = "edit-config-key"
    GRANT_KEY_READ = "grant-key-read"
    REBIND_HTTPS = "rebind-https"
    RESTART_SERVICE = "restart-service"
    RECYCLE_POOL = "recycle-pool"
    MANUAL_STEP = "manual-step"
    # SvarUT Linux host
    UPLOAD_FILES = "upload-files"
    SET_ENV = "set-env"
    RESTART_COMPOSE = "restart-compose"


def _frozen(value: Any) -> Any:
    """A read-only copy of nested mappings and sequences (details must stay immutable)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(key): _frozen(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item) for item in value)
    return value


def _plain(value: Any) -> Any:
    """The JSON-ready form of frozen details (mappings to dicts, tuples to lists)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class Change:
    """One change on one host for one consumer, or a no-op with its reason.

    ``details`` holds JSON-ready facts (before/after values, file names, hashes — never
    secrets); ``diff`` is an optional unified diff of the lines that change.
    """

    host: str
    consumer: str
    action: ChangeKind | str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    noop_reason: str | None = None
    diff: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", _frozen(self.details))
        if self.noop_reason is not None and self.kind is not ChangeKind.NOOP:
            raise ValueError("only a no-op change carries a noop_reason")
        if self.kind is ChangeKind.NOOP and not self.noop_reason:
            raise ValueError("a no-op change must say why nothing is needed")

    @classmethod
    def noop(cls, host: str, consumer: str, reason: str, **details: Any) -> Change:
        """A consumer that needs nothing, with the reason shown to the user."""
        return cls(host, consumer, ChangeKind.NOOP, f"nothing to do: {reason}", details, reason)

    @property
    def kind(self) -> ChangeKind | str:
        """The action as a :class:`ChangeKind` when it is one of the known kinds."""
        try:
            return ChangeKind(self.action)
        except ValueError:
            return self.action

    @property
    def is_noop(self) -> bool:
        """True when this entry only records that nothing is needed."""
        return self.kind is ChangeKind.NOOP

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "host": self.host,
            "consumer": self.consumer,
            "action": str(self.action),
            "summary": self.summary,
            "details": _plain(self.details),
            "noop_reason": self.noop_reason,
            "diff": self.diff,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        """The change that :meth:`to_dict` produced."""
        return cls(
            host=data["host"],
            consumer=data["consumer"],
            action=data["action"],
            summary=data["summary"],
            details=data.get("details") or {},
            noop_reason=data.get("noop_reason"),
            diff=data.get("diff"),
        )

    def to_text(self) -> str:
        """One line, then indented before/after values and the diff when there is one."""
        marker = "=" if self.is_noop else "+"
        lines = [f"{marker} [{self.action}] {self.host} · {self.consumer}: {self.summary}"]
        before, after = self.details.get("before"), self.details.get("after")
        if before is not None or after is not None:
            lines.append(f"    before: {before}")
            lines.append(f"    after:  {after}")
        if self.diff:
            lines.extend(f"    {line}" for line in self.diff.rstrip("\n").splitlines())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Change {self.action} {self.host}/{self.consumer}: {self.summary}>"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Plan(Displayed):
    """The changes a rotation makes, in execution order, with the no-ops that need nothing.

    ``title`` names the rotation (e.g. "SSL certificate 3F…A1 → 9C…0B"); ``created`` is when
    the facts were planned over.
    """

    changes: tuple[Change, ...]
    created: datetime = field(default_factory=_utcnow)
    title: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "changes", tuple(self.changes))

    @classmethod
    def of(cls, changes: Iterable[Change], *, title: str = "") -> Plan:
        """A plan created now from ``changes``."""
        return cls(tuple(changes), title=title)

    @property
    def actions(self) -> tuple[Change, ...]:
        """The changes that do something."""
        return tuple(change for change in self.changes if not change.is_noop)

    @property
    def noops(self) -> tuple[Change, ...]:
        """The consumers that need nothing, each with its reason."""
        return tuple(change for change in self.changes if change.is_noop)

    @property
    def is_empty(self) -> bool:
        """True when applying the plan would change nothing."""
        return not self.actions

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts the plan mentions, in first-seen order."""
        return tuple(dict.fromkeys(change.host for change in self.changes))

    def for_host(self, host: str) -> Plan:
        """The part of the plan that concerns ``host``."""
        own = tuple(change for change in self.changes if change.host == host)
        return Plan(own, self.created, self.title)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what ``--json`` prints and journals record)."""
        return {
            "title": self.title,
            "created": self.created.isoformat(),
            "is_empty": self.is_empty,
            "changes": [change.to_dict() for change in self.changes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """The plan that :meth:`to_dict` produced."""
        return cls(
            tuple(Change.from_dict(item) for item in data["changes"]),
            datetime.fromisoformat(data["created"]),
            data.get("title", ""),
        )

    def to_json(self) -> str:
        """The plan as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_text(self) -> str:
        """The plan for a terminal: a header, then every change (``+``) and no-op (``=``)."""
        header = self.title or "Plan"
        counts = f"{len(self.actions)} change(s), {len(self.noops)} no-op(s)"
        lines = [f"{header} — {counts}"]
        lines.extend(change.to_text() for change in self.changes)
        if self.is_empty:
            lines.append("Nothing to do.")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(_html_row(change) for change in self.changes)
        title = html.escape(self.title or "Plan")
        return (
            f"<div><b>{title}</b> — {len(self.actions)} change(s), {len(self.noops)} no-op(s)"
            "<table><thead><tr><th>host</th><th>consumer</th><th>action</th><th>summary</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        title = f" {self.title!r}" if self.title else ""
        return (
            f"<Plan{title}: {len(self.actions)} change(s), {len(self.noops)} no-op(s) "
            f"on {', '.join(self.hosts) or 'no host'}>"
        )


def _html_row(change: Change) -> str:
    """One table row; the diff (if any) as a preformatted block under the summary."""
    summary = html.escape(change.summary)
    if change.diff:
        summary += f"<pre>{html.escape(change.diff)}</pre>"
    style = ' style="color:gray"' if change.is_noop else ""
    cells = (change.host, change.consumer, str(change.action))
    cells_html = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
    return f"<tr{style}>{cells_html}<td>{summary}</td></tr>"
