"""``status``: the "check before you call support" step — gather once, run the doctor, report.

:func:`status` opens one PowerShell session on the server, runs ``gather.ps1`` once (one
pipeline, whatever the number of consumers), and returns a :class:`StatusReport`: for every
consumer of the catalog the certificates it uses (role, thumbprint, subject, days left) and
the findings about them. The report renders as text tables, JSON and HTML (notebooks).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import io
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cosdoc_certs.consumers import COSDOC_CATALOG, Consumer, config_files, service_patterns
from cosdoc_certs.display import Displayed
from cosdoc_certs.facts import (
    CertificateUse,
    ConsumerStatus,
    WindowsFacts,
    diagnose,
)
from cosdoc_certs.findings import DEFAULT_WARN_DAYS, Finding, Severity, worst
from cosdoc_certs.windows.connection import (
    ConnectionOptions,
    PoolFactory,
    WindowsHost,
    default_pool,
)
from cosdoc_certs.windows.gather import GatherDocument

if TYPE_CHECKING:  # rich renders text only: a fleet read that prints summaries never loads it
    from rich.console import Console
    from rich.table import Table

log = logging.getLogger(__name__)

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "dim"}


@dataclasses.dataclass(frozen=True)
class StatusReport(Displayed):
    """The status of one server: every consumer, what it uses, what is wrong."""

    address: str
    facts: WindowsFacts
    consumers: tuple[ConsumerStatus, ...]
    now: dt.datetime
    warn_days: int
    gather_seconds: float = 0.0

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding of every consumer."""
        return tuple(finding for status in self.consumers for finding in status.findings)

    @property
    def worst(self) -> Severity | None:
        """The worst severity found (None when nothing was found)."""
        return worst(self.findings)

    def codes(self) -> set[str]:
        """The finding codes present (handy in scripts and tests)."""
        return {finding.code for finding in self.findings}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``cosdoc-certs status --json``)."""
        return {
            "host": self.address,
            "computer_name": self.facts.computer_name,
            "gathered_at": self.facts.document.gathered_at.isoformat(),
            "warn_days": self.warn_days,
            "worst": str(self.worst) if self.worst is not None else None,
            "consumers": [status.to_dict(self.now) for status in self.consumers],
        }

    def render(self, width: int = 160) -> str:
        """The report as text: a table per consumer, then its findings (thumbprints unbroken)."""
        from rich.console import Console

        buffer = io.StringIO()
        console = Console(  # never Jupyter's display: the text goes to the buffer, in one piece
            file=buffer, width=width, force_terminal=False, force_jupyter=False, color_system=None
        )
        self.print(console)
        return buffer.getvalue()

    def print(self, console: Console) -> None:
        """Print the report on a rich console (tables and coloured findings)."""
        console.print(
            f"{self.facts.computer_name} ({self.address}), gathered "
            f"{self.facts.document.gathered_at:%Y-%m-%d %H:%M} UTC; "
            f"warning {self.warn_days} days before expiry"
        )
        for status in self.consumers:
            console.print()
            console.print(f"[bold]{status.name}[/bold] {_instances_text(status)}")
            if status.uses:
                console.print(self._table(status))
            for note in status.notes:
                console.print(note, markup=False)
            for finding in status.findings:
                style = _SEVERITY_STYLE[finding.severity]
                console.print(f"  [{style}]{finding.severity}[/{style}] ", end="")
                console.print(f"{finding.subject}: {finding.message}", markup=False)
        console.print()
        console.print(_summary(self.findings))

    def _table(self, status: ConsumerStatus) -> Table:
        from rich.table import Table

        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for column in ("where", "setting", "role", "thumbprint", "issued to", "days left"):
            table.add_column(column, overflow="fold")
        for use in status.uses:
            table.add_row(*_row(use, self.now))
        return table

    def to_text(self) -> str:
        """The report as text (:meth:`render` at its default width)."""
        return self.render()

    def __repr__(self) -> str:
        counts = {severity: 0 for severity in Severity}
        for finding in self.findings:
            counts[finding.severity] += 1
        return (
            f"<StatusReport {self.facts.computer_name}: {len(self.consumers)} consumers, "
            f"{counts[Severity.ERROR]} errors, {counts[Severity.WARNING]} warnings, "
            f"{counts[Severity.INFO]} notes>"
        )

    def _repr_html_(self) -> str:
        parts = [f"<h3>{html.escape(repr(self))}</h3>"]
        for status in self.consumers:
            parts.append(
                f"<h4>{html.escape(status.name)} {html.escape(_instances_text(status))}</h4>"
            )
            if status.uses:
                rows = "".join(
                    "<tr>"
                    + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in _row(use, self.now))
                    + "</tr>"
                    for use in status.uses
                )
                parts.append(
                    "<table><tr><th>where</th><th>setting</th><th>role</th><th>thumbprint</th>"
                    f"<th>issued to</th><th>days left</th></tr>{rows}</table>"
                )
            items = "".join(
                f"<li><b>{finding.severity}</b> {html.escape(finding.subject)}: "
                f"{html.escape(finding.message)} <code>{finding.code}</code></li>"
                for finding in status.findings
            )
            if items:
                parts.append(f"<ul>{items}</ul>")
            parts += [f"<pre>{html.escape(note)}</pre>" for note in status.notes]
        return "".join(parts)


def status(
    options: ConnectionOptions,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    warn_days: int = DEFAULT_WARN_DAYS,
    now: dt.datetime | None = None,
    pool_factory: PoolFactory = default_pool,
) -> StatusReport:
    """Gather the server's facts once and run the doctor over ``consumers``."""
    with WindowsHost(options, pool_factory=pool_factory) as host:
        started = time.perf_counter()
        facts = gather(host, consumers)
        elapsed = time.perf_counter() - started
    moment = now or dt.datetime.now(dt.timezone.utc)
    report = StatusReport(
        address=options.address,
        facts=facts,
        consumers=diagnose(facts, consumers, now=moment, warn_days=warn_days),
        now=moment,
        warn_days=warn_days,
        gather_seconds=elapsed,
    )
    log.info("status of %s: %r", options.address, report)
    return report


def gather(host: WindowsHost, consumers: Sequence[Consumer] = COSDOC_CATALOG) -> WindowsFacts:
    """Run ``gather.ps1`` once on an open host for ``consumers``; the parsed facts."""
    data = host.run_script(
        "gather",
        ServicePatterns=service_patterns(consumers),
        ConfigFiles=config_files(consumers),
    )
    return WindowsFacts.from_document(GatherDocument.from_data(data))


def _row(use: CertificateUse, now: dt.datetime) -> tuple[str, ...]:
    certificate = use.certificate
    return (
        use.instance,
        use.setting,
        use.role.value,
        use.thumbprint or repr(use.configured),
        certificate.name if certificate else "(not in store)",
        str(certificate.days_left(now)) if certificate else "-",
    )


def _instances_text(status: ConsumerStatus) -> str:
    kind = status.consumer.kind
    if kind in ("svarut", "manual"):
        return "(manual step)" if kind == "manual" else "(Linux host)"
    count = len(status.instances)
    return f"({count} found)" if count != 1 else "(1 found)"


def _summary(findings: Sequence[Finding]) -> str:
    if not findings:
        return "No findings: every consumer uses certificates that are present, valid and readable."
    counts = {severity: sum(1 for f in findings if f.severity is severity) for severity in Severity}
    return (
        f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} warning(s), "
        f"{counts[Severity.INFO]} note(s). See docs/status.md for what each finding means."
    )
