"""Check mode on the SvarUT host: what applying a plan needs, tested with read-only commands.

:func:`check_plan` runs, on one SSH connection: ``sudo -n true`` (apply uses non-interactive
sudo), a read of prod.env compared with the plan's hash (apply's compare-and-swap), ``stat`` of
the certificate folder and of prod.env's folder (apply installs into the one and backs up
beside the other), and apply's own pre-flight — ``nginx -t`` in a throwaway container of the
web service (``docker compose run --rm --no-deps -T``) — on the configuration as it is now:
the compose and env files parse, the image runs, ``docker compose run`` is allowed. The new
files themselves are tested by that same step during apply (placing them here would change
the host). Nothing is written, nothing restarted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
from typing import Any

from cosdoc_certs.errors import RemoteError
from cosdoc_certs.findings import Severity
from cosdoc_certs.svarut.apply import preflight
from cosdoc_certs.svarut.connection import HostConnection
from cosdoc_certs.svarut.gather import read_file
from cosdoc_certs.svarut.planning import SvarutPlan

__all__ = ["StepVerdict", "SvarutCheck", "check_plan"]


@dataclasses.dataclass(frozen=True)
class StepVerdict:
    """One precondition of the SvarUT apply: whether it holds, and what was found."""

    name: str
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SvarutCheck:
    """The SvarUT host's verdicts for a plan."""

    host: str
    verdicts: tuple[StepVerdict, ...]

    @property
    def worst(self) -> Severity | None:
        """ERROR when a precondition fails (exit codes as ``status``)."""
        return Severity.ERROR if any(not v.ok for v in self.verdicts) else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "host": self.host,
            "ok": self.worst is None,
            "checks": [v.to_dict() for v in self.verdicts],
        }

    def to_text(self) -> str:
        """Lines for a terminal."""
        failed = sum(not v.ok for v in self.verdicts)
        head = f"{self.host}: check {'passed' if not failed else f'found {failed} blocker(s)'}"
        return "\n".join(
            [
                head,
                *(f"  {'ok  ' if v.ok else 'FAIL'} {v.name}: {v.message}" for v in self.verdicts),
            ]
        )

    def __str__(self) -> str:
        return self.to_text()


async def check_plan(connection: HostConnection, splan: SvarutPlan) -> SvarutCheck:
    """Every precondition of applying ``splan`` on the connected host; nothing changed."""
    layout = splan.facts.layout
    verdicts = [await _sudo(connection)]
    if splan.is_empty or not verdicts[0].ok:  # every other step runs through sudo
        return SvarutCheck(splan.facts.host, tuple(verdicts))
    verdicts.append(await _env_unchanged(connection, splan))
    for name, folder in (
        ("certificate folder", layout.files_path),
        ("prod.env folder", posixpath.dirname(layout.env_path)),
    ):
        verdicts.append(await _folder(connection, name, folder))
    verdicts.append(await _nginx_preflight(connection, splan))
    return SvarutCheck(splan.facts.host, tuple(verdicts))


async def _sudo(connection: HostConnection) -> StepVerdict:
    try:
        await connection.run(["true"])
    except RemoteError as error:
        return StepVerdict("sudo", False, f"{error.problem}; {error.hint}".rstrip("; "))
    return StepVerdict("sudo", True, "sudo -n works without a password")


async def _env_unchanged(connection: HostConnection, splan: SvarutPlan) -> StepVerdict:
    path = splan.facts.layout.env_path
    data = await read_file(connection, path)
    if data is None or hashlib.sha256(data).hexdigest() != splan.facts.env_sha256:
        return StepVerdict(
            "prod.env", False, f"{path} changed since the plan was made: run plan again"
        )
    return StepVerdict("prod.env", True, f"{path} is as planned")


async def _folder(connection: HostConnection, name: str, folder: str) -> StepVerdict:
    result = await connection.run(["stat", "--", folder], check=False)
    if not result.ok:
        return StepVerdict(
            name, False, f"{folder} cannot be read ({result.stderr.strip()}): create it or fix"
        )
    return StepVerdict(name, True, f"{folder} is there (mode and owner {result.text().strip()})")


async def _nginx_preflight(connection: HostConnection, splan: SvarutPlan) -> StepVerdict:
    layout = splan.facts.layout
    try:
        await preflight(connection, layout, splan.facts.containers)
    except RemoteError as error:
        return StepVerdict(
            "nginx -t", False, f"{error.problem}; fix the compose project first: {error.hint}"
        )
    return StepVerdict(
        "nginx -t", True, f"nginx -t passes in a throwaway container in {layout.root}"
    )
