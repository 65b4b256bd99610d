"""Findings: what the doctor, the certificate core and the config checks report to a person.

A finding has a stable ``code`` (for scripts and monitoring), a severity, a one-line message
and the thing it is about. Everything that inspects something returns findings instead of
printing or raising, so the CLI, notebooks and scripts can all show them their own way.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_WARN_DAYS = 30
"""How many days before expiry a certificate is reported as expiring, unless told otherwise."""


class Severity(enum.IntEnum):
    """How bad a finding is; ordered so ``max()`` gives the worst."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """One observation; ``code`` is stable (e.g. ``expired``), ``subject`` names what."""

    code: str
    severity: Severity
    message: str
    subject: str = ""

    def __str__(self) -> str:
        where = f"{self.subject}: " if self.subject else ""
        return f"[{self.severity}] {where}{self.message}"

    def to_dict(self) -> dict[str, str]:
        """A JSON-ready form."""
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "subject": self.subject,
        }


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The highest severity among ``findings``, or None when there are none."""
    return max((finding.severity for finding in findings), default=None)
